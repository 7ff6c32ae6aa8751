"""CorpusIndex: documents, chunks, dense + BM25 indexes, hybrid retrieval, persistence.

The store (index/stores.py) is swapped under a lock: retrieve() reads `self.store` once.
The FAISS store is an immutable snapshot, so a reader never sees a half-applied
add/remove and the server can query while an upload is being indexed; the Qdrant store
writes to the engine and waits for it (a rebuild goes to a new collection + alias switch).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import logging
import os
import threading
from pathlib import Path

import numpy as np

from ingest.records import Chunk, Document

from . import store
from .dense import DenseIndex
from .errors import IndexError_, StoreUnavailable
from .hybrid import MODES, Candidates, Fusion, Hit
from .stores import Change, FaissStore, Pool, Where
from .text import DENSE_TEXT_VERSION, TOKENIZER_VERSION, chunk_tokens, query_language, titled_text, tokenize

log = logging.getLogger("clusterqa.index")

EMBED_BATCH = 64  # passages per progress step; the model batches internally as well


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _report(progress, stage: str, done: int, total: int) -> None:
    if progress is not None:
        progress(stage, done, total)


class RetrievalResult(list):
    """The hits of one query (a list of Hit, best first) and the query vector they came from.

    Callers that need the question's E5 vector again (chat's sentence scoring) take
    `.query_vector` instead of embedding a second time, and may pass it back in as
    `retrieve(..., query_vector=...)`. None in "bm25" mode when no vector was given."""

    def __init__(self, hits=(), query_vector: np.ndarray | None = None):
        super().__init__(hits)
        self.query_vector = query_vector


class CorpusIndex:
    """Embedding, tokenisation and fusion over a ChunkStore (index/stores.py): the FAISS +
    BM25 snapshot by default, or a Qdrant collection. It uses nothing but that interface."""

    def __init__(self, settings, embedder, store, index_dir: Path | None, manifest: dict,
                 fusion: Fusion | None = None):
        self.settings = settings
        self.embedder = embedder
        self.index_dir = Path(index_dir) if index_dir else None
        self.fusion = fusion or default_fusion(settings)
        self.store = store
        self._manifest = manifest
        self._lock = threading.Lock()

    @property
    def backend(self) -> str:
        return self.store.backend

    # --- construction -----------------------------------------------------------------
    @classmethod
    def from_documents(cls, documents: list[Document], chunks: list[Chunk], settings, embedder=None,
                       files: dict | None = None, progress=None) -> "CorpusIndex":
        """An in-memory (FAISS) index of these documents and their chunks (call save() to persist)."""
        if embedder is None:
            from .embedding import get_embedder

            embedder = get_embedder(settings)
        vectors = embed_passages(embedder, [titled_text(c) for c in chunks], progress)
        tokens = tokenize_chunks(chunks, progress)
        store = FaissStore.build(documents, chunks, tokens, vectors, files, embedder.dim, settings.ann_threshold,
                                 getattr(settings, "dense_compress_threshold", None))
        return cls(settings, embedder, store, None, new_manifest(settings, embedder))

    # --- query vectors ----------------------------------------------------------------
    def embed_query(self, query: str) -> np.ndarray:
        """The (dim,) float32 L2-normalised vector retrieval uses for this question."""
        return self.embed_queries([query])[0]

    def embed_queries(self, queries: list[str]) -> np.ndarray:
        if not queries:
            return np.empty((0, self.embedder.dim), dtype=np.float32)
        return np.asarray(self.embedder.encode_queries([query_text(q) for q in queries]), dtype=np.float32)

    # --- retrieval --------------------------------------------------------------------
    def retrieve(self, query: str, top_k: int = 5, mode: str = "hybrid", query_vector=None,
                 where: Where | None = None) -> RetrievalResult:
        """Hits for one query; `query_vector` (from embed_query or an earlier result) skips
        the embedding. Raises StoreUnavailable when the engine does not answer."""
        qvecs = None if query_vector is None else np.asarray(query_vector, dtype=np.float32)[None]
        return self.retrieve_many([query], top_k, mode, query_vectors=qvecs, where=where)[0]

    def retrieve_many(self, queries: list[str], top_k: int = 5, mode: str = "hybrid", query_vectors=None,
                      where: Where | None = None) -> list[RetrievalResult]:
        if mode not in MODES:
            raise ValueError(f"unknown retrieval mode {mode!r} (one of {', '.join(MODES)})")
        store = self.store  # one snapshot for the whole batch
        if not queries:
            return []
        qvecs = None if query_vectors is None else np.asarray(query_vectors, dtype=np.float32)
        if top_k <= 0:
            return [RetrievalResult([], None if qvecs is None else qvecs[i]) for i in range(len(queries))]
        if mode == "bm25":
            return [
                RetrievalResult([Hit(c, s, None, rank, None, s)
                                 for rank, (c, s) in enumerate(store.keyword_search(tokenize(q), top_k, where), 1)],
                                None if qvecs is None else qvecs[i])
                for i, q in enumerate(queries)
            ]
        if qvecs is None:
            qvecs = self.embed_queries(queries)
        if mode == "dense":
            return [
                RetrievalResult([Hit(c, s, rank, None, s, None) for rank, (c, s) in enumerate(dl, 1)], qv)
                for dl, qv in zip(store.dense_search(qvecs, top_k, where), qvecs)
            ]
        out = []
        for query, qvec in zip(queries, qvecs):
            pool = store.candidates(qvec, tokenize(query), max(top_k, self.fusion.depth), where)
            if not len(pool.labels):
                out.append(RetrievalResult([], qvec))
                continue
            c = candidate_pool(pool, query_language(query))
            out.append(RetrievalResult([
                Hit(pool.chunks[j], score, int(c.dense_ranks[j]) or None, int(c.bm25_ranks[j]) or None,
                    float(c.dense_scores[j]), float(c.bm25_scores[j]))
                for j, score in self.fusion.rank(c, top_k)
            ], qvec))
        return out

    def candidates(self, queries: list[str], depth: int | None = None, query_vectors=None,
                   where: Where | None = None) -> list[tuple[Candidates, list[Chunk]]]:
        """The hybrid candidate pools of these queries, before fusion (benchmarks tune Fusion
        on these): (Candidates, chunks) with Candidates.rows indexing that chunk list."""
        store, depth = self.store, depth or self.fusion.depth
        qvecs = self.embed_queries(queries) if query_vectors is None else np.asarray(query_vectors, np.float32)
        out = []
        for query, qvec in zip(queries, qvecs):
            pool = store.candidates(qvec, tokenize(query), depth, where)
            out.append((candidate_pool(pool, query_language(query)), pool.chunks))
        return out

    def dense_search(self, query_vectors, k: int, where: Where | None = None) -> list[list[tuple[Chunk, float]]]:
        """[(chunk, cosine)] best first per query vector: the dense side alone."""
        return self.store.dense_search(np.asarray(query_vectors, dtype=np.float32), k, where)

    # --- engine health ----------------------------------------------------------------
    def ping(self) -> None:
        """Raises StoreUnavailable when the vector engine does not answer (no-op in process)."""
        self.store.ping()

    def health(self) -> dict:
        """{"backend", "ok", "error"}: for the server's /api/health ("degraded" when not ok)."""
        try:
            self.store.ping()
        except StoreUnavailable as exc:
            return {"backend": self.backend, "ok": False, "error": str(exc)}
        return {"backend": self.backend, "ok": True, "error": None}

    # --- documents --------------------------------------------------------------------
    def documents(self) -> list[Document]:
        return self.store.documents()

    def get_document(self, doc_id: str) -> Document | None:
        return self.store.get_document(doc_id)

    def chunks_of(self, doc_id: str) -> list[Chunk]:
        return self.store.chunks_of(doc_id)

    @property
    def manifest(self) -> dict:
        return dict(self._manifest)

    def stats(self) -> dict:
        store, m = self.store, self._manifest
        files = store.files()
        return {
            "documents": store.count_documents(),
            "chunks": store.count(),
            "model": self.embedder.model_id,
            "dim": self.embedder.dim,
            **store.describe(),
            "fusion": self.fusion.method,
            "tokenizer": TOKENIZER_VERSION,
            "created": m.get("created"),
            "updated": m.get("updated"),
            "index_dir": str(self.index_dir) if self.index_dir else None,
            "files": len(files),
        }

    # --- incremental updates ----------------------------------------------------------
    def add_paths(self, paths, progress=None) -> dict:
        """Index new files and re-index changed ones (by content hash); unchanged files cost nothing."""
        paths = [Path(p) for p in paths]
        result = ingest_files(paths, self.settings, progress)
        with self._lock:
            store = self.store
            added, updated, unchanged, new_docs = [], [], [], []
            for doc in result.documents:
                old = store.get_document(doc.doc_id)
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
            files = store.files()
            files.update(scan_files(paths, self.settings.corpus_dir))
            vectors = embed_passages(self.embedder, [titled_text(c) for c in new_chunks], progress)
            tokens = tokenize_chunks(new_chunks, progress)
            self._commit(Change(remove_doc_ids=set(updated), add_docs=new_docs, add_chunks=new_chunks,
                                tokens=tokens, vectors=vectors, files=files))
            store = self.store
        return {"added": added, "updated": updated, "unchanged": unchanged,
                "skipped": [list(s) for s in result.skipped], "chunks_embedded": len(new_chunks),
                "documents": store.count_documents(), "chunks": store.count()}

    def remove(self, doc_ids_or_paths) -> int:
        """Remove documents given by doc_id or by file/directory path; returns how many."""
        with self._lock:
            store = self.store
            documents = {d.doc_id: d for d in store.documents()}
            old_files = store.files()
            targets, keys = set(), set()
            for item in doc_ids_or_paths:
                targets |= self._match_documents(documents, str(item))
                keys |= {str(item), _file_key(Path(item), Path(self.settings.corpus_dir).resolve())}
            keys |= targets | {_doc_file_key(documents[t], self.settings.corpus_dir) for t in targets}
            files = {k: v for k, v in old_files.items() if k not in keys}
            if not targets and files == old_files:
                return 0
            self._commit(Change(remove_doc_ids=targets, files=files))
            return len(targets)

    def _match_documents(self, documents: dict, item: str) -> set:
        if item in documents:
            return {item}
        path = Path(item).expanduser()
        candidates = {path.resolve().as_posix()}
        try:
            candidates.add(path.resolve().relative_to(Path(self.settings.corpus_dir).resolve()).as_posix())
        except ValueError:
            pass
        found = set()
        for doc_id, doc in documents.items():
            keys = {doc_id, Path(doc.path).resolve().as_posix() if doc.path else ""}
            for c in candidates:
                if c in keys or any(k.startswith(c.rstrip("/") + "/") for k in keys if k):
                    found.add(doc_id)
        return found

    def _commit(self, change: Change) -> None:
        """Apply the change (Qdrant: written and waited for), persist, then swap the store."""
        manifest = dict(self._manifest, updated=_now())
        new_store, manifest = self.store.apply(change, manifest)
        if self.index_dir is not None or new_store.backend != "faiss":
            manifest = new_store.save(self.index_dir, manifest)
        self.store, self._manifest = new_store, manifest

    # --- persistence ------------------------------------------------------------------
    def save(self, index_dir: Path | None = None) -> Path:
        """Write the whole index atomically to `index_dir` (default: where it lives)."""
        with self._lock:
            target = Path(index_dir or self.index_dir or self.settings.index_dir)
            self._manifest = self.store.save(target, self._manifest)
            self.index_dir = target
            return target


