"""Fit the hybrid fusion weights on the training split (index/hybrid.py Fusion).

    .venv/bin/python -m eval.fit_fusion [--dry-run]

One mixed-language corpus from the *train* part of the training files (eval/splits.py):
CMRC 2018 trial paragraphs (Chinese), the SQuAD part A paragraphs XQuAD does not repeat
(English) and XQuAD part A's Chinese paragraphs. Three groups of questions are asked:
CMRC trial (zh → zh), SQuAD (en → en, a seeded sample) and XQuAD's English questions, whose
answer is in the Chinese paragraph only (en → zh). Every question's candidate pool is built
once. `dense_weight` (same-language candidates) is the one with the best mean same-language
MRR@10; then `cross_weight` (other-language candidates, dense only) is the one with the
best en → zh MRR@10 that costs each same-language group at most 0.002. Both are written to
index/fitted.json with the grid's figures.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np

from index.fitted import FusionParams

from . import splits

DEFAULT = FusionParams()  # the unfitted weights: ties go to the grid point nearest them
DENSE_WEIGHTS = (0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8)
CROSS_WEIGHTS = (0.3, 0.5, 0.7, 0.9, 1.0, 1.2, 1.5, 2.0, 3.0)
SQUAD_SAMPLE = 600
SAME_LANGUAGE_SLACK = 0.002  # cross-language help may cost same-language MRR at most this much


def corpus_and_questions(seed: int = 0):
    cmrc = splits.split("cmrc_trial", splits.load("cmrc_trial"), "train")
    squad = splits.split("squad", splits.load("squad"), "train")
    xen = splits.split("xquad_en", splits.load("xquad_en"), "train")
    xzh = splits.split("xquad_zh", splits.load("xquad_zh"), "train")
    xquad_contexts = {r.context for r in xen}  # XQuAD repeats 120 SQuAD paragraphs: leave those out
    squad = [r for r in squad if r.context not in xquad_contexts]
    paragraphs = {}  # context -> (key, title)
    for group, rows in (("cmrc", cmrc), ("squad", squad), ("xzh", xzh)):
        for r in rows:
            paragraphs.setdefault(r.context, (f"{group}-{len(paragraphs)}", r.article))
    zh_of = {r.qid: r for r in xzh}
    groups = {
        "zh>zh": [(r.question, r.context) for r in cmrc],
        "en>en": [(r.question, r.context) for r in random.Random(seed).sample(squad, min(SQUAD_SAMPLE, len(squad)))],
        "en>zh": [(r.question, zh_of[r.qid].context) for r in xen if r.qid in zh_of],
    }
    return paragraphs, groups


def build_index(paragraphs: dict, settings):
    from index import build_index as build

    import hashlib

    key = hashlib.sha1("\n".join(sorted(paragraphs)).encode()).hexdigest()[:12]
    root = Path(settings.cache_dir) / f"fit_fusion-{key}"
    corpus = root / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    paths = []
    for context, (key, title) in paragraphs.items():
        p = corpus / f"{key}.txt"
        if not p.exists():
            p.write_text(f"title: {title}\n\n{context.strip()}\n", encoding="utf-8")
        paths.append(p)
    s = settings.replace(corpus_dir=corpus, index_dir=root / "index")
    from index import IndexError_, open_index

    try:
        return open_index(root / "index", s)
    except (IndexError_, FileNotFoundError):
        return build(paths, s, index_dir=root / "index")


def mrr(ranked_docs: list[str], gold_key: str) -> float:
    """Reciprocal rank of the first chunk of the gold paragraph's document (cut at 10)."""
    for rank, doc_id in enumerate(ranked_docs[:10], 1):
        if doc_id.rsplit("/", 1)[-1] == f"{gold_key}.txt":
            return 1.0 / rank
    return 0.0


def fit(settings, progress: bool = True) -> dict:
    from index.hybrid import Fusion

    paragraphs, groups = corpus_and_questions()
    index = build_index(paragraphs, settings)
    pools = {name: index.candidates([q for q, _ in qs]) for name, qs in groups.items()}
    scores = {}
    for dw in DENSE_WEIGHTS:
        for cw in CROSS_WEIGHTS:
            fusion = Fusion("weighted", dense_weight=dw, cross_weight=cw)
            per = {}
            for name, qs in groups.items():
                vals = []
                for (cand, chunks), (_, gold) in zip(pools[name], qs):
                    ranked = [chunks[int(cand.rows[j])].doc_id for j, _ in fusion.rank(cand, 10)]
                    vals.append(mrr(ranked, paragraphs[gold][0]))
                per[name] = float(np.mean(vals)) if vals else 0.0
            scores[(dw, cw)] = per
    # 1. dense_weight: the best same-language MRR (mean of zh>zh and en>en) without cross boost
    same = lambda k: (scores[k]["zh>zh"] + scores[k]["en>en"]) / 2  # noqa: E731
    dw = max(DENSE_WEIGHTS, key=lambda d: (round(same((d, 1.0)), 4), -abs(d - DEFAULT.dense_weight)))
    # 2. cross_weight: the best en>zh that keeps each same-language MRR within SAME_LANGUAGE_SLACK
    floor = {g: scores[(dw, 1.0)][g] - SAME_LANGUAGE_SLACK for g in ("zh>zh", "en>en")}
    allowed = [c for c in CROSS_WEIGHTS if all(scores[(dw, c)][g] >= floor[g] for g in floor)]
    best = (dw, max(allowed, key=lambda c: (round(scores[(dw, c)]["en>zh"], 4), -abs(c - DEFAULT.cross_weight))))
    default = scores.get((DEFAULT.dense_weight, DEFAULT.cross_weight))
    return {"dense_weight": best[0], "cross_weight": best[1],
            "figures": {"mrr@10": {k: round(v, 4) for k, v in scores[best].items()},
                        "mrr@10_without_cross_boost": {k: round(v, 4) for k, v in scores[(best[0], 1.0)].items()},
                        f"mrr@10_at_{DEFAULT.dense_weight}_{DEFAULT.cross_weight}":
                            {k: round(v, 4) for k, v in (default or {}).items()},
                        "questions": {k: len(v) for k, v in groups.items()}, "paragraphs": len(paragraphs)}}


def main(argv=None) -> None:
    from index.fitted import record_dependencies, refitting, save_fitted
    from settings import apply_offline_defaults, load_settings

    ap = argparse.ArgumentParser(prog="python -m eval.fit_fusion", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args(argv)
    apply_offline_defaults()
    settings = load_settings()
    with refitting("fusion"), refitting("reader"):  # the reader's calibration weighs the old fusion
        fitted = fit(settings)
    print(json.dumps(fitted, indent=2, ensure_ascii=False))
    if not args.dry_run:
        def update(f):
            f.fusion.dense_weight = fitted["dense_weight"]
            f.fusion.cross_weight = fitted["cross_weight"]
            f.fusion.fitted_on = ("train split of the training files (eval/splits.py): CMRC trial zh>zh, "
                                  "SQuAD part A en>en, XQuAD part A en>zh, one mixed corpus")
            f.fusion.figures = fitted["figures"]
            record_dependencies(f, "fusion", settings)

        save_fitted(update)


if __name__ == "__main__":
    main()
