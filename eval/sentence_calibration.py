"""Fit chat's sentence scoring (chat/sentencerank.py) and its selection parameters on CMRC 2018.

    python -m eval.sentence_calibration [--cmrc FILE] [--out chat/sentence_weights.json]

Every answerable CMRC 2018 dev question is asked against the index of all 848 paragraphs
(the same cached index `python -m eval squad` uses); the chat engine retrieves and splits
the passages into candidate sentences and computes their features. The paragraphs are
split as in eval/refusal_calibration.py (PARTITION_SEED, 40 % tune / 60 % held-out), so no
question or paragraph is in both parts.

1. Weights: a conditional logit on the tune part — per question, the softmax over its
   candidates should put its mass on the candidates that contain a gold answer — with a
   small L2 penalty, fitted by L-BFGS.
2. Selection (margin, neighbour bonus, new-passage penalty): a grid on the tune part,
   through chat's own `_select`, maximising the share of questions whose chosen sentences
   contain a gold answer, among settings that choose at most MAX_MEAN_SENTENCES on average.
3. The file written records the figures on both parts (top-k and selection).

The refusal rule is not involved (chat/refusal.py decides afterwards); re-run
`python -m eval gate` after a refit, since the sentences chosen feed that rule.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

MAX_MEAN_SENTENCES = 2.6  # answers stay short: the old rule chose 2.3 on average
L2 = 0.01
GRID = {"margin": [2.0, 3.0, 4.0, 5.0, 6.0], "neighbour_bonus": [0.0, 1.0, 2.0], "new_passage_penalty": [0.0, 1.0, 2.0]}


def _row(engine, question: str, history: list, part: str, is_gold) -> dict:
    """One question through the engine's answer path up to sentence scoring: its candidate
    Sentence objects, their feature rows and which of them hold the answer."""
    from chat.language import detect_language

    question = engine._resolve(question, history).question if history else question
    hits = engine._retrieve(question, detect_language(question), engine.settings.top_k)
    cands = engine.extractive.extract(question, hits).candidates
    return {"part": part, "candidates": cands,
            "features": np.array([s.features for s in cands]) if cands else np.zeros((0, 0)),
            "gold": np.array([is_gold(s.text) for s in cands], dtype=float)}


def collect_dev(dev_path: Path, settings) -> list[dict]:
    """The dev set's answerable questions on the bundled corpus (follow-ups resolved first):
    the only questions whose evidence is in the other language, so the only data for the
    other-language features."""
    from chat import ChatEngine
    from eval.metrics import evidence_matcher
    from eval.questions import load_questions
    from index import load_or_build

    engine = ChatEngine(load_or_build(settings), settings)
    engine.warm_up()
    # gold: the question's gold evidence words, else any of its answers
    return [_row(engine, q["question"], q.get("history") or [], "dev", evidence_matcher(q.get("gold"), q["answers"]))
            for q in load_questions(dev_path) if q["answerable"] and q.get("answers")]


def collect(cmrc: Path, settings, progress=True) -> tuple[list[dict], object]:
    """Every answerable CMRC question's row (part: tune or heldout), and the answerer used."""
    from chat import ChatEngine
    from eval.normalize import contains_any
    from eval.refusal_calibration import partition
    from eval.squad import benchmark_index, load_squad

    squad = load_squad(cmrc)
    tune = set(partition(squad)[0])
    index, bench_settings, _, _ = benchmark_index(squad, sorted(squad.paragraphs), settings)
    engine = ChatEngine(index, bench_settings)
    engine.warm_up()
    questions = [q for q in squad.questions if q.answerable]
    engine.prime_questions([q.question for q in questions])
    out, t0 = [], time.perf_counter()
    for i, q in enumerate(questions):
        out.append(_row(engine, q.question, [], "tune" if q.paragraph in tune else "heldout",
                        lambda text, answers=q.answers: contains_any(text, answers)))
        if progress and i % 500 == 0:
            print(f"  collected {i}/{len(questions)} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return out, engine.extractive


def fit_weights(rows: list[dict]) -> np.ndarray:
    from scipy.optimize import minimize

    data = [(r["features"], r["gold"]) for r in rows if r["gold"].any()]

    def loss(w):
        total, grad = 0.0, np.zeros_like(w)
        for F, y in data:
            s = F @ w
            p = np.exp(s - s.max())
            p /= p.sum()
            pg = float(p @ y)
            total -= np.log(pg + 1e-12)
            grad -= F.T @ (p * y) / (pg + 1e-12) - F.T @ p
        return total + L2 * w @ w, grad + 2 * L2 * w

    return minimize(loss, np.zeros(data[0][0].shape[1]), jac=True, method="L-BFGS-B").x


def top_k_rates(rows: list[dict], w: np.ndarray) -> dict:
    rates = {}
    for k in (1, 2, 4):
        hits = [bool(len(r["gold"]) and r["gold"][np.argsort(-(r["features"] @ w))[:k]].any()) for r in rows]
        rates[f"top{k}"] = round(float(np.mean(hits)), 4)
    return rates


def selection_rates(rows: list[dict], w: np.ndarray, answerer, params: dict) -> dict:
    answerer.margin, answerer.neighbour_bonus, answerer.new_passage_penalty = (
        params["margin"], params["neighbour_bonus"], params["new_passage_penalty"])
    found, sizes = [], []
    for r in rows:
        cands = r["candidates"]
        if not cands:
            found.append(False)
            sizes.append(0)
            continue
        for s, score in zip(cands, r["features"] @ w):
            s.score = float(score)
        ranked = sorted(cands, key=lambda s: -s.score)
        chosen = {id(s) for s in answerer._select(ranked, cands, None)}
        found.append(any(g and id(s) in chosen for s, g in zip(cands, r["gold"])))
        sizes.append(len(chosen))
    return {"contains_gold": round(float(np.mean(found)), 4), "mean_sentences": round(float(np.mean(sizes)), 2)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.sentence_calibration", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cmrc", default=str(Path(__file__).resolve().parent.parent.parent / "shared" / "bench"
                                         / "cmrc2018_dev.json"))
    p.add_argument("--dev", default=str(Path(__file__).resolve().parent.parent / "data" / "questions" / "dev.jsonl"))
    p.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "chat" / "sentence_weights.json"))
    args = p.parse_args(argv)

    from chat.sentencerank import FEATURES
    from settings import apply_offline_defaults, load_settings

    apply_offline_defaults()
    settings = load_settings()
    rows, answerer = collect(Path(args.cmrc), settings)
    dev = collect_dev(Path(args.dev), settings)
    tune = [r for r in rows if r["part"] == "tune"]
    heldout = [r for r in rows if r["part"] == "heldout"]
    w = fit_weights(tune + dev)
    print("weights:", dict(zip(FEATURES, np.round(w, 3))), file=sys.stderr)

    best = None
    for values in itertools.product(*GRID.values()):
        params = dict(zip(GRID, values))
        rate = selection_rates(tune, w, answerer, params)
        print(f"  {params} tune {rate}", file=sys.stderr)
        if rate["mean_sentences"] <= MAX_MEAN_SENTENCES and (best is None or rate["contains_gold"] > best[1]["contains_gold"]):
            best = (params, rate)
    params = best[0]
    result = {
        "features": list(FEATURES),
        "weights": [round(float(x), 4) for x in w],
        "selection": params,
        "fitted_on": f"CMRC 2018 dev tune part ({len(tune)} questions) + dev set answerables ({len(dev)}), {datetime.now(timezone.utc):%Y-%m-%d}, "
                     f"chunking {settings.chunk_size}/{settings.chunk_overlap}, top_k {settings.top_k}",
        "measured": {
            "tune": {"n": len(tune), **top_k_rates(tune, w), **selection_rates(tune, w, answerer, params)},
            "heldout": {"n": len(heldout), **top_k_rates(heldout, w), **selection_rates(heldout, w, answerer, params)},
            "dev (in the fit)": {"n": len(dev), **top_k_rates(dev, w), **selection_rates(dev, w, answerer, params)},
        },
    }
    Path(args.out).write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result["measured"], indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
