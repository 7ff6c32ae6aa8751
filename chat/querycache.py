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


class QueryVectorMemo:
    def __init__(self, embedder, size: int = 2048):
        self._inner = embedder
        self._size = size
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def wrapped(self):
        return self._inner

    def encode_queries(self, texts, show_progress: bool = False) -> np.ndarray:
        texts = list(texts)
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        if missing:
            self._remember(missing, self._inner.encode_queries(missing, show_progress=show_progress))
        with self._lock:
            found = [self._vectors.get(t) for t in texts]
        if any(v is None for v in found):  # evicted meanwhile by a concurrent caller
            return self._inner.encode_queries(texts, show_progress=show_progress)
        if not found:
            return self._inner.encode_queries(texts, show_progress=show_progress)
        return np.stack(found)

    def prime(self, questions: list[str], batch: int = 64) -> None:
        """Encode many questions in batches ahead of asking them (benchmarks)."""
        texts = list(dict.fromkeys(query_text(q) for q in questions))
        for i in range(0, len(texts), batch):
            self._remember(texts[i:i + batch], self._inner.encode_queries(texts[i:i + batch]))

    def forget(self) -> None:
        """Drop every remembered vector (benchmarks timing a question as a new user asks it)."""
        with self._lock:
            self._vectors.clear()

    def _remember(self, texts, vectors) -> None:
        with self._lock:
            for text, vector in zip(texts, vectors):
                self._vectors[text] = vector
                self._vectors.move_to_end(text)
            while len(self._vectors) > self._size:
                self._vectors.popitem(last=False)

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
