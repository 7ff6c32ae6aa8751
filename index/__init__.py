"""ClusterQA index."""

from index.embedding import Embedder, LlamaIndexEmbedding, get_embedder  # noqa: E402,F401
