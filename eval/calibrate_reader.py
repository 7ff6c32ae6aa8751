"""Fit the reader's answerability threshold and its re-ranking weight on the held-out split.

    .venv/bin/python -m eval.calibrate_reader            # collect, fit, write index/fitted.json

Data: the held-out part of every training file (eval/splits.py; the reader never trained on
it). Per file, a seeded 30 % of the articles is left out of the index, so their questions
are what "not in the documents" looks like; the rest must be answered. Each question is
retrieved and read through the engine as it serves (same passages, same reader); per read
passage we record its answerability logit, its retrieval score and whether it holds the
answer. Then:

- rerank weight w: passages ordered by answerability + w × retrieval score; w from a grid,
  the one with the best hit@1 on the answerable questions (ties: the smaller w);
- threshold: the highest one that still answers ≥ 97.5 % of the answerable questions
  (the product's floor is ≤ 3 % of them refused), so refusing a question is never cheaper
  than it was promised to be; the share of unindexed questions refused is reported.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import splits

GRID = (0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0)
ANSWER_FLOOR = 0.975
UNINDEXED_SHARE = 0.3


def collect(settings, limit_per_file: int = 300, seed: int = 0, progress: bool = True) -> list[dict]:
    from tqdm import tqdm

    from chat import ChatEngine
    from eval.normalize import contains_any
    from eval.squad import benchmark_index, load_squad, paragraph_of_doc, stratified_sample
    from eval.squad_bench import drop_articles

    work = Path(settings.cache_dir) / "calibration"
    out = []
    for source in ("cmrc_trial", "drcd", "squad", "xquad_en", "xquad_zh"):
        rows = splits.split(source, splits.load(source), "held_out")
        path = splits.write_squad(rows, work / f"{source}_held_out.json")
        squad = drop_articles(load_squad(path), UNINDEXED_SHARE, seed)
        if source.startswith("xquad"):  # cross-language: the other file's questions over these paragraphs
            other = "xquad_zh" if source == "xquad_en" else "xquad_en"
            from eval.squad_bench import replace_questions

            opath = splits.write_squad(splits.split(other, splits.load(other), "held_out"), work / f"{other}_q.json")
            squad = replace_questions(squad, load_squad(opath))
        questions = stratified_sample(squad.questions, limit_per_file, seed)
        keys = sorted({q.paragraph for q in squad.questions if q.answerable})
        index, bench_settings, _, _ = benchmark_index(squad, keys, settings)
        engine = ChatEngine(index, bench_settings)
        for q in tqdm(questions, desc=f"calibrate {source}", disable=not progress, file=sys.stderr):
            readings = engine.read_passages(q.question)
            out.append({
                "source": source, "answerable": q.answerable,
                "passages": [{"answerable": r.prediction.answerable, "retrieval": float(r.hit.score),
                              "relevant": paragraph_of_doc(r.hit.chunk.doc_id) == q.paragraph
                              and contains_any(r.hit.chunk.text, q.answers)}
                             for r in readings if r.prediction is not None],
            })
    return out


def fit(records: list[dict]) -> dict:
    answerable = [r for r in records if r["answerable"] and r["passages"]]

    def best(r, w):
        return max(r["passages"], key=lambda p: p["answerable"] + w * p["retrieval"])

    hit1 = {w: sum(best(r, w)["relevant"] for r in answerable) / max(1, len(answerable)) for w in GRID}
    w = max(GRID, key=lambda g: (round(hit1[g], 4), -g))
    pos = sorted(best(r, w)["answerable"] for r in answerable)
    threshold = pos[int((1 - ANSWER_FLOOR) * len(pos))] if pos else 0.0
    neg = [best(r, w)["answerable"] for r in records if not r["answerable"] and r["passages"]]
    figures = {
        "questions": len(records), "answerable": len(answerable), "unindexed": len(neg),
        "hit@1_by_weight": {str(g): round(v, 4) for g, v in hit1.items()},
        "answerable_answered": round(sum(p >= threshold for p in pos) / max(1, len(pos)), 4),
        "unindexed_refused": round(sum(n < threshold for n in neg) / max(1, len(neg)), 4),
    }
    by_source = {}
    for source in sorted({r["source"] for r in records}):
        rs = [r for r in records if r["source"] == source and r["passages"]]
        a = [r for r in rs if r["answerable"]]
        n = [r for r in rs if not r["answerable"]]
        by_source[source] = {
            "answerable_answered": round(sum(best(r, w)["answerable"] >= threshold for r in a) / max(1, len(a)), 4),
            "unindexed_refused": round(sum(best(r, w)["answerable"] < threshold for r in n) / max(1, len(n)), 4),
            "hit@1": round(sum(best(r, w)["relevant"] for r in a) / max(1, len(a)), 4),
        }
    figures["by_source"] = by_source
    return {"answer_threshold": round(float(threshold), 4), "rerank_retrieval_weight": w, "figures": figures}


def main(argv=None) -> None:
    from index.fitted import save_fitted
    from settings import apply_offline_defaults, load_settings

    ap = argparse.ArgumentParser(prog="python -m eval.calibrate_reader", description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit-per-file", type=int, default=300)
    ap.add_argument("--records", type=Path, help="also write the collected records (JSONL) here")
    ap.add_argument("--dry-run", action="store_true", help="fit and print, do not write index/fitted.json")
    args = ap.parse_args(argv)
    apply_offline_defaults()
    records = collect(load_settings(), args.limit_per_file)
    if args.records:
        args.records.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    fitted = fit(records)
    print(json.dumps(fitted, indent=2))
    if not args.dry_run:
        def update(f):
            f.reader.answer_threshold = fitted["answer_threshold"]
            f.reader.rerank_retrieval_weight = fitted["rerank_retrieval_weight"]
            f.reader.fitted_on = ("held-out split of the training files (eval/splits.py), "
                                  f"{UNINDEXED_SHARE:.0%} of its articles left out of the index")
            f.reader.figures = fitted["figures"]

        save_fitted(update)


if __name__ == "__main__":
    main()
