"""CorpusIndex: documents, chunks, dense + BM25 indexes, hybrid retrieval, persistence.

State is an immutable snapshot swapped under a lock: retrieve() reads `self._state`
once and never sees a half-applied add/remove, so the server can query while an
upload is being indexed.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ingest.records import Chunk, Document

from . import store
from .dense import DenseIndex
from .errors import IndexError_
from .hybrid import MODES, Candidates, Fusion, Hit
from .keyword import KeywordIndex
from .text import DENSE_TEXT_VERSION, TOKENIZER_VERSION, chunk_tokens, query_language, titled_text, tokenize

log = logging.getLogger("clusterqa.index")

EMBED_BATCH = 64  # passages per progress step; the model batches internally as well


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _report(progress, stage: str, done: int, total: int) -> None:
    if progress is not None:
        progress(stage, done, total)


@dataclass(frozen=True)
class _State:
    documents: dict  # doc_id -> Document, in insertion order
    chunks: list  # row -> Chunk
    labels: np.ndarray  # row -> FAISS label (int64)
    tokens: list  # row -> BM25 tokens
    dense: DenseIndex
    keyword: KeywordIndex
    files: dict  # source file key -> sha256 (drives load_or_build's change detection)
    next_label: int
    row_of_label: dict = field(default_factory=dict)

    @classmethod
    def make(cls, documents, chunks, labels, tokens, dense, files, next_label, keyword=None) -> "_State":
        labels = np.asarray(labels, dtype=np.int64)
        return cls(
            documents=documents,
            chunks=chunks,
            labels=labels,
            tokens=tokens,
            dense=dense,
            keyword=KeywordIndex(tokens) if keyword is None else keyword,
            files=files,
            next_label=next_label,
            row_of_label={int(l): r for r, l in enumerate(labels)},
        )


class CorpusIndex:
    def __init__(self, settings, embedder, state: _State, index_dir: Path | None, manifest: dict,
                 fusion: Fusion | None = None):
        self.settings = settings
        self.embedder = embedder
        self.index_dir = Path(index_dir) if index_dir else None
        self.fusion = fusion or default_fusion(settings)
        self._state = state
        self._manifest = manifest
        self._lock = threading.Lock()

    # --- construction -----------------------------------------------------------------
    @classmethod
    def from_documents(cls, documents: list[Document], chunks: list[Chunk], settings, embedder=None,
                       files: dict | None = None, progress=None) -> "CorpusIndex":
        """An in-memory index of these documents and their chunks (call save() to persist)."""
        embedder = embedder or _get_embedder(settings)
        vectors = embed_passages(embedder, [titled_text(c) for c in chunks], progress)
        tokens = tokenize_chunks(chunks, progress)
        labels = np.arange(len(chunks), dtype=np.int64)
        dense = DenseIndex(embedder.dim, settings.ann_threshold)
        dense.add(labels, vectors)
        state = _State.make({d.doc_id: d for d in documents}, list(chunks), labels, tokens, dense,
                            dict(files or {}), len(chunks))
        manifest = new_manifest(settings, embedder)
        return cls(settings, embedder, state, None, manifest)

    # --- retrieval --------------------------------------------------------------------
    def retrieve(self, query: str, top_k: int = 5, mode: str = "hybrid") -> list[Hit]:
        return self.retrieve_many([query], top_k, mode)[0]

    def retrieve_many(self, queries: list[str], top_k: int = 5, mode: str = "hybrid") -> list[list[Hit]]:
        if mode not in MODES:
            raise ValueError(f"unknown retrieval mode {mode!r} (one of {', '.join(MODES)})")
        state = self._state  # one snapshot for the whole batch
        if not queries:
            return []
        if not state.chunks or top_k <= 0:
            return [[] for _ in queries]
        if mode == "dense":
            return [
                [Hit(state.chunks[r], s, rank, None, s, None) for rank, (r, s) in enumerate(dl, 1)]
                for dl in self._dense_lists(state, self._embed_queries(queries), top_k)
            ]
        if mode == "bm25":
            out = []
            for query in queries:
                rows, scores, _ = state.keyword.search(tokenize(query), top_k)
                out.append([Hit(state.chunks[int(r)], float(s), None, rank, None, float(s))
                            for rank, (r, s) in enumerate(zip(rows, scores), 1)])
            return out
        out = []
        for c in self._candidates(state, queries, max(top_k, self.fusion.depth)):
            out.append([
                Hit(state.chunks[int(c.rows[j])], score, int(c.dense_ranks[j]) or None,
                    int(c.bm25_ranks[j]) or None, float(c.dense_scores[j]), float(c.bm25_scores[j]))
                for j, score in self.fusion.rank(c, top_k)
            ])
        return out

    def candidates(self, queries: list[str], depth: int | None = None) -> list[Candidates]:
        """The hybrid candidate pools of these queries (benchmarks tune Fusion on these)."""
        return self._candidates(self._state, queries, depth or self.fusion.depth)

    def _embed_queries(self, queries: list[str]) -> np.ndarray:
        return self.embedder.encode_queries([_normalize_query(q) for q in queries])

    @staticmethod
    def _dense_lists(state: _State, qvecs: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        scores, labels = state.dense.search(qvecs, k)
        return [
            [(state.row_of_label[int(l)], float(s)) for s, l in zip(srow, lrow) if l >= 0]
            for srow, lrow in zip(scores, labels)
        ]

    def _candidates(self, state: _State, queries: list[str], depth: int, qvecs=None) -> list[Candidates]:
        qvecs = self._embed_queries(queries) if qvecs is None else qvecs
        pools = []
        for query, qvec, dense_list in zip(queries, qvecs, self._dense_lists(state, qvecs, depth)):
            bm25_rows, _, all_bm25 = state.keyword.search(tokenize(query), depth)
            pools.append(candidate_pool(state, qvec, dense_list, bm25_rows, all_bm25, query_language(query)))
        return pools

    # --- documents --------------------------------------------------------------------
    def documents(self) -> list[Document]:
        return list(self._state.documents.values())

    def get_document(self, doc_id: str) -> Document | None:
        return self._state.documents.get(doc_id)

    def chunks_of(self, doc_id: str) -> list[Chunk]:
        return [c for c in self._state.chunks if c.doc_id == doc_id]

    @property
    def manifest(self) -> dict:
        return dict(self._manifest)

    def stats(self) -> dict:
        state, m = self._state, self._manifest
        return {
            "documents": len(state.documents),
            "chunks": len(state.chunks),
            "model": self.embedder.model_id,
            "dim": self.embedder.dim,
            "index_type": state.dense.index_type,
            "fusion": self.fusion.method,
            "tokenizer": TOKENIZER_VERSION,
            "created": m.get("created"),
            "updated": m.get("updated"),
            "index_dir": str(self.index_dir) if self.index_dir else None,
            "files": len(state.files),
        }

    # --- incremental updates ----------------------------------------------------------
    def add_paths(self, paths, progress=None) -> dict:
        """Index new files and re-index changed ones (by content hash); unchanged files cost nothing."""
        paths = [Path(p) for p in paths]
        result = ingest_files(paths, self.settings, progress)
        with self._lock:
            state = self._state
            added, updated, unchanged, new_docs = [], [], [], []
            for doc in result.documents:
                old = state.documents.get(doc.doc_id)
                if old is None:
                    added.append(doc.doc_id)
                elif old.content_hash != doc.content_hash or not doc.content_hash:
                    updated.append(doc.doc_id)
                else:
                    unchanged.append(doc.doc_id)
                    continue
                new_docs.append(doc)
            new_ids = {d.doc_id for d in new_docs}
            new_chunks = [c for c in result.chunks if c.doc_id in new_ids]
            files = dict(state.files)
            files.update(scan_files(paths, self.settings.corpus_dir))
            new_state = self._replace(state, remove_ids=set(updated), add_docs=new_docs,
                                      add_chunks=new_chunks, files=files, progress=progress)
            self._commit(new_state)
        return {"added": added, "updated": updated, "unchanged": unchanged,
                "skipped": [list(s) for s in result.skipped], "chunks_embedded": len(new_chunks),
                "documents": len(new_state.documents), "chunks": len(new_state.chunks)}

    def remove(self, doc_ids_or_paths) -> int:
        """Remove documents given by doc_id or by file/directory path; returns how many."""
        with self._lock:
            state = self._state
            targets, keys = set(), set()
            for item in doc_ids_or_paths:
                targets |= self._match_documents(state, str(item))
                keys |= {str(item), _file_key(Path(item), Path(self.settings.corpus_dir).resolve())}
            keys |= targets | {_doc_file_key(state.documents[t], self.settings.corpus_dir) for t in targets}
            files = {k: v for k, v in state.files.items() if k not in keys}
            if not targets and files == state.files:
                return 0
            self._commit(self._replace(state, remove_ids=targets, files=files))
            return len(targets)

    def _match_documents(self, state: _State, item: str) -> set:
        if item in state.documents:
            return {item}
        path = Path(item).expanduser()
        candidates = {path.resolve().as_posix()}
        try:
            candidates.add(path.resolve().relative_to(Path(self.settings.corpus_dir).resolve()).as_posix())
        except ValueError:
            pass
        found = set()
        for doc_id, doc in state.documents.items():
            keys = {doc_id, Path(doc.path).resolve().as_posix() if doc.path else ""}
            for c in candidates:
                if c in keys or any(k.startswith(c.rstrip("/") + "/") for k in keys if k):
                    found.add(doc_id)
        return found

    def _replace(self, state: _State, remove_ids=frozenset(), add_docs=(), add_chunks=(), files=None,
                 progress=None) -> _State:
        """A new state: `remove_ids` documents dropped, `add_docs`/`add_chunks` embedded and added."""
        keep = [r for r, c in enumerate(state.chunks) if c.doc_id not in remove_ids]
        dropped = [int(state.labels[r]) for r, c in enumerate(state.chunks) if c.doc_id in remove_ids]
        vectors = embed_passages(self.embedder, [titled_text(c) for c in add_chunks], progress)
        tokens = tokenize_chunks(list(add_chunks), progress)
        new_labels = np.arange(state.next_label, state.next_label + len(add_chunks), dtype=np.int64)
        dense = state.dense.copy()  # copy-on-write: readers keep using the old one
        dense.remove(dropped)
        dense.add(new_labels, vectors)
        documents = {k: v for k, v in state.documents.items() if k not in remove_ids}
        documents.update({d.doc_id: d for d in add_docs})
        return _State.make(
            documents,
            [state.chunks[r] for r in keep] + list(add_chunks),
            np.concatenate([state.labels[keep], new_labels]),
            [state.tokens[r] for r in keep] + tokens,
            dense,
            state.files if files is None else files,
            state.next_label + len(add_chunks),
            keyword=state.keyword.updated(keep, tokens),  # counts only the new chunks' tokens
        )

    def _commit(self, new_state: _State) -> None:
        manifest = dict(self._manifest, updated=_now())
        if self.index_dir is not None:
            manifest = save_state(self.index_dir, new_state, manifest)
        self._state, self._manifest = new_state, manifest

    # --- persistence ------------------------------------------------------------------
    def save(self, index_dir: Path | None = None) -> Path:
        """Write the whole index atomically to `index_dir` (default: where it lives)."""
        with self._lock:
            target = Path(index_dir or self.index_dir or self.settings.index_dir)
            self._manifest = save_state(target, self._state, self._manifest)
            self.index_dir = target
            return target


# --- helpers used by construction, updates and loading ---------------------------------

def candidate_pool(state: _State, qvec, dense_list, bm25_rows, all_bm25, query_language: str = "") -> Candidates:
    """Union of both top lists, with both scores computed exactly for every candidate
    (a chunk missing from one list still gets its real score there, not a guess)."""
    dense_rank = {r: n for n, (r, _) in enumerate(dense_list, 1)}
    dense_score = dict(dense_list)
    bm25_rank = {int(r): n for n, r in enumerate(bm25_rows, 1)}
    rows = list(dict.fromkeys([r for r, _ in dense_list] + list(bm25_rank)))
    missing = [r for r in rows if r not in dense_score]
    if missing:
        vecs = state.dense.vectors(state.labels[missing])
        dense_score.update(zip(missing, (vecs @ qvec).tolist()))
    rows_arr = np.asarray(rows, dtype=np.int64)
    cross = (np.array([state.chunks[r].language != query_language for r in rows], dtype=bool)
             if query_language else None)
    return Candidates(
        rows=rows_arr,
        dense_scores=np.array([dense_score[r] for r in rows], dtype=np.float64),
        bm25_scores=all_bm25[rows_arr].astype(np.float64),
        dense_ranks=np.array([dense_rank.get(r, 0) for r in rows], dtype=np.int64),
        bm25_ranks=np.array([bm25_rank.get(r, 0) for r in rows], dtype=np.int64),
        cross_language=cross,
    )


def ingest_files(paths, settings, progress=None):
    """ingest's read/chunk of `paths`; files under settings.corpus_dir keep corpus-relative
    doc_ids however they are passed (ingest re-roots them), which makes update-by-path work."""
    from ingest import ingest_paths

    return ingest_paths([Path(p) for p in paths], settings, progress=progress or False)


def default_fusion(settings) -> Fusion:
    from .fitted import load_fitted

    fitted = load_fitted().fusion
    return Fusion(method=getattr(settings, "fusion", "weighted") or "weighted",
                  dense_weight=fitted.dense_weight, cross_weight=fitted.cross_weight)


def _normalize_query(query: str) -> str:
    from ingest.script import to_simplified

    return to_simplified(query.strip())


def _get_embedder(settings):
    from .embedding import get_embedder

    return get_embedder(settings)


def _configure_llama_index(embedder):
    """Point llama-index at our model and never let it fall back to its OpenAI defaults."""
    from llama_index.core import Settings as LlamaSettings

    from .embedding import LlamaIndexEmbedding

    current = LlamaSettings._embed_model  # the private slot: the public getter would resolve a default
    if not (isinstance(current, LlamaIndexEmbedding) and current.embedder is embedder):
        LlamaSettings.embed_model = LlamaIndexEmbedding(embedder)
    if LlamaSettings._llm is None:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints a notice; keep stdout clean for --json
            LlamaSettings.llm = None  # MockLLM: the index never generates text
    return LlamaSettings.embed_model


def embed_passages(embedder, texts: list[str], progress=None) -> np.ndarray:
    """Passage vectors through llama-index's embedding interface (passage prompt applied there)."""
    embed_model = _configure_llama_index(embedder)
    out = np.empty((len(texts), embedder.dim), dtype=np.float32)
    # Batches of similar length: a batch is padded to its longest text, and in corpus order
    # short and long chunks mix (sorting made the build 20-25 % faster on CMRC chunks).
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    _report(progress, "embed", 0, len(texts))
    for i in range(0, len(texts), EMBED_BATCH):
        rows = order[i : i + EMBED_BATCH]
        out[rows] = embed_model.get_text_embedding_batch([texts[r] for r in rows])
        _report(progress, "embed", min(i + EMBED_BATCH, len(texts)), len(texts))
    return out


