"""Every fitted parameter of ClusterQA, in one typed, versioned file (index/fitted.json).

Only fit commands write it (`python -m eval.fit_fusion`, `python -m eval.train_reader
calibrate`), and only on the training files of ../shared/bench (split by article,
eval/splits.py); each section records what it was fitted on. It lives in `index/` because
index is the lowest package that reads it (fusion); chat reads the reader section.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

FITTED_PATH = Path(__file__).with_name("fitted.json")
FITTED_VERSION = 1


@dataclass
class FusionParams:
    dense_weight: float = 0.55  # same-language candidates: w * dense + (1 - w) * bm25 (min-max)
    cross_weight: float = 1.0  # other-language candidates: cross_weight * dense (min-max)
    fitted_on: str = "defaults"
    figures: dict = field(default_factory=dict)


@dataclass
class ReaderParams:
    """The calibrated answerability score of a read passage, a logistic regression of the
    reader's two outputs and the passage's retrieval signals ("does this passage answer?"):
    passages are ordered by it and the best one must reach `answer_threshold`."""

    answerable_weight: float = 1.0  # the reader's answerability logit
    span_weight: float = 0.0  # the reader's best span score (start + end logit)
    retrieval_weight: float = 1.0  # the fused retrieval score (min-max scaled over the pool: relative)
    cosine_weight: float = 0.0  # the passage's dense cosine with the question (absolute)
    cross_language_weight: float = 0.0  # 1 when passage and question are in different languages
    # other-language passages weigh their retrieval signals apart: their cosines and fused
    # scores run lower than same-language ones in a corpus holding both (the dense model's bias)
    cross_retrieval_weight: float = 0.0
    cross_cosine_weight: float = 0.0
    bias: float = 0.0
    answer_threshold: float = 0.0
    # the top retrieved passage alone is read first; at or above this score the others are
    # not read (None: always read them all). Fitted so that it costs no hit@1.
    confident_threshold: float | None = None
    fitted_on: str = "defaults"
    figures: dict = field(default_factory=dict)

    def score(self, f: dict) -> float:
        """`f`: a read passage's features as chat.engine.passage_features returns them."""
        terms = reader_terms(f)
        return sum(getattr(self, weight) * terms[name] for name, weight in READER_TERMS.items()) + self.bias


# the score's terms (eval/calibrate_reader.py fits one weight each) -> ReaderParams field
READER_TERMS = {"answerable": "answerable_weight", "span": "span_weight", "retrieval": "retrieval_weight",
                "cosine": "cosine_weight", "cross": "cross_language_weight",
                "cross_retrieval": "cross_retrieval_weight", "cross_cosine": "cross_cosine_weight"}


def reader_terms(f: dict) -> dict:
    """A read passage's features and, for an other-language passage, its retrieval score and
    cosine again as terms of their own (0 for same-language passages)."""
    base = {name: float(f.get(name, 0.0)) for name in ("answerable", "span", "retrieval", "cosine", "cross")}
    return {**base, "cross_retrieval": base["cross"] * base["retrieval"], "cross_cosine": base["cross"] * base["cosine"]}


@dataclass
class Fitted:
    version: int = FITTED_VERSION
    fusion: FusionParams = field(default_factory=FusionParams)
    reader: ReaderParams = field(default_factory=ReaderParams)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Fitted":
        if data.get("version") != FITTED_VERSION:
            raise ValueError(f"{FITTED_PATH.name}: version {data.get('version')!r}, expected {FITTED_VERSION}")
        return cls(version=FITTED_VERSION, fusion=FusionParams(**data.get("fusion", {})),
                   reader=ReaderParams(**data.get("reader", {})))


@lru_cache(maxsize=1)
def load_fitted(path: Path = FITTED_PATH) -> Fitted:
    if not path.exists():
        return Fitted()
    return Fitted.from_dict(json.loads(path.read_text(encoding="utf-8")))


def save_fitted(update, path: Path = FITTED_PATH) -> Fitted:
    """Apply `update(fitted)` to the current file and write it back atomically."""
    fitted = Fitted.from_dict(json.loads(path.read_text(encoding="utf-8"))) if path.exists() else Fitted()
    update(fitted)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(fitted.to_dict(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    load_fitted.cache_clear()
    return fitted