# --- helpers used by construction, updates and loading ---------------------------------

def candidate_pool(pool: Pool, query_language: str = "") -> Candidates:
    """A store's raw pool as the Candidates Fusion ranks (rows index pool.chunks).

    Both top lists' union, with both scores computed exactly for every candidate (a chunk
    missing from one list still gets its real score there, not a guess); candidates in the
    other language than the query are marked, so fusion scores them by dense alone."""
    cross = (np.array([c.language != query_language for c in pool.chunks], dtype=bool)
             if query_language else None)
    return Candidates(
        rows=np.arange(len(pool.chunks), dtype=np.int64),
        dense_scores=pool.dense_scores,
        bm25_scores=pool.bm25_scores,
        dense_ranks=pool.dense_ranks,
        bm25_ranks=pool.bm25_ranks,
        cross_language=cross,
    )


def ingest_files(paths, settings, progress=None):
    """ingest's read/chunk of `paths`; files under settings.corpus_dir keep corpus-relative
    doc_ids however they are passed (ingest re-roots them), which makes update-by-path work."""
    from ingest import ingest_paths

    return ingest_paths([Path(p) for p in paths], settings, progress=progress or False)


def default_fusion(settings) -> Fusion:
    """The fitted fusion; refused (FittedMismatchError) when it was fitted for another embedding
    model, tokenizer or BM25 parameters than these."""
    from .fitted import check_embedding, load_fitted

    fitted = load_fitted()
    check_embedding(fitted, settings)
    return Fusion(method=getattr(settings, "fusion", "weighted") or "weighted",
                  dense_weight=fitted.fusion.dense_weight, cross_weight=fitted.fusion.cross_weight)