def tokenize_chunks(chunks: list[Chunk], progress=None) -> list[list[str]]:
    tokens = []
    _report(progress, "tokenize", 0, len(chunks))
    for n, c in enumerate(chunks, 1):
        tokens.append(chunk_tokens(c))
        if n % 500 == 0 or n == len(chunks):
            _report(progress, "tokenize", n, len(chunks))
    return tokens


def new_manifest(settings, embedder) -> dict:
    now = _now()
    return {
        "format_version": store.FORMAT_VERSION,
        "created": now,
        "updated": now,
        "model": {"id": embedder.model_id, "dim": embedder.dim, "setting": settings.embed_model},
        "chunking": {"chunk_size": settings.chunk_size, "chunk_overlap": settings.chunk_overlap},
        "tokenizer": TOKENIZER_VERSION,
        "dense_text": DENSE_TEXT_VERSION,
        "corpus_root": Path(settings.corpus_dir).resolve().as_posix(),
    }


def config_mismatches(manifest: dict, settings, embedder) -> list[str]:
    """Human-readable differences between how the index was built and the current config.

    (The tokenizer is not among them: BM25 tokens are re-derived from the stored chunks
    on load when it changed, see load_state -- no re-embedding needed.)"""
    wanted = {
        "model": (embedder.model_id, manifest.get("model", {}).get("id")),
        "dimension": (embedder.dim, manifest.get("model", {}).get("dim")),
        "chunk_size": (settings.chunk_size, manifest.get("chunking", {}).get("chunk_size")),
        "chunk_overlap": (settings.chunk_overlap, manifest.get("chunking", {}).get("chunk_overlap")),
        "dense_text": (DENSE_TEXT_VERSION, manifest.get("dense_text")),
    }
    return [f"{k}: index has {have!r}, configuration wants {want!r}"
            for k, (want, have) in wanted.items() if want != have]


