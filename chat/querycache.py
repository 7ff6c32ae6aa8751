"""One E5 encoding per question: the index's retrieval and the sentence scorer share it.

Retrieval (index/corpus.py) embeds the question with the index's embedder; sentence scoring
(extractive.py) needs the same query vector. Without sharing, every ask ran the E5 model
twice, and the second run was most of the composition time (on a loaded 2-core machine a
single-query E5 call takes 10 ms idle, several hundred ms under contention).

`QueryVectorMemo` wraps the embedder: `encode_queries` answers from a small LRU keyed by the
exact text and runs the model only for texts it has not seen; everything else (`dim`,
`model_id`, `encode_passages`, …) is the wrapped embedder's. The engine installs it on the
index it answers from, so both paths go through it. Vectors are identical to the wrapped
embedder's, so retrieval results do not change. (The cleaner place is the index itself —
a retrieve() that returns or accepts the query vector; see chat/README.md.)
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np


def query_text(question: str) -> str:
    """The text the index embeds for a question (index/corpus.py `_normalize_query`):
    Simplified script, stripped. If the index changes its normalisation the memo misses
    and the vector is computed again — slower, never wrong."""
    from ingest.script import to_simplified

    return to_simplified(question.strip())


class VectorCache:
    """A thread-safe LRU of vectors by key. `get_many(keys, compute)` returns the vectors of
    `keys` stacked, calling `compute(missing_keys)` once for those not cached. The chat
    package's caches (question vectors, sentence vectors, USE chunk vectors) are all this."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get_many(self, keys, compute) -> np.ndarray:
        keys = list(keys)
        if not keys:
            return np.asarray(compute([]))
        with self._lock:
            found = {k: self._items[k] for k in keys if k in self._items}
            for k in found:
                self._items.move_to_end(k)
        missing = [k for k in dict.fromkeys(keys) if k not in found]
        if missing:
            vectors = compute(missing)
            found.update(zip(missing, vectors))  # kept here: a concurrent caller may evict them
            with self._lock:
                self._items.update(zip(missing, vectors))
                for k in missing:
                    self._items.move_to_end(k)
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
        return np.stack([found[k] for k in keys])

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class QueryVectorMemo:
    def __init__(self, embedder, size: int = 2048):
        self._inner = embedder
        self._vectors = VectorCache(size)

    @property
    def wrapped(self):
        return self._inner

    def encode_queries(self, texts, show_progress: bool = False) -> np.ndarray:
        return self._vectors.get_many(
            texts, lambda missing: self._inner.encode_queries(missing, show_progress=show_progress))

    def prime(self, questions: list[str], batch: int = 64) -> None:
        """Encode many questions in batches ahead of asking them (benchmarks)."""
        texts = list(dict.fromkeys(query_text(q) for q in questions))
        for i in range(0, len(texts), batch):
            self.encode_queries(texts[i:i + batch])

    def forget(self) -> None:
        """Drop every remembered vector (benchmarks timing a question as a new user asks it)."""
        self._vectors.clear()

    def __getattr__(self, name):  # dim, model_id, encode_passages, batch_size, …
        return getattr(self._inner, name)

    def __repr__(self) -> str:
        return f"QueryVectorMemo({self._inner!r})"


def share_query_vectors(index) -> QueryVectorMemo:
    """Install the memo on the index (once) and return it."""
    embedder = index.embedder
    if not isinstance(embedder, QueryVectorMemo):
        embedder = QueryVectorMemo(embedder)
        index.embedder = embedder
    return embedder