def query_text(query: str) -> str:
    """The text the model embeds for a question: Simplified script, stripped."""
    from ingest.script import to_simplified

    return to_simplified(query.strip())


_llama_view = None  # llama-index's view of the embedder last configured


def configure_llama_index(embedder):
    """llama-index's view of our model (what embed_passages embeds through); llama-index's
    global Settings point at it and at MockLLM, so nothing in llama-index ever falls back to
    its OpenAI defaults. Set again only when the embedder changes."""
    global _llama_view
    if _llama_view is None or _llama_view.embedder is not embedder:
        from llama_index.core import Settings as LlamaSettings

        from .llama_view import LlamaIndexEmbedding

        _llama_view = LlamaIndexEmbedding(embedder)
        LlamaSettings.embed_model = _llama_view
        with contextlib.redirect_stdout(io.StringIO()):  # it prints a notice; keep stdout clean for --json
            LlamaSettings.llm = None  # MockLLM: the index never generates text
    return _llama_view


def embed_passages(embedder, texts: list[str], progress=None) -> np.ndarray:
    """Passage vectors through llama-index's embedding interface (passage prompt applied there)."""
    embed_model = configure_llama_index(embedder)
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


def load_state(version: Path, manifest: dict, settings, embedder) -> FaissStore:
    return FaissStore.load(version, manifest, settings, embedder)


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
