"""Fit the refusal checks' thresholds (chat/refusal.json) on the fitting part of the question
bank (eval/bank.py) and the held-out split of the training files (eval/splits.py).

For every question the engine's reader reads its passages once; each read passage gets the
refusal checks' inputs (support, topicality, answer type, calibrated score). The thresholds
are then chosen on a grid: the most unanswerable bank questions refused while few answerable
ones are refused beyond what the reader's own threshold refuses (`--max-extra-bank`,
`--max-extra-heldout`).

    python -m eval.calibrate_refusal [--heldout 20] [--records R.json [--from-records]] [--write]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys

from index.text import query_language, titled_text


def passage_records(engine, question: str, history: list | None = None) -> list[dict]:
    """The refusal inputs of every passage the engine reads for `question`, in its order."""
    from chat.refusal import asked_type, numbers_stated, span_matches, support_text, term_support, topical_similarity

    resolved = engine._resolve(question, history or []).question
    language = query_language(resolved)
    out = []
    for r in engine.read_passages(resolved):
        p = r.prediction
        if p is None or p.end <= p.start:
            continue
        same = r.hit.chunk.language == language
        passage = titled_text(r.hit.chunk)
        around = support_text(r.hit.chunk, p.start, p.end)
        out.append({"rank_score": r.rank_score, "same": same, "answerable": p.answerable, "span_score": p.span_score,
                    "support": term_support(resolved, around) if same else None,
                    "numbers_ok": numbers_stated(resolved, passage) if same else True,
                    "support_passage": term_support(resolved, passage) if same else None,
                    "topicality": topical_similarity(resolved, passage),
                    "type_ok": span_matches(asked_type(resolved), p.text),
                    "text": r.hit.chunk.text, "span": p.text})
    return out


def decide(records: list[dict], threshold: float, min_support: float, min_top: float, min_top_cross: float,
           own_support: float = 2.0):
    """The index of the passage that would answer, or None (as chat/strategies/factoid.decide)."""
    owned = any(r["same"] and r["support"] >= own_support for r in records)
    for i, r in enumerate(records):
        if r["rank_score"] < threshold:
            continue
        if (r["support"] is not None and r["support"] < min_support) or not r.get("numbers_ok", True):
            continue
        if not r["same"] and owned:
            continue
        if r["topicality"] < (min_top if r["same"] else min_top_cross):
            continue
        if not r["type_ok"]:
            continue
        return i
    return None


def collect(engine, progress: bool, heldout: int, seed: int = 0) -> dict:
    from eval.bank import load_bank
    from eval.metrics import evidence_matcher
    from eval.progress import bar

    groups = {"bank_answerable": [], "bank_unanswerable": [], "heldout_answerable": []}
    bank = load_bank("fit")
    with bar(len(bank), "bank (fit part)", progress) as pb:
        for q in bank:
            matcher = evidence_matcher(q.get("gold"), q.get("answers"))
            recs = passage_records(engine, q["question"], q.get("history"))
            for r in recs:
                r["right"] = bool(matcher and matcher(r["text"]))
                del r["text"]
            if q.get("kind") in ("overview",) or (q.get("kind") == "metadata"):
                continue  # answered by their own strategies, not the reader
            groups["bank_answerable" if q["answerable"] else "bank_unanswerable"].append(recs)
            pb.update(1)
    if heldout:
        groups["heldout_answerable"] = heldout_records(heldout, seed, progress, engine.settings)
    return groups


def heldout_records(per_source: int, seed: int, progress: bool, settings=None) -> list:
    """Answerable questions of the held-out split, asked over an index of their own sources
    (eval/calibrate_reader.py's corpora: single-language and both languages mixed)."""
    from pathlib import Path

    from chat import ChatEngine
    from eval.calibrate_reader import _source
    from eval.normalize import contains_any
    from eval.progress import bar
    from eval.squad import benchmark_index

    work = Path(settings.cache_dir) / "calibration"
    out = []
    for source in ("cmrc_trial", "drcd", "squad", "mixed_en", "mixed_zh"):
        squad, questions = _source(source, work, per_source, seed)
        questions = [q for q in questions if q.answerable]
        keys = sorted({q.paragraph for q in squad.questions if q.answerable})
        index, bench_settings, _, _ = benchmark_index(squad, keys, settings)
        engine = ChatEngine(index, bench_settings)
        with bar(len(questions), f"held-out {source}", progress) as pb:
            for q in questions:
                recs = passage_records(engine, q.question)
                for r, reading_text in zip(recs, [r.pop("text") for r in recs]):
                    r["right"] = contains_any(reading_text, q.answers)
                out.append(recs)
                pb.update(1)
    return out


def fit(groups: dict, threshold: float, max_extra_bank: float, max_extra_heldout: float):
    """The thresholds that refuse the most unanswerable bank questions while refusing at most
    `max_extra_*` more answerable ones than the reader's own threshold does (bank, held-out)."""
    base = evaluate(groups, threshold, 0.0, -1.0, -1.0)
    grid_support = [0.0, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6]
    grid_top = [0.0, 0.1, 0.15, 0.2, 0.25, 0.3]
    grid_own = [0.5, 0.6, 0.7, 0.8, 2.0]  # 2.0: never owned
    best, best_key = None, None
    for s, t, tc, own in itertools.product(grid_support, grid_top, grid_top, grid_own):
        figures = evaluate(groups, threshold, s, t, tc, own)
        if figures["bank_answerable_refused"] > base["bank_answerable_refused"] + max_extra_bank \
                or figures["heldout_answerable_refused"] > base["heldout_answerable_refused"] + max_extra_heldout:
            continue
        # most unanswerables refused, then most answered right; among ties the highest
        # thresholds (at no measured cost they guard best against questions unlike the bank's)
        key = (figures["bank_unanswerable_refused"], figures["bank_answered_right"] + figures["heldout_answered_right"],
               s + t + tc - own)
        if best_key is None or key > best_key:
            best, best_key = ({"min_support": s, "min_topicality": t, "min_topicality_cross": tc,
                               "own_support": own}, figures), key
    return best


def evaluate(groups: dict, threshold: float, s: float, t: float, tc: float, own: float = 2.0) -> dict:
    def refused(recs_list):
        if not recs_list:
            return 0.0
        return sum(decide(r, threshold, s, t, tc, own) is None for r in recs_list) / len(recs_list)

    def right(recs_list):
        if not recs_list:
            return 0.0
        hits = [decide(r, threshold, s, t, tc, own) for r in recs_list]
        return sum(1 for r, i in zip(recs_list, hits) if i is not None and r[i]["right"]) / len(recs_list)

    return {"bank_answerable_refused": round(refused(groups["bank_answerable"]), 4),
            "bank_answered_right": round(right(groups["bank_answerable"]), 4),
            "bank_unanswerable_refused": round(refused(groups["bank_unanswerable"]), 4),
            "heldout_answerable_refused": round(refused(groups["heldout_answerable"]), 4),
            "heldout_answered_right": round(right(groups["heldout_answerable"]), 4),
            "n": {k: len(v) for k, v in groups.items()}}


def main(argv=None) -> int:
    from chat import ChatEngine
    from chat.refusal import RefusalParams, save_params
    from index import load_or_build
    from settings import apply_offline_defaults, load_settings

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--heldout", type=int, default=120, help="held-out split questions per source (0: none)")
    p.add_argument("--max-extra-bank", type=float, default=0.05,
                   help="answerable bank questions refused beyond the reader's own refusals")
    p.add_argument("--max-extra-heldout", type=float, default=0.015,
                   help="answerable held-out questions refused beyond the reader's own refusals")
    p.add_argument("--records", help="save (or with --from-records, load) the collected records here")
    p.add_argument("--from-records", action="store_true")
    p.add_argument("--write", action="store_true", help="write chat/refusal.json")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    apply_offline_defaults()
    settings = load_settings()
    if args.from_records:
        groups = json.load(open(args.records, encoding="utf-8"))
    else:
        engine = ChatEngine(load_or_build(settings), settings)
        groups = collect(engine, not args.quiet, args.heldout)
        if args.records:
            json.dump(groups, open(args.records, "w", encoding="utf-8"))
    from pathlib import Path

    from index.fitted import load_fitted

    threshold = load_fitted(reader_dir=Path(settings.reader_dir)).reader.answer_threshold
    d = RefusalParams()
    print("today's defaults:", json.dumps(evaluate(groups, threshold, d.min_support, d.min_topicality,
                                                   d.min_topicality_cross)))
    print("reader only:", json.dumps(evaluate(groups, threshold, 0.0, -1.0, -1.0)))
    best = fit(groups, threshold, args.max_extra_bank, args.max_extra_heldout)
    if best is None:
        print("no thresholds keep answerable refusals within the limit", file=sys.stderr)
        return 1
    chosen, figures = best
    print("fitted:", json.dumps(chosen), json.dumps(figures))
    if args.write:
        params = RefusalParams(**chosen, fitted_on="question bank fitting part (eval/bank.py) + held-out split "
                               f"(up to {args.heldout} questions per source: CMRC trial, DRCD, SQuAD part A, "
                               "XQuAD across languages beside SQuAD / CMRC trial); at most "
                               f"{args.max_extra_bank:.1%} (bank) / {args.max_extra_heldout:.1%} (held-out) more "
                               "answerable questions refused than by the reader's threshold alone", figures=figures)
        save_params(params)
        print("wrote chat/refusal.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
