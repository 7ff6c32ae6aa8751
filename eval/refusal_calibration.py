"""Data for calibrating chat's "not in the documents" rule beyond the 81-question dev set.

    python -m eval.refusal_calibration collect --out DIR [--cmrc FILE]
    python -m eval.refusal_calibration report DIR
    python -m eval.refusal_calibration fit DIR

`collect` asks questions through ChatEngine with a rule that answers everything, so each
record holds the rule's inputs (Answer.evidence) and whether the chosen sentences contain a
gold answer; any rule can then be scored offline, exactly (the rule does not change which
sentences are chosen). Sets written to DIR:

- dev.jsonl: data/questions/dev.jsonl on the bundled corpus (labelled answerable / not).
- cmrc_tune.jsonl, cmrc_heldout.jsonl: CMRC 2018 dev. Its 848 paragraphs (each its own
  Wikipedia article) are shuffled with PARTITION_SEED; 40 % are the tune part, 60 % the
  held-out part, so no paragraph and no question is in both. Within a part the paragraphs
  are split in two halves A and B and each half gets its own index. A question asked
  against its own half's index is answerable (CMRC questions are, by construction); asked
  against the other half's index it is not (its article is not there; near topics — two
  footballers, two railways — make some of these hard negatives).
- cmrc_gate.jsonl: the regression gate's fixed sample (300 questions, seed 2018, corpus =
  their paragraphs; `gate100` marks the 100 the gate answers). It shares paragraphs with
  both parts, so it is reported, not used for fitting.

`report` prints, for the rule in chat/refusal.py: dev refusal accuracy and answer recall,
CMRC answer recall with the rule on (positives) and the refusal rate on the negatives.

`fit` searches the rule's thresholds (GRID) for the highest tune answer recall + ½ × tune
refusal rate subject to dev answered-vs-refused accuracy ≥ 0.90, dev answer recall ≥ 0.85
and ≥ 0.84 of the tune unanswerables refused, and prints the best thresholds with their
figures on every set (held-out included); copy them into chat/refusal.AnswerabilityRule.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import fields
from pathlib import Path

PARTITION_SEED = 4
TUNE_SHARE = 0.4
TUNE_N, HELDOUT_N = 600, 1000
TUNE_SEED, HELDOUT_SEED = 1, 2
GATE_LIMIT, GATE_SEED, GATE_ANSWERS = 300, 2018, 100


class AnswerEverything:
    """A rule that never refuses, so that every question's evidence and sentences are seen."""

    def decide(self, evidence) -> bool:
        return evidence is not None


def partition(squad) -> tuple[list[str], list[str]]:
    keys = sorted(squad.paragraphs)
    random.Random(PARTITION_SEED).shuffle(keys)
    cut = int(len(keys) * TUNE_SHARE)
    return sorted(keys[:cut]), sorted(keys[cut:])


