"""Fusing the dense and BM25 result lists into one ranking of Hits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ingest.records import Chunk

from .fitted import FusionParams

MODES = ("hybrid", "dense", "bm25")


@dataclass
class Hit:
    chunk: Chunk
    score: float  # fused score (higher is better); the component score in single modes
    dense_rank: int | None  # 1-based rank in the dense list, None if absent
    bm25_rank: int | None
    dense_score: float | None  # cosine
    bm25_score: float | None

    def to_dict(self) -> dict:
        return {
            "chunk": self.chunk.to_dict(),
            "score": self.score,
            "dense_rank": self.dense_rank,
            "bm25_rank": self.bm25_rank,
            "dense_score": self.dense_score,
            "bm25_score": self.bm25_score,
        }


@dataclass
class Candidates:
    """One query's candidate pool: the union of both top lists, both scores for each."""

    rows: np.ndarray  # chunk rows
    dense_scores: np.ndarray  # cosine, computed for every candidate
    bm25_scores: np.ndarray  # BM25, computed for every candidate (0 = no shared token)
    dense_ranks: np.ndarray  # 1-based rank in the dense list, 0 = not in it
    bm25_ranks: np.ndarray
    # True where the chunk's language differs from the query's: BM25 cannot match there
    cross_language: np.ndarray | None = None


@dataclass
class Fusion:
    """How the two lists are combined; defaults chosen by measurement (index/README.md).

    - "weighted": each score min-max normalised over the candidate pool (the union of
      both top-`depth` lists, with both scores computed exactly for every candidate),
      then dense_weight * dense + (1 - dense_weight) * bm25.
    - "rrf": sum of 1 / (rrf_k + rank) over the lists a candidate appears in.

    Language-aware: BM25 cannot match a Chinese question to an English passage (or the
    reverse); its few shared tokens (numbers, Latin names) are noise there. A candidate in
    the other language than the query is scored by its dense score alone, scaled by
    `cross_weight` so it competes with same-language candidates on one scale. The
    weights are fitted on the training split (eval/fit_fusion.py, index/fitted.json); the
    defaults here are the unfitted ones of index/fitted.py FusionParams.
    """

    method: str = "weighted"
    dense_weight: float = FusionParams.dense_weight
    rrf_k: int = 60
    depth: int = 50  # candidates taken from each list
    cross_weight: float = FusionParams.cross_weight  # weight of dense score for other-language candidates

    def __post_init__(self):
        if self.method not in ("weighted", "rrf"):
            raise ValueError(f"unknown fusion method {self.method!r} (weighted|rrf)")

    def fuse(self, c: Candidates) -> np.ndarray:
        """Fused score per candidate (aligned with c.rows)."""
        if self.method == "rrf":
            fused = np.zeros(len(c.rows))
            for ranks in (c.dense_ranks, c.bm25_ranks):
                present = ranks > 0
                fused[present] += 1.0 / (self.rrf_k + ranks[present])
            return fused
        dense = _minmax(c.dense_scores)
        fused = self.dense_weight * dense + (1 - self.dense_weight) * _minmax(c.bm25_scores)
        if c.cross_language is not None and c.cross_language.any():
            cross = c.cross_language
            fused[cross] = self.cross_weight * dense[cross]
            same = ~cross
            if same.any():  # normalise BM25 over the same-language candidates only
                fused[same] = (self.dense_weight * dense[same]
                               + (1 - self.dense_weight) * _minmax(c.bm25_scores[same]))
        return fused

    def rank(self, c: Candidates, top_k: int) -> list[tuple[int, float]]:
        """[(index into c.rows, fused score)], best first."""
        fused = self.fuse(c)
        order = np.argsort(-fused, kind="stable")[:top_k]
        return [(int(j), float(fused[j])) for j in order]


def _minmax(x: np.ndarray) -> np.ndarray:
    lo, hi = float(np.min(x)), float(np.max(x))
    if hi - lo <= 1e-12:
        return np.zeros_like(x, dtype=np.float64)
    return (x - lo) / (hi - lo)
