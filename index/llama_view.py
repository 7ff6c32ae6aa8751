"""llama-index's view of an Embedder (imported only where llama-index embeds passages: its
import costs 1.4 s, which a server answering from a prebuilt index does not pay)."""

from __future__ import annotations

from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import PrivateAttr

from .embedding import Embedder


class LlamaIndexEmbedding(BaseEmbedding):
    """llama-index view of an Embedder: queries get the query prompt, texts the passage one.

    Pass it explicitly (e.g. VectorStoreIndex(..., embed_model=...)); nothing global is set.
    """

    _embedder: Embedder = PrivateAttr()

    def __init__(self, embedder: Embedder, **kwargs: Any):
        kwargs.setdefault("model_name", embedder.model_id)
        kwargs.setdefault("embed_batch_size", embedder.batch_size)
        super().__init__(**kwargs)
        self._embedder = embedder

    @classmethod
    def class_name(cls) -> str:
        return "ClusterQAEmbedding"

    @property
    def embedder(self) -> Embedder:
        return self._embedder

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embedder.encode_queries([query])[0].tolist()

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embedder.encode_passages([text])[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._embedder.encode_passages(texts).tolist()

    # The model runs on local CPU threads; there is nothing to await.
    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embedding(text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._get_text_embeddings(texts)
