"""BM25 keyword index (bm25s) over pre-tokenised chunks."""

from __future__ import annotations

import logging

import numpy as np

logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at INFO

# bm25s defaults (Lucene variant); k1/b left at the values the literature uses.
K1 = 1.5
B = 0.75


class KeywordIndex:
    """BM25 over token lists; row i of the index is token_lists[i].

    Rebuilt from stored tokens whenever the chunk set changes: bm25s indexes 10k
    chunks in well under a second, which keeps add/remove simple and exact.
    """

    def __init__(self, token_lists: list[list[str]]):
        import bm25s

        self.size = len(token_lists)
        self._bm25 = None
        if any(token_lists):
            self._bm25 = bm25s.BM25(k1=K1, b=B)
            self._bm25.index(token_lists, show_progress=False)

    def scores(self, query_tokens: list[str]) -> np.ndarray:
        """BM25 score of every row for this query (zeros when no token is known)."""
        if self._bm25 is None:
            return np.zeros(self.size, dtype=np.float32)
        vocab = self._bm25.vocab_dict
        ids = [vocab[t] for t in query_tokens if t in vocab]
        if not ids:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self._bm25.get_scores(ids), dtype=np.float32)

    def search(self, query_tokens: list[str], k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top-k rows with a positive score: (rows, scores, all_scores), best first."""
        all_scores = self.scores(query_tokens)
        k = min(k, self.size)
        if k <= 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32), all_scores
        top = np.argpartition(-all_scores, k - 1)[:k]
        top = top[np.argsort(-all_scores[top], kind="stable")]
        top = top[all_scores[top] > 0]
        return top.astype(np.int64), all_scores[top], all_scores