def save_state(index_dir: Path, state: _State, manifest: dict) -> dict:
    manifest = dict(
        manifest,
        counts={"documents": len(state.documents), "chunks": len(state.chunks)},
        files=dict(sorted(state.files.items())),
        next_label=state.next_label,
        dense={"index_type": state.dense.index_type, "metric": "inner_product", "labels": "int64 per chunk"},
    )

    def write_files(d: Path) -> None:
        store.write_jsonl(d / "documents.jsonl", (doc.to_dict() for doc in state.documents.values()))
        store.write_jsonl(d / "chunks.jsonl", (
            {"label": int(l), "tokens": t, "chunk": c.to_dict()}
            for c, l, t in zip(state.chunks, state.labels, state.tokens)
        ))
        state.dense.save(d / "dense.faiss")

    store.write_version(Path(index_dir), write_files, manifest)
    return manifest


def load_state(version: Path, manifest: dict, settings, embedder) -> _State:
    docs_path = store.verify_data_file(version, "documents.jsonl", manifest)
    chunks_path = store.verify_data_file(version, "chunks.jsonl", manifest)
    faiss_path = store.verify_data_file(version, "dense.faiss", manifest)
    try:
        documents = {}
        for row in store.read_jsonl(docs_path):
            doc = Document.from_dict(row)
            documents[doc.doc_id] = doc
    except TypeError as exc:
        raise IndexError_(f"index file {docs_path} has unexpected records: {exc}", str(docs_path)) from None
    rows = store.read_jsonl(chunks_path)
    try:
        chunks = [Chunk.from_dict(r["chunk"]) for r in rows]
        labels = [int(r["label"]) for r in rows]
        tokens = [list(r["tokens"]) for r in rows]
    except (KeyError, TypeError, ValueError) as exc:
        raise IndexError_(f"index file {chunks_path} has unexpected records: {exc}", str(chunks_path)) from None
    try:
        dense = DenseIndex.load(faiss_path, embedder.dim, settings.ann_threshold)
    except (RuntimeError, ValueError) as exc:
        raise IndexError_(f"index file {faiss_path} cannot be read: {str(exc).splitlines()[0]}",
                          str(faiss_path)) from None
    if dense.size != len(chunks) or set(dense.labels().tolist()) != set(labels):
        raise IndexError_(f"index file {faiss_path} does not match {chunks_path} "
                          f"({dense.size} vectors, {len(chunks)} chunks)", str(faiss_path))
    if manifest.get("tokenizer") != TOKENIZER_VERSION:
        log.warning("index in %s has BM25 tokens from %s; re-tokenising %d chunks with %s",
                    version.parent, manifest.get("tokenizer"), len(chunks), TOKENIZER_VERSION)
        tokens = tokenize_chunks(chunks)
        manifest["tokenizer"] = TOKENIZER_VERSION
    return _State.make(documents, chunks, labels, tokens, dense, dict(manifest.get("files", {})),
                       int(manifest.get("next_label", len(chunks))))


def scan_files(paths, corpus_root) -> dict:
    """Source file key -> sha256 for every (non-hidden) file under `paths`.

    Keys are posix paths relative to the corpus root when inside it, absolute otherwise,
    so they line up with doc_ids and with a later scan of the corpus directory.
    """
    root = Path(corpus_root).resolve()
    out = {}
    for p in paths:
        p = Path(p)
        files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else []
        for f in files:
            rel = f.relative_to(p) if p.is_dir() else Path(f.name)
            if any(part.startswith(".") for part in rel.parts):
                continue
            out[_file_key(f, root)] = store.sha256_file(f)
    return out


def _file_key(path: Path, root: Path) -> str:
    path = path.resolve()
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _doc_file_key(doc: Document, corpus_root) -> str:
    return _file_key(Path(doc.path), Path(corpus_root).resolve()) if doc.path else doc.doc_id
