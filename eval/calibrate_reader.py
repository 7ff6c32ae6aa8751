"""Fit the reader's calibration on the held-out split: the answerability score's weights
(index/fitted.py READER_TERMS) and bias, the answer threshold and the confident threshold.

    .venv/bin/python -m eval.calibrate_reader            # collect, fit, write chat/reader/calibration.json
    .venv/bin/python -m eval.calibrate_reader --reader-dir D   # the calibration of the reader in D (D/calibration.json)
    .venv/bin/python -m eval.calibrate_reader --records R.jsonl --dry-run   # keep what was read
    .venv/bin/python -m eval.calibrate_reader --from-records R.jsonl        # refit without reading

Data: the held-out part of every training file (eval/splits.py; the reader never trained on
it). Per file, a seeded 30 % of the articles is left out of the index, so their questions
are what "not in the documents" looks like; the rest must be answered. Besides each file
alone, XQuAD's paragraphs are asked in the other language, alone and inside a corpus of both
languages (mixed_en, mixed_zh: as the product's own corpus is). Each question is
retrieved and read through the engine as it serves (same passages, same reader); per read
passage we record its answerability logit, its retrieval score and whether it holds the
answer. Then:

- the calibrated answerability score: a logistic regression, per read passage, of "it holds
  the answer" on the reader's answerability logit, its span score, the fused retrieval score
  (relative to the pool), the dense cosine (absolute: how close the nearest passage really
  is, which is what an unindexed question lacks), whether the languages differ and, for
  other-language passages, their retrieval score and cosine apart (they run lower)
  (every passage of an unindexed question is a negative); passages are ordered by it, and
  the figures keep hit@1 of the retrieval order and of the reader's logit alone, which the
  re-ranking must beat;
- threshold on the best passage's score: the highest one that still answers ≥ 97.5 % of the answerable questions
  (the product's floor is ≤ 3 % of them refused), so refusing a question is never cheaper
  than it was promised to be; the share of unindexed questions refused is reported;
- the confident threshold (fit_confident): above it the top passage is read alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from index.fitted import READER_TERMS, reader_terms

from . import splits

ANSWER_FLOOR = 0.975
UNINDEXED_SHARE = 0.3


def collect(settings, limit_per_file: int = 300, seed: int = 0, progress: bool = True) -> list[dict]:
    from tqdm import tqdm

    from chat import ChatEngine
    from chat.engine import passage_features
    from eval.normalize import contains_any
    from eval.squad import benchmark_index, paragraph_of_doc
    from index.text import query_language
    from ingest.script import to_simplified

    work = Path(settings.cache_dir) / "calibration"
    out = []
    for source in SOURCES:
        squad, questions = _source(source, work, limit_per_file, seed)
        keys = sorted({q.paragraph for q in squad.questions if q.answerable})
        index, bench_settings, _, _ = benchmark_index(squad, keys, settings)
        engine = ChatEngine(index, bench_settings)
        for q in tqdm(questions, desc=f"calibrate {source}", disable=not progress, file=sys.stderr):
            readings = engine.read_passages(q.question)
            language = query_language(to_simplified(q.question))  # as the engine's _read
            out.append({
                "source": source, "answerable": q.answerable,
                "passages": [{**passage_features(r.hit, r.prediction, language),
                              "relevant": paragraph_of_doc(r.hit.chunk.doc_id) == q.paragraph
                              and contains_any(r.hit.chunk.text, q.answers)}
                             for r in readings if r.prediction is not None],
            })
    return out


SOURCES = ("cmrc_trial", "drcd", "squad", "xquad_en", "xquad_zh", "mixed_en", "mixed_zh")


def _source(source: str, work: Path, limit: int, seed: int):
    """(SquadSet with UNINDEXED_SHARE of its articles dropped, the questions asked).

    - a training file's held-out part, its own questions;
    - xquad_en / xquad_zh: those paragraphs with the other language's questions;
    - mixed_en / mixed_zh: one corpus in both languages, as the product's is: XQuAD's Chinese
      paragraphs asked in English beside SQuAD's English paragraphs with their own questions
      (and the reverse, CMRC trial beside XQuAD's English paragraphs), half the questions
      each. Here the dense model ranks passages in the question's language first, which
      single-language corpora never show."""
    from dataclasses import replace as copy

    from eval.squad import load_squad, stratified_sample
    from eval.squad_bench import drop_articles, replace_questions

    def held_out(name):
        return splits.split(name, splits.load(name), "held_out")

    if source.startswith("mixed"):
        asked, own = ("xquad_en", "xquad_zh") if source == "mixed_en" else ("xquad_zh", "xquad_en")
        questions_of = {r.qid: r.question for r in held_out(asked)}
        cross = [copy(r, question=questions_of[r.qid], article="x:" + r.article)
                 for r in held_out(own) if r.qid in questions_of]
        beside = "squad" if source == "mixed_en" else "cmrc_trial"
        xquad_contexts = {r.context for r in held_out("xquad_en")}  # SQuAD repeats XQuAD's paragraphs
        same = [r for r in held_out(beside) if r.context not in xquad_contexts]
        squad = drop_articles(load_squad(splits.write_squad(cross + same, work / f"{source}_held_out.json")),
                              UNINDEXED_SHARE, seed)
        cross_ids = {r.qid for r in cross}
        questions = (stratified_sample([q for q in squad.questions if q.id in cross_ids], limit // 2, seed)
                     + stratified_sample([q for q in squad.questions if q.id not in cross_ids], limit // 2, seed))
        return squad, questions
    squad = drop_articles(load_squad(splits.write_squad(held_out(source), work / f"{source}_held_out.json")),
                          UNINDEXED_SHARE, seed)
    if source.startswith("xquad"):  # cross-language: the other file's questions over these paragraphs
        other = "xquad_zh" if source == "xquad_en" else "xquad_en"
        squad = replace_questions(squad, load_squad(splits.write_squad(held_out(other), work / f"{other}_q.json")))
    return squad, stratified_sample(squad.questions, limit, seed)


FEATURES = tuple(READER_TERMS)


def _features(p: dict) -> list[float]:
    terms = reader_terms(p)
    return [terms[name] for name in FEATURES]


def logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, steps: int = 50) -> np.ndarray:
    """Weights (with the bias last) of an L2-regularised logistic regression, by Newton steps."""
    X = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(X.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-X @ w))
        grad = X.T @ (p - y) + l2 * np.r_[w[:-1], 0]
        hess = (X * (p * (1 - p))[:, None]).T @ X + l2 * np.eye(X.shape[1])
        w -= np.linalg.solve(hess, grad)
    return w


def fit(records: list[dict]) -> dict:
    """Per read passage, "does it hold the answer?" (false for every passage of an unindexed
    question) as a logistic regression of the reader's outputs and the retrieval score;
    the threshold on the best passage's score keeps ANSWER_FLOOR of answerables answered."""
    rows = [(p, r) for r in records for p in r["passages"]]
    x = np.array([_features(p) for p, _ in rows], dtype=float)
    y = np.array([float(r["answerable"] and p["relevant"]) for p, r in rows])
    w = logistic(x, y)

    def score(p):
        return float(np.dot(w[:-1], _features(p)) + w[-1])

    def best(r):
        return max(r["passages"], key=score)

    answerable = [r for r in records if r["answerable"] and r["passages"]]
    unindexed = [r for r in records if not r["answerable"] and r["passages"]]
    pos = sorted(score(best(r)) for r in answerable)
    threshold = pos[int((1 - ANSWER_FLOOR) * len(pos))] if pos else 0.0

    def rates(rs_pos, rs_neg, key=score):
        hit = sum(max(r["passages"], key=key)["relevant"] for r in rs_pos) / max(1, len(rs_pos))
        return {"hit@1": round(hit, 4),
                "answerable_answered": round(sum(score(best(r)) >= threshold for r in rs_pos) / max(1, len(rs_pos)), 4),
                "unindexed_refused": round(sum(score(best(r)) < threshold for r in rs_neg) / max(1, len(rs_neg)), 4)}

    confident, early = fit_confident(answerable, unindexed, score, threshold)
    figures = {"questions": len(records), "answerable": len(answerable), "unindexed": len(unindexed),
               **rates(answerable, unindexed), **early,
               # what re-ranking must beat: the retrieval order, and the reader's own logit alone
               "hit@1_retrieval_order": rates(answerable, [], key=lambda p: p["retrieval"])["hit@1"],
               "hit@1_answerability_logit_only": rates(answerable, [], key=lambda p: p["answerable"])["hit@1"],
               "by_source": {}}
    for source in sorted({r["source"] for r in records}):
        figures["by_source"][source] = rates([r for r in answerable if r["source"] == source],
                                             [r for r in unindexed if r["source"] == source])
    return {"weights": dict(zip(FEATURES + ("bias",), (round(float(v), 4) for v in w))),
            "answer_threshold": round(float(threshold), 4),
            "confident_threshold": None if confident is None else round(float(confident), 4), "figures": figures}


def fit_confident(answerable: list[dict], unindexed: list[dict], score, threshold: float):
    """The lowest score of the top retrieved passage above which reading only that passage
    loses no hit@1 against reading them all (chat/engine.py _read). Never below the answer
    threshold, so what is refused does not change. (None, {}) when no such score exists."""
    def summary(r):  # (score of the top retrieved passage, is it relevant, is the best-scored one)
        top = max(r["passages"], key=lambda p: p["retrieval"])
        return score(top), top["relevant"], max(r["passages"], key=score)["relevant"]

    pos = [summary(r) for r in answerable]
    tops = [s for s, _, _ in pos] + [summary(r)[0] for r in unindexed]

    def hits(t):
        return sum(top_ok if s >= t else best_ok for s, top_ok, best_ok in pos)

    full = hits(float("inf"))
    candidates = sorted({s for s in tops if s >= threshold})
    confident = next((t for t in candidates if hits(t) >= full), None)
    if confident is None:
        return None, {}
    share = sum(s >= confident for s in tops) / max(1, len(tops))
    return confident, {"hit@1_reading_all": round(full / max(1, len(answerable)), 4),
                       "hit@1_early_exit": round(hits(confident) / max(1, len(answerable)), 4),
                       "share_reading_one_passage": round(share, 4)}


def main(argv=None) -> None:
    from index.fitted import record_dependencies, refitting, save_fitted
    from settings import apply_offline_defaults, load_settings

    ap = argparse.ArgumentParser(prog="python -m eval.calibrate_reader", description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit-per-file", type=int, default=300)
    ap.add_argument("--records", type=Path, help="also write the collected records (JSONL) here")
    ap.add_argument("--from-records", type=Path, help="fit on records written by --records (no reading)")
    ap.add_argument("--dry-run", action="store_true", help="fit and print, do not write the calibration")
    ap.add_argument("--reader-dir", type=Path,
                    help="the reader to calibrate (default: Settings.reader_dir, the committed chat/reader); "
                         "its calibration.json is written beside its weights")
    args = ap.parse_args(argv)
    apply_offline_defaults()
    settings = load_settings()
    if args.reader_dir:
        settings = dataclasses.replace(settings, reader_dir=args.reader_dir.resolve())
    if args.from_records:
        records = [json.loads(line) for line in args.from_records.read_text(encoding="utf-8").splitlines()]
    else:
        with refitting("reader"):  # the engine reads the old calibration while it is refitted
            records = collect(settings, args.limit_per_file)
    if args.records and not args.from_records:
        args.records.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    fitted = fit(records)
    print(json.dumps(fitted, indent=2))
    if not args.dry_run:
        def update(f):
            f.reader.answer_threshold = fitted["answer_threshold"]
            f.reader.confident_threshold = fitted["confident_threshold"]
            for name, weight in READER_TERMS.items():
                setattr(f.reader, weight, fitted["weights"][name])
            f.reader.bias = fitted["weights"]["bias"]
            f.reader.fitted_on = ("held-out split of the training files (eval/splits.py), "
                                  f"{UNINDEXED_SHARE:.0%} of its articles left out of the index; "
                                  "single-language, cross-language and mixed-language corpora")
            f.reader.figures = fitted["figures"]
            record_dependencies(f, "reader", settings)

        save_fitted(update, reader_dir=settings.reader_dir)


if __name__ == "__main__":
    main()
