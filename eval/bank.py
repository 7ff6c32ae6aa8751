"""The product question bank (data/questions/bank_*.jsonl) and the off-topic bench
(data/questions/offtopic.jsonl): the objective the answer path is judged on.

The bank is split by a fixed rule on the question id: `crc32(id) % 10 < 3` is the fitting
part (about 30 %: chat/refusal.json's thresholds were chosen on it), the rest is the
reported part (every bank figure in a closing note or README is on it). A follow-up and
the question it follows share nothing but their writer, so the rule needs no grouping.

    python -m eval bank --part report --out build/eval/bank_report
    python -m eval offtopic --out build/eval/offtopic
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

from eval.normalize import normalize

QUESTIONS_DIR = Path(__file__).resolve().parents[1] / "data" / "questions"
BANK_FILES = ("bank_a.jsonl", "bank_b.jsonl")
OFFTOPIC_FILE = "offtopic.jsonl"
FIT_SHARE = 3  # tenths of the bank in the fitting part


def bank_part(question_id: str) -> str:
    """"fit" or "report", by the question's id alone."""
    return "fit" if zlib.crc32(question_id.encode("utf-8")) % 10 < FIT_SHARE else "report"


def load_bank(part: str = "report", directory: Path = QUESTIONS_DIR) -> list[dict]:
    """The bank's questions of one part ("fit", "report" or "all")."""
    from eval.questions import load_questions

    out = []
    for name in BANK_FILES:
        out.extend(q for q in load_questions(directory / name) if part == "all" or bank_part(q["id"]) == part)
    return out


def central_hits(answer_text: str, central: list[str] | None) -> int:
    """How many of an overview question's central-content substrings the answer quotes."""
    text = normalize(answer_text or "")
    return sum(1 for c in central or [] if normalize(c) and normalize(c) in text)


def direction(q: dict) -> str | None:
    """"en>zh" (English question, Chinese document) or "zh>en" for cross-language questions."""
    if "cross-language" not in (q.get("tags") or []):
        return None
    return "en>zh" if q.get("language") == "en" else "zh>en"


def product_figures(questions: list[dict], results: list[dict]) -> dict:
    """The figures the question-kinds issue names, from a bank run's per-question results."""
    by_id = {q["id"]: q for q in questions}

    def share(rows, ok) -> dict:
        rows = list(rows)
        return {"share": round(sum(1 for r in rows if ok(r)) / len(rows), 4) if rows else None, "n": len(rows)}

    answerable = [r for r in results if r["answerable"]]
    with_answers = [r for r in answerable if r.get("answer_recall") is not None]
    tags = lambda r: by_id[r["id"]].get("tags") or []  # noqa: E731
    out = {
        "answer_recall": share(with_answers, lambda r: r["answer_recall"] == 1.0),
        "answerable_refused": share(answerable, lambda r: not r["answered"]),
        "near_domain_refused": share([r for r in results if "near-domain" in tags(r)], lambda r: not r["answered"]),
        "offtopic_refused": share([r for r in results if by_id[r["id"]].get("kind") == "offtopic"],
                                  lambda r: not r["answered"]),
        "overview_central": share([r for r in answerable if by_id[r["id"]].get("kind") == "overview"],
                                  lambda r: r["answered"] and r.get("central_hits", 0) >= 2
                                  and len(r.get("citations") or []) >= 1),
        "router_kind_agrees": share([r for r in results if by_id[r["id"]].get("kind") not in (None, "offtopic")],
                                    lambda r: r.get("system_kind") == by_id[r["id"]]["kind"]),
    }
    for d in ("en>zh", "zh>en"):
        out[f"cross_language_recall_{d}"] = share(
            [r for r in with_answers if direction(by_id[r["id"]]) == d], lambda r: r["answer_recall"] == 1.0)
    kinds = sorted({q.get("kind") or "factoid" for q in questions})
    out["by_kind"] = {}
    for k in kinds:
        rows = [r for r in results if (by_id[r["id"]].get("kind") or "factoid") == k]
        rows_ans = [r for r in rows if r["answerable"] and r.get("answer_recall") is not None]
        out["by_kind"][k] = {"n": len(rows),
                             "answer_recall": share(rows_ans, lambda r: r["answer_recall"] == 1.0)["share"],
                             "refusal_accuracy": share(rows, lambda r: r["answered"] == r["answerable"])["share"]}
    return out


