"""ClusterQA index: multilingual embeddings, FAISS, Chinese BM25, hybrid retrieval, persistence.

Names are imported lazily so `import index` stays cheap (no model, no FAISS) until used.
"""

from importlib import import_module

_EXPORTS = {
    "Embedder": "index.embedding",
    "get_embedder": "index.embedding",
    "LlamaIndexEmbedding": "index.llama_view",
    "CorpusIndex": "index.corpus",
    "Hit": "index.hybrid",
    "Fusion": "index.hybrid",
    "IndexError_": "index.errors",
    "build_index": "index.build",
    "open_index": "index.build",
    "load_or_build": "index.build",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'index' has no attribute {name!r}")
