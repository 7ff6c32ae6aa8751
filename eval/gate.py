"""`python -m eval gate`: the regression gate CI runs.

Runs the dev question set (in-process) and a fixed 300-question CMRC 2018 sample
(seed 2018, corpus = the sample's paragraphs; retrieval and chat answers on all 300),
prints every gated figure next to
its threshold from eval/thresholds.json, and exits 1 if any figure is below it.
`--update` rewrites the thresholds as the measured figures minus the margin.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

from eval.compare import _flatten

REPO = Path(__file__).resolve().parent.parent
THRESHOLDS = Path(__file__).resolve().parent / "thresholds.json"
DEV_SET = REPO / "data" / "questions" / "dev.jsonl"
CMRC_LIMIT, CMRC_SEED = 300, 2018
# The reader takes ~0.1-0.3 s a question on 2 cores; all 300 are still answered.
CMRC_ANSWER_LIMIT = None

# Figures the gate watches (latency is left out: on a shared 2-core CI machine it is noise).
DEV_FIGURES = ("hit@1", "hit@5", "mrr@10", "answer_recall", "refusal_accuracy", "citation_precision")
# Both sets are evaluation-only: the gate checks them, nothing is fitted on them.
CMRC_FIGURES = ("modes:hybrid/hit@1", "modes:hybrid/hit@5", "modes:hybrid/mrr@10", "modes:dense/mrr@10",
                "modes:bm25/mrr@10", "hit@1", "answer_recall", "em", "f1", "citation_precision")


def default_cmrc() -> Path:
    """CMRC 2018 dev: CLUSTERQA_CMRC, else the shared benchmark folder (eval/shared_bench.py)."""
    from eval.shared_bench import bench_file

    env = os.environ.get("CLUSTERQA_CMRC")
    return Path(env) if env else bench_file("cmrc2018_dev.json")


def measure(settings, out_dir: Path, dev: Path, cmrc: Path, progress: bool = True) -> dict:
    from eval.runner import run_question_set
    from eval.squad_bench import run_squad

    dev_summary = run_question_set(dev, out_dir / "dev", settings=settings, progress=progress)
    cmrc_summary = run_squad(cmrc, out_dir / "cmrc300", settings=settings, retrieval_only=False, limit=CMRC_LIMIT,
                             seed=CMRC_SEED, corpus="sample", progress=progress, answer_limit=CMRC_ANSWER_LIMIT)
    dev_flat, cmrc_flat = _flatten(dev_summary), _flatten(cmrc_summary)
    return {"dev": {k: dev_flat.get(k) for k in DEV_FIGURES},
            "cmrc300": {k: cmrc_flat.get(k) for k in CMRC_FIGURES},
            "info": {"dev_n": dev_summary["n"], "cmrc_n": cmrc_summary["n"],
                     "cmrc_index_build_s": cmrc_summary["config"]["index_build_s"],
                     "dev_latency_ms_p50": dev_summary.get("latency_ms_p50"),
                     "cmrc_latency_ms_p50": cmrc_summary.get("latency_ms_p50")}}


def check(figures: dict, thresholds: dict) -> list[tuple[str, str, float | None, float, bool]]:
    """(set, figure, measured, threshold, ok) for every threshold; a missing figure fails."""
    rows = []
    for group in ("dev", "cmrc300"):
        for key, minimum in (thresholds.get(group) or {}).items():
            got = figures.get(group, {}).get(key)
            rows.append((group, key, got, minimum, got is not None and got >= minimum))
    return rows


def run_gate(*, out_dir, settings, thresholds_path=None, dev=None, cmrc=None, progress=True,
             update=False) -> int:
    thresholds_path = Path(thresholds_path or THRESHOLDS)
    dev, cmrc = Path(dev or DEV_SET), Path(cmrc or default_cmrc())
    for what, p in (("dev question set", dev), ("CMRC 2018 dev", cmrc)):
        if not p.is_file():
            print(f"gate: {what} not found at {p}", file=sys.stderr)
            return 2
    out_dir = Path(out_dir)
    figures = measure(settings, out_dir, dev, cmrc, progress=progress)
    (out_dir / "figures.json").write_text(json.dumps(figures, indent=2), encoding="utf-8")

    if update:
        margin = json.loads(thresholds_path.read_text())["margin"] if thresholds_path.exists() else 0.03
        new = {"margin": margin, "measured": {g: figures[g] for g in ("dev", "cmrc300")}}
        for g in ("dev", "cmrc300"):
            new[g] = {k: math.floor((v - margin) * 100) / 100 for k, v in figures[g].items() if v is not None}
        thresholds_path.write_text(json.dumps(new, indent=2) + "\n", encoding="utf-8")
        print(f"gate: wrote {thresholds_path}")

    thresholds = json.loads(thresholds_path.read_text(encoding="utf-8"))
    rows = check(figures, thresholds)
    print(f"eval gate ({figures['info']})")
    print(f"{'set':8} {'figure':24} {'measured':>9} {'threshold':>9}  result")
    for group, key, got, minimum, ok in rows:
        shown = "missing" if got is None else f"{got:.4f}"
        print(f"{group:8} {key:24} {shown:>9} {minimum:>9.4f}  {'ok' if ok else 'BELOW THRESHOLD'}")
    failed = [r for r in rows if not r[4]]
    print(f"eval gate: {'FAILED' if failed else 'passed'} ({len(rows) - len(failed)}/{len(rows)} figures at or above threshold)")
    return 1 if failed else 0