def halves(keys: list[str], seed: int) -> tuple[list[str], list[str]]:
    keys = list(keys)
    random.Random(seed).shuffle(keys)
    return sorted(keys[: len(keys) // 2]), sorted(keys[len(keys) // 2:])


def _record(answer, q_id, question, answers, answerable, extra) -> dict:
    from eval.answers import strip_markers
    from eval.metrics import answer_recall

    contains = answer_recall(strip_markers(answer.answer), answers) if answer.answered and answers else 0.0
    return {"id": q_id, "question": question, "answerable": answerable, "contains": bool(contains),
            "evidence": answer.evidence, "answer": answer.answer, "language": answer.language,
            "answer_ms": round(answer.timings_ms.get("answer", 0.0), 1), **extra}


def _engine(index, settings, questions):
    from chat import ChatEngine

    engine = ChatEngine(index, settings, rule=AnswerEverything())
    engine.warm_up()
    engine.prime_questions(questions)
    return engine


def collect_dev(settings, out: Path, dev_path: Path) -> None:
    from eval.questions import load_questions
    from index import load_or_build

    questions = load_questions(dev_path)
    engine = _engine(load_or_build(settings), settings, [q["question"] for q in questions])
    with open(out / "dev.jsonl", "w", encoding="utf-8") as fh:
        for q in questions:
            a = engine.ask(q["question"], history=q.get("history") or None)
            fh.write(json.dumps(_record(a, q["id"], q["question"], q.get("answers"), q["answerable"],
                                        {"kind": "follow-up" if q.get("history") else "single"}),
                                ensure_ascii=False) + "\n")


def collect_cmrc_part(squad, keys, n, seed, settings, path: Path, progress=True) -> None:
    from eval.squad import benchmark_index, stratified_sample

    part = set(keys)
    questions = stratified_sample([q for q in squad.questions if q.paragraph in part and q.answerable], n, seed)
    a_keys, b_keys = halves(keys, seed)
    with open(path, "w", encoding="utf-8") as fh:
        for name, own_keys in (("A", a_keys), ("B", b_keys)):
            own = set(own_keys)
            index, bench_settings, _, _ = benchmark_index(squad, own_keys, settings)
            engine = _engine(index, bench_settings, [q.question for q in questions])
            t0 = time.perf_counter()
            for i, q in enumerate(questions):
                a = engine.ask(q.question)
                fh.write(json.dumps(_record(a, q.id, q.question, q.answers, q.paragraph in own,
                                            {"index": name, "paragraph": q.paragraph}), ensure_ascii=False) + "\n")
                if progress and i % 200 == 0:
                    print(f"  {path.name} index {name}: {i}/{len(questions)} {time.perf_counter() - t0:.0f} s",
                          file=sys.stderr)


def collect_gate(squad, settings, path: Path) -> None:
    from eval.squad import benchmark_index, stratified_sample

    questions = stratified_sample(squad.questions, GATE_LIMIT, GATE_SEED)
    answered = {q.id for q in stratified_sample(questions, GATE_ANSWERS, GATE_SEED)}
    keys = sorted({q.paragraph for q in questions})
    index, bench_settings, _, _ = benchmark_index(squad, keys, settings)
    engine = _engine(index, bench_settings, [q.question for q in questions])
    with open(path, "w", encoding="utf-8") as fh:
        for q in questions:
            a = engine.ask(q.question)
            fh.write(json.dumps(_record(a, q.id, q.question, q.answers, q.answerable,
                                        {"gate100": q.id in answered, "paragraph": q.paragraph}),
                                ensure_ascii=False) + "\n")


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def evidence_of(rec: dict):
    from chat.refusal import Evidence

    if rec["evidence"] is None:
        return None
    names = {f.name for f in fields(Evidence)}
    return Evidence(**{k: v for k, v in rec["evidence"].items() if k in names})


def score(records: list[dict], decide) -> dict:
    """answer recall (answered and contains gold) on answerables, refusal rate on the rest,
    answered-vs-refused accuracy over all."""
    pos = [r for r in records if r["answerable"]]
    neg = [r for r in records if not r["answerable"]]
    said = [decide(evidence_of(r)) for r in records]
    by_id = {id(r): s for r, s in zip(records, said)}
    out = {"n": len(records)}
    if pos:
        with_answers = [r for r in pos if r.get("contains") is not None]
        out["answer_recall"] = sum(by_id[id(r)] and r["contains"] for r in with_answers) / len(with_answers)
        out["recall_rule_off"] = sum(r["contains"] for r in with_answers) / len(with_answers)
        out["answered_share"] = sum(by_id[id(r)] for r in pos) / len(pos)
    if neg:
        out["refused_share"] = sum(not by_id[id(r)] for r in neg) / len(neg)
    out["refusal_accuracy"] = sum(by_id[id(r)] == r["answerable"] for r in records) / len(records)
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}


def report(directory: Path, rule=None) -> dict:
    from chat.refusal import AnswerabilityRule

    rule = rule or AnswerabilityRule()
    out = {}
    for name in ("dev", "cmrc_tune", "cmrc_heldout", "cmrc_gate"):
        path = directory / f"{name}.jsonl"
        if not path.exists():
            continue
        records = load(path)
        if not records:
            continue
        out[name] = score(records, rule.decide)
        if name == "cmrc_gate":
            out["cmrc_gate100"] = score([r for r in records if r["gate100"]], rule.decide)
    return out


GRID = {
    "min_coverage": [0.4, 0.45, 0.5, 0.55, 0.6],
    "max_missing": [0.35, 0.4, 0.45, 0.5, 0.55],
    "min_coverage_rescue": [0.3, 0.35, 0.4, 0.45],
    "min_second_rescue": [0.3, 0.33, 0.37, 0.41, 0.45],
    "min_dense": [0.87, 0.88, 0.89, 0.9, 0.91],
    "min_dense_margin": [0.03, 0.04, 0.05, 0.06, 0.07],
    "min_second_semantic": [0.2, 0.25, 0.3, 0.35],
    "min_second_cross": [0.25, 0.27, 0.285, 0.3, 0.32, 0.35],
}
# dev accuracy: the target is 0.90 (0.91 would keep a question of margin; with the
# sentence-level cross-language re-ranking no threshold in GRID reaches it, chat/README.md)
CONSTRAINTS = {"dev_accuracy": 0.90, "dev_recall": 0.85, "tune_refused": 0.84}


def fit(directory: Path) -> dict:
    """Exhaustive search over GRID. The rule is an OR of clauses, each depending on a few
    thresholds, so every clause's decisions are computed once per threshold pair and the
    grid only combines boolean arrays."""
    import itertools

    import numpy as np

    from chat.refusal import AnswerabilityRule

    sets = {name: load(directory / f"{name}.jsonl") for name in ("dev", "cmrc_tune")}
    records = sets["dev"] + sets["cmrc_tune"]
    n_dev = len(sets["dev"])
    ev = [r["evidence"] or {} for r in records]

    def col(key, default=0.0):
        return np.array([e.get(key, default) for e in ev], dtype=float)

    present = np.array([bool(e) for e in ev])
    coverage, missing, second = col("coverage"), col("missing"), col("best_second")
    dense, margin = col("best_dense"), col("dense_margin")
    cross = col("cross_lingual").astype(bool)
    list_item = col("list_item").astype(bool)
    number_ok = ~(col("number_expected").astype(bool) & ~col("number_found").astype(bool))
    answerable = np.array([r["answerable"] for r in records])
    contains = np.array([bool(r.get("contains")) for r in records])
    dev = np.arange(len(records)) < n_dev
    tune = ~dev

    g = GRID
    terms = {(a, b): (coverage >= a) & (missing <= b) for a in g["min_coverage"] for b in g["max_missing"]}
    reworded = {(a, b): (coverage >= a) & (second >= b) for a in g["min_coverage_rescue"] for b in g["min_second_rescue"]}
    semantic = {(a, b, c): (dense >= a) & (margin >= b) & (second >= c)
                for a in g["min_dense"] for b in g["min_dense_margin"] for c in g["min_second_semantic"]}
    crossing = {a: second >= a for a in g["min_second_cross"]}

    def figures(said):
        pos_dev, neg_tune, pos_tune = dev & answerable, tune & ~answerable, tune & answerable
        return {
            "dev_accuracy": float((said[dev] == answerable[dev]).mean()),
            "dev_recall": float((said & contains)[pos_dev].mean()),
            "tune_recall": float((said & contains)[pos_tune].mean()),
            "tune_refused": float((~said)[neg_tune].mean()),
        }

    best = None
    for t, r, sm, c in itertools.product(terms, reworded, semantic, crossing):
        same = terms[t] | reworded[r] | semantic[sm]
        said = present & (list_item | (number_ok & np.where(cross, crossing[c], same)))
        f = figures(said)
        if any(f[k] < v for k, v in CONSTRAINTS.items()):
            continue
        objective = f["tune_recall"] + 0.5 * f["tune_refused"]
        if best is None or objective > best[0]:
            best = (objective, (t, r, sm, c), f)
    if best is None:
        return {"error": "no thresholds in GRID meet the constraints", "constraints": CONSTRAINTS}
    (a, b), (c, d), (e, f_, h), i = best[1]
    rule = AnswerabilityRule(min_coverage=a, max_missing=b, min_coverage_rescue=c, min_second_rescue=d,
                             min_dense=e, min_dense_margin=f_, min_second_semantic=h, min_second_cross=i)
    return {"rule": {k: getattr(rule, k) for k in GRID}, "objective": round(best[0], 4),
            "figures": report(directory, rule)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.refusal_calibration", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    c.add_argument("--out", required=True)
    c.add_argument("--cmrc", default=str(Path(__file__).resolve().parent.parent.parent / "shared" / "bench"
                                         / "cmrc2018_dev.json"))
    c.add_argument("--dev", default=str(Path(__file__).resolve().parent.parent / "data" / "questions" / "dev.jsonl"))
    c.add_argument("--sets", default="dev,tune,heldout,gate")
    r = sub.add_parser("report")
    r.add_argument("dir")
    f = sub.add_parser("fit")
    f.add_argument("dir")
    args = p.parse_args(argv)

    if args.cmd == "report":
        print(json.dumps(report(Path(args.dir)), indent=2))
        return 0
    if args.cmd == "fit":
        print(json.dumps(fit(Path(args.dir)), indent=2))
        return 0

    from settings import apply_offline_defaults, load_settings

    apply_offline_defaults()
    settings = load_settings()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sets = set(args.sets.split(","))
    if "dev" in sets:
        collect_dev(settings, out, Path(args.dev))
        print("dev done", file=sys.stderr)
    if sets & {"tune", "heldout", "gate"}:
        from eval.squad import load_squad

        squad = load_squad(args.cmrc)
        tune, heldout = partition(squad)
        if "gate" in sets:
            collect_gate(squad, settings, out / "cmrc_gate.jsonl")
            print("gate done", file=sys.stderr)
        if "tune" in sets:
            collect_cmrc_part(squad, tune, TUNE_N, TUNE_SEED, settings, out / "cmrc_tune.jsonl")
        if "heldout" in sets:
            collect_cmrc_part(squad, heldout, HELDOUT_N, HELDOUT_SEED, settings, out / "cmrc_heldout.jsonl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
