"""What one answer costs the reader, in-process: per question the windows and tokens read, the
reader's forwards, wall and CPU time, and the decision (answered, answer text), so that two
versions of the answer path can be compared question by question on cost and on what they say.

    .venv/bin/python bench/read_cost.py [--set dev|bank|all] [--out build/bench/read_cost.json]
    .venv/bin/python bench/read_cost.py --compare A.json B.json

Questions: data/questions/dev.jsonl (what bench/server_bench.py asks) and the question bank's
both parts (eval/bank.py), each asked once on a warm engine (its warm-up done first).
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def load_questions(which: str) -> list[dict]:
    from eval.bank import load_bank
    from eval.questions import load_questions as load

    dev = [q for q in load(REPO / "data" / "questions" / "dev.jsonl") if not q.get("history")]
    if which == "dev":
        return dev
    bank = load_bank("all")
    return bank if which == "bank" else dev + bank


def run(which: str, out: Path) -> None:
    from chat import ChatEngine
    from eval.progress import bar
    from index import load_or_build
    from settings import load_settings

    settings = load_settings()
    engine = ChatEngine(load_or_build(settings), settings)
    engine.warm_up()
    counters = {"forwards": 0, "windows": 0, "tokens": 0}  # what the reader ran, since load

    def count(windows: int, tokens: int, seconds: float) -> None:
        counters["forwards"] += 1
        counters["windows"] += windows
        counters["tokens"] += tokens

    engine.reader.forward_observers.append(count)
    rows, questions = [], load_questions(which)
    progress = bar(len(questions), desc="asking")
    for q in questions:
        progress.update(1)
        before = dict(counters)
        wall, cpu = time.perf_counter(), time.process_time()
        answer = engine.ask(q["question"], history=q.get("history") or None)
        rows.append({"id": q["id"], "question": q["question"], "answered": answer.answered,
                     "answer": answer.answer, "wall_ms": (time.perf_counter() - wall) * 1000,
                     "cpu_ms": (time.process_time() - cpu) * 1000,
                     "read_ms": answer.timings_ms.get("read", 0.0),
                     **{k: counters[k] - before[k] for k in counters}})
    summary = summarize(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"set": which, "summary": summary, "rows": rows}, ensure_ascii=False, indent=1),
                   encoding="utf-8")
    print(json.dumps(summary, indent=1))


def summarize(rows: list[dict]) -> dict:
    def med(key):
        return round(statistics.median(r[key] for r in rows), 1)

    return {"questions": len(rows), "answered": sum(r["answered"] for r in rows),
            "median_wall_ms": med("wall_ms"), "median_cpu_ms": med("cpu_ms"),
            "mean_cpu_ms": round(statistics.mean(r["cpu_ms"] for r in rows), 1),
            "mean_windows": round(statistics.mean(r["windows"] for r in rows), 2),
            "mean_tokens": round(statistics.mean(r["tokens"] for r in rows), 1),
            "mean_forwards": round(statistics.mean(r["forwards"] for r in rows), 2)}


def compare(a_path: Path, b_path: Path) -> None:
    a, b = (json.loads(Path(p).read_text(encoding="utf-8")) for p in (a_path, b_path))
    by_id = {r["id"]: r for r in a["rows"]}
    changed = [(by_id[r["id"]], r) for r in b["rows"] if r["id"] in by_id
               and (by_id[r["id"]]["answered"], by_id[r["id"]]["answer"]) != (r["answered"], r["answer"])]
    for key in ("median_cpu_ms", "mean_cpu_ms", "mean_windows", "mean_tokens", "mean_forwards", "answered"):
        x, y = a["summary"][key], b["summary"][key]
        print(f"{key:16s} {x:>10} {y:>10}  ratio {y / x if x else float('nan'):.2f}")
    print(f"answer or decision changed on {len(changed)} of {len(b['rows'])} questions")
    for x, y in changed:
        print(f"- {y['id']} {y['question']}\n    A {x['answered']}: {x['answer'][:120]!r}\n    B {y['answered']}: {y['answer'][:120]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", default="all", choices=("dev", "bank", "all"))
    parser.add_argument("--out", default=str(REPO / "build" / "bench" / "read_cost.json"))
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"))
    args = parser.parse_args()
    if args.compare:
        compare(*args.compare)
    else:
        run(args.set, Path(args.out))


if __name__ == "__main__":
    main()