def annotate(questions: list[dict], results: list[dict]) -> None:
    """Add the bank's own fields to each result record (in place)."""
    by_id = {q["id"]: q for q in questions}
    for r in results:
        q = by_id[r["id"]]
        r["bank_kind"] = q.get("kind")
        r["tags"] = q.get("tags") or []
        if q.get("central"):
            r["central_hits"] = central_hits(r.get("answer", ""), q["central"])


def run_bank(part: str, out_dir, *, settings, progress: bool = True, engine=None, questions=None) -> dict:
    """Ask the bank's `part` in-process; write summary.json, table.md and results.jsonl."""
    from eval.runner import InProcessAsker, run_questions, summarize_run

    questions = questions if questions is not None else load_bank(part)
    asker = InProcessAsker(settings, engine=engine)
    results = run_questions(questions, asker, progress=progress, label=f"bank {part}")
    annotate(questions, results)
    summary = summarize_run(results, {"bank": list(BANK_FILES), "part": part, "split_rule": "crc32(id) % 10 < 3 = fit",
                                      "target": asker.target})
    summary["product"] = product_figures(questions, results)
    summary["by_tag"] = _by_tag(results)
    _write(out_dir, summary, results, product_table(summary["product"], f"question bank, {part} part"))
    return summary


def run_offtopic(out_dir, *, settings, progress: bool = True, engine=None, limit: int | None = None) -> dict:
    """Ask every question of the off-topic bench against the bundled corpus: all must be refused."""
    from eval.questions import load_questions
    from eval.runner import InProcessAsker, run_questions

    questions = load_questions(QUESTIONS_DIR / OFFTOPIC_FILE)[:limit]
    asker = InProcessAsker(settings, engine=engine)
    results = run_questions(questions, asker, progress=progress, label="off-topic")
    by_lang: dict[str, list] = {}
    for q, r in zip(questions, results):
        by_lang.setdefault(q.get("language", "?"), []).append(r)
    refused = lambda rows: round(sum(1 for r in rows if not r["answered"]) / len(rows), 4)  # noqa: E731
    summary = {"n": len(results), "refused": refused(results),
               "by_language": {k: {"n": len(v), "refused": refused(v)} for k, v in sorted(by_lang.items())},
               "answered_examples": [{"question": r["question"], "answer": r["answer"][:120]}
                                     for r in results if r["answered"]][:20],
               "config": {"questions": OFFTOPIC_FILE, "target": asker.target}}
    table = "| off-topic bench | n | refused |\n|---|---|---|\n" + f"| all | {summary['n']} | {summary['refused']} |\n" + "".join(
        f"| {k} | {v['n']} | {v['refused']} |\n" for k, v in summary["by_language"].items())
    _write(out_dir, summary, results, table)
    return summary


def _by_tag(results: list[dict]) -> dict:
    from eval.metrics import summarize

    tags = sorted({t for r in results for t in r.get("tags") or []})
    return {t: summarize([r for r in results if t in (r.get("tags") or [])]) for t in tags}


def product_table(product: dict, title: str) -> str:
    lines = [f"| {title} | value | n |", "|---|---|---|"]
    for key, v in product.items():
        if isinstance(v, dict) and "share" in v:
            lines.append(f"| {key} | {v['share']} | {v['n']} |")
    lines += ["", "| kind | n | answer recall | refusal accuracy |", "|---|---|---|---|"]
    for k, v in product["by_kind"].items():
        lines.append(f"| {k} | {v['n']} | {v['answer_recall']} | {v['refusal_accuracy']} |")
    return "\n".join(lines) + "\n"


def _write(out_dir, summary: dict, results: list[dict], table: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
    (out / "table.md").write_text(table, encoding="utf-8")
    with open(out / "results.jsonl", "w", encoding="utf-8") as fh:
        for r in results:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
