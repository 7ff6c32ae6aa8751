"""The store interface between CorpusIndex and where its vectors and postings live.

`CorpusIndex` (index/corpus.py) embeds, tokenises and fuses; a `ChunkStore` keeps the
documents, chunks, dense vectors and BM25 postings and answers searches over them.
Two implementations:

- `FaissStore` (this module, the default): FAISS + ClusterQA's BM25 matrix in process, an
  immutable snapshot persisted as a versioned directory (index/store.py). A write returns a
  new snapshot; readers of the old one are undisturbed.
- `QdrantStore` (index/qdrant_store.py): a Qdrant collection (local mode, a server or a
  cluster) holding dense vectors and sparse BM25 vectors with Qdrant's IDF modifier.
  A write waits for the engine; a rebuild goes to a new collection and switches an alias.

Fusion stays in ClusterQA's code (index/hybrid.py): a store returns both top lists and
the exact scores of every candidate on both sides (`candidates()` -> `Pool`), and
corpus.candidate_pool turns that into the `Candidates` that `Fusion` ranks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ingest.records import Chunk, Document

from . import store as layout
from .dense import DenseIndex
from .errors import IndexError_
from .keyword import KeywordIndex
from .text import TOKENIZER_VERSION, chunk_tokens

log = logging.getLogger("clusterqa.index")


@dataclass(frozen=True)
class Where:
    """A metadata filter: every given field must match (None = any). Dates are ISO strings
    or prefixes of one ("2025", "2025-10"), inclusive: date_to "2025" keeps all of 2025;
    a chunk without a date never matches a date bound."""

    doc_ids: tuple | None = None
    languages: tuple | None = None
    date_from: str | None = None
    date_to: str | None = None

    def __post_init__(self):
        for name in ("doc_ids", "languages"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, (value,))
            elif value is not None:
                object.__setattr__(self, name, tuple(value))

    @property
    def empty(self) -> bool:
        return self.doc_ids is None and self.languages is None and not self.date_from and not self.date_to

    def matches(self, chunk: Chunk) -> bool:
        if self.doc_ids is not None and chunk.doc_id not in self.doc_ids:
            return False
        if self.languages is not None and chunk.language not in self.languages:
            return False
        if self.date_from and not (chunk.date and chunk.date[:len(self.date_from)] >= self.date_from):
            return False
        if self.date_to and not (chunk.date and chunk.date[:len(self.date_to)] <= self.date_to):
            return False
        return True


@dataclass
class Pool:
    """One query's raw candidate pool: the union of the dense and BM25 top lists (dense
    list first, then BM25's new ones), with both exact scores for every candidate."""

    labels: np.ndarray  # int64 chunk labels
    chunks: list  # Chunk per candidate
    dense_scores: np.ndarray  # cosine
    bm25_scores: np.ndarray  # BM25 (0 = no shared token)
    dense_ranks: np.ndarray  # 1-based rank in the dense top list, 0 = not in it
    bm25_ranks: np.ndarray


def assemble_pool(dense_list, bm25_list, dense_of_missing, bm25_of, chunk_of) -> Pool:
    """The union in the one order both backends use: dense top list, then BM25's new ones.

    dense_list/bm25_list: [(label, score)] best first; dense_of_missing(labels) -> cosines of
    the labels absent from the dense list; bm25_of(labels) -> BM25 scores of all candidates;
    chunk_of(labels) -> chunks."""
    dense_rank = {l: n for n, (l, _) in enumerate(dense_list, 1)}
    dense_score = dict(dense_list)
    bm25_rank = {l: n for n, (l, _) in enumerate(bm25_list, 1)}
    labels = list(dict.fromkeys([l for l, _ in dense_list] + [l for l, _ in bm25_list]))
    missing = [l for l in labels if l not in dense_score]
    if missing:
        dense_score.update(zip(missing, np.asarray(dense_of_missing(missing), dtype=np.float64).tolist()))
    arr = np.asarray(labels, dtype=np.int64)
    return Pool(
        labels=arr,
        chunks=list(chunk_of(labels)),
        dense_scores=np.array([dense_score[l] for l in labels], dtype=np.float64),
        bm25_scores=np.asarray(bm25_of(labels), dtype=np.float64).reshape(len(labels)),
        dense_ranks=np.array([dense_rank.get(l, 0) for l in labels], dtype=np.int64),
        bm25_ranks=np.array([bm25_rank.get(l, 0) for l in labels], dtype=np.int64),
    )


@dataclass
class Change:
    """One write: documents removed (by doc_id), documents and their chunks added."""

    remove_doc_ids: set = field(default_factory=set)
    add_docs: list = field(default_factory=list)
    add_chunks: list = field(default_factory=list)
    tokens: list = field(default_factory=list)  # BM25 tokens per added chunk
    vectors: np.ndarray | None = None  # (len(add_chunks), dim) passage vectors
    files: dict | None = None  # the new source-file map (None = unchanged)


@runtime_checkable
class ChunkStore(Protocol):
    """Where an index's documents, chunks, vectors and postings live."""

    backend: str  # "faiss" | "qdrant"

    # --- contents ---
    def count(self) -> int: ...  # chunks
    def count_documents(self) -> int: ...
    def documents(self) -> list[Document]: ...
    def get_document(self, doc_id: str) -> Document | None: ...
    def chunks_of(self, doc_id: str) -> list[Chunk]: ...
    def files(self) -> dict: ...  # source file key -> sha256
    def describe(self) -> dict: ...  # index type etc. for stats()

    # --- search (labels are int64 chunk ids; lists best first) ---
    def dense_search(self, qvecs: np.ndarray, k: int, where: Where | None = None) -> list[list[tuple[Chunk, float]]]: ...
    def keyword_search(self, query_tokens: list[str], k: int, where: Where | None = None) -> list[tuple[Chunk, float]]: ...
    def candidates(self, qvec: np.ndarray, query_tokens: list[str], depth: int, where: Where | None = None) -> Pool: ...

    # --- writes: return the store to read from next; the old one stays valid for its readers ---
    def apply(self, change: Change, manifest: dict) -> tuple["ChunkStore", dict]: ...

    # --- engine ---
    def ping(self) -> None: ...  # raises StoreUnavailable when the engine does not answer


# --- the default: FAISS + BM25 in process --------------------------------------------------

class ChunkTable:
    """Chunks on disk, read by row on demand: a JSON-lines file and an array of line offsets.

    A stand-in for FaissStore's list of chunks in indexes too large to keep every chunk in
    memory (millions: bench/scale.py): a query reads only its candidates' lines."""

    def __init__(self, path, offsets: np.ndarray):
        import os

        self.path, self.offsets = Path(path), np.asarray(offsets, dtype=np.int64)
        self._fd = os.open(self.path, os.O_RDONLY)

    @classmethod
    def write(cls, path, chunks) -> "ChunkTable":
        import json

        offsets = [0]
        with open(path, "wb") as f:
            for c in chunks:
                f.write(json.dumps(c.to_dict(), ensure_ascii=False).encode("utf-8") + b"\n")
                offsets.append(f.tell())
        np.save(Path(path).with_suffix(".offsets.npy"), np.asarray(offsets, dtype=np.int64))
        return cls.open(path)

    @classmethod
    def open(cls, path) -> "ChunkTable":
        return cls(path, np.load(Path(path).with_suffix(".offsets.npy")))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, row):
        import json
        import os

        if isinstance(row, slice):
            return [self[r] for r in range(*row.indices(len(self)))]
        row = int(row)
        if row < 0:
            row += len(self)
        start, end = int(self.offsets[row]), int(self.offsets[row + 1])
        return Chunk.from_dict(json.loads(os.pread(self._fd, end - start, start)))

    def __iter__(self):
        return (self[r] for r in range(len(self)))

    def __add__(self, other):
        return list(self) + list(other)


@dataclass(frozen=True)
class FaissStore:
    """An immutable snapshot: apply() builds a new one (FAISS copied, BM25 updated)."""

    documents_: dict  # doc_id -> Document, in insertion order
    chunks: list  # row -> Chunk
    labels: np.ndarray  # row -> FAISS label (int64)
    tokens: list  # row -> BM25 tokens
    dense: DenseIndex
    keyword: KeywordIndex
    files_: dict
    next_label: int
    row_of_label: dict = field(default_factory=dict)
    backend: str = "faiss"

    @classmethod
    def make(cls, documents, chunks, labels, tokens, dense, files, next_label, keyword=None) -> "FaissStore":
        labels = np.asarray(labels, dtype=np.int64)
        return cls(
            documents_=documents,
            chunks=chunks,
            labels=labels,
            tokens=tokens,
            dense=dense,
            keyword=KeywordIndex(tokens) if keyword is None else keyword,
            files_=files,
            next_label=next_label,
            row_of_label={int(l): r for r, l in enumerate(labels)},
        )

    @classmethod
    def build(cls, documents, chunks, tokens, vectors, files, dim: int, ann_threshold: int,
              compress_threshold: int | None = None) -> "FaissStore":
        labels = np.arange(len(chunks), dtype=np.int64)
        dense = DenseIndex(dim, ann_threshold, compress_threshold=compress_threshold)
        dense.add(labels, vectors)
        return cls.make({d.doc_id: d for d in documents}, list(chunks), labels, tokens, dense,
                        dict(files or {}), len(chunks))

    # --- contents ---
    def count(self) -> int:
        return len(self.chunks)

    def count_documents(self) -> int:
        return len(self.documents_)

    def documents(self) -> list[Document]:
        return list(self.documents_.values())

    def get_document(self, doc_id: str) -> Document | None:
        return self.documents_.get(doc_id)

    def chunks_of(self, doc_id: str) -> list[Chunk]:
        return [c for c in self.chunks if c.doc_id == doc_id]

    def files(self) -> dict:
        return dict(self.files_)

    def describe(self) -> dict:
        return {"backend": self.backend, "index_type": self.dense.index_type}

    def ping(self) -> None:
        return None  # in process: always there

    def chunk_of_label(self, label: int) -> Chunk:
        return self.chunks[self.row_of_label[int(label)]]

    # --- search ---
    def _allowed_rows(self, where: Where | None) -> np.ndarray | None:
        if where is None or where.empty:
            return None
        return np.fromiter((r for r, c in enumerate(self.chunks) if where.matches(c)), dtype=np.int64)

    def _dense_lists(self, qvecs, k, where) -> list[list[tuple[int, float]]]:
        rows = self._allowed_rows(where)
        if rows is None:
            scores, labels = self.dense.search(qvecs, k)
        else:
            scores, labels = self.dense.search(qvecs, min(k, len(rows)), allowed=self.labels[rows])
        return [[(int(l), float(s)) for s, l in zip(srow, lrow) if l >= 0] for srow, lrow in zip(scores, labels)]

    def _keyword(self, query_tokens, k, where):
        rows = self._allowed_rows(where)
        if rows is None:
            top, scores, all_scores = self.keyword.search(query_tokens, k)
            return top, scores, all_scores
        all_scores = self.keyword.scores(query_tokens)
        masked = np.zeros_like(all_scores)
        masked[rows] = all_scores[rows]
        k = min(k, len(masked))
        if k <= 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32), all_scores
        top = np.argpartition(-masked, k - 1)[:k]
        top = top[np.argsort(-masked[top], kind="stable")]
        top = top[masked[top] > 0]
        return top.astype(np.int64), masked[top], all_scores

    def dense_search(self, qvecs, k, where=None):
        return [[(self.chunk_of_label(l), s) for l, s in dl] for dl in self._dense_lists(qvecs, k, where)]

    def keyword_search(self, query_tokens, k, where=None):
        rows, scores, _ = self._keyword(query_tokens, k, where)
        return [(self.chunks[int(r)], float(s)) for r, s in zip(rows, scores)]

    def candidates(self, qvec, query_tokens, depth, where=None) -> Pool:
        dense_list = self._dense_lists(np.asarray(qvec, dtype=np.float32)[None], depth, where)[0]
        rows, scores, all_scores = self._keyword(query_tokens, depth, where)
        bm25_list = [(int(self.labels[r]), float(s)) for r, s in zip(rows, scores)]
        row = self.row_of_label
        return assemble_pool(
            dense_list, bm25_list,
            dense_of_missing=lambda ls: self.dense.vectors(np.asarray(ls, dtype=np.int64)) @ qvec,
            bm25_of=lambda ls: all_scores[np.array([row[l] for l in ls], dtype=np.int64)]
            if ls else np.empty(0),
            chunk_of=lambda ls: [self.chunks[row[l]] for l in ls],
        )

    # --- writes ---
    def apply(self, change: Change, manifest: dict) -> tuple["FaissStore", dict]:
        """A new snapshot with `change` applied (the caller persists it)."""
        remove_ids = change.remove_doc_ids
        keep = [r for r, c in enumerate(self.chunks) if c.doc_id not in remove_ids]
        dropped = [int(self.labels[r]) for r, c in enumerate(self.chunks) if c.doc_id in remove_ids]
        n_new = len(change.add_chunks)
        new_labels = np.arange(self.next_label, self.next_label + n_new, dtype=np.int64)
        dense = self.dense.copy()  # copy-on-write: readers keep using the old one
        dense.remove(dropped)
        if n_new:
            dense.add(new_labels, change.vectors)
        documents = {k: v for k, v in self.documents_.items() if k not in remove_ids}
        documents.update({d.doc_id: d for d in change.add_docs})
        store = FaissStore.make(
            documents,
            [self.chunks[r] for r in keep] + list(change.add_chunks),
            np.concatenate([self.labels[keep], new_labels]),
            [self.tokens[r] for r in keep] + list(change.tokens),
            dense,
            self.files_ if change.files is None else change.files,
            self.next_label + n_new,
            keyword=self.keyword.updated(keep, list(change.tokens)),  # counts only the new chunks' tokens
        )
        return store, manifest

    # --- persistence: a versioned directory (index/store.py) ---
    def save(self, index_dir, manifest: dict) -> dict:
        manifest = dict(
            manifest,
            backend=self.backend,
            counts={"documents": len(self.documents_), "chunks": len(self.chunks)},
            files=dict(sorted(self.files_.items())),
            next_label=self.next_label,
            dense={"index_type": self.dense.index_type, "metric": "inner_product", "labels": "int64 per chunk"},
        )

        def write_files(d: Path) -> None:
            layout.write_jsonl(d / "documents.jsonl", (doc.to_dict() for doc in self.documents_.values()))
            layout.write_jsonl(d / "chunks.jsonl", (
                {"label": int(l), "tokens": t, "chunk": c.to_dict()}
                for c, l, t in zip(self.chunks, self.labels, self.tokens)
            ))
            self.dense.save(d / "dense.faiss")

        layout.write_version(Path(index_dir), write_files, manifest)
        return manifest

    @classmethod
    def load(cls, version: Path, manifest: dict, settings, embedder) -> "FaissStore":
        docs_path = layout.verify_data_file(version, "documents.jsonl", manifest)
        chunks_path = layout.verify_data_file(version, "chunks.jsonl", manifest)
        faiss_path = layout.verify_data_file(version, "dense.faiss", manifest)
        try:
            documents = {}
            for row in layout.read_jsonl(docs_path):
                doc = Document.from_dict(row)
                documents[doc.doc_id] = doc
        except TypeError as exc:
            raise IndexError_(f"index file {docs_path} has unexpected records: {exc}", str(docs_path)) from None
        rows = layout.read_jsonl(chunks_path)
        try:
            chunks = [Chunk.from_dict(r["chunk"]) for r in rows]
            labels = [int(r["label"]) for r in rows]
            tokens = [list(r["tokens"]) for r in rows]
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexError_(f"index file {chunks_path} has unexpected records: {exc}", str(chunks_path)) from None
        try:
            dense = DenseIndex.load(faiss_path, embedder.dim, settings.ann_threshold,
                                    getattr(settings, "dense_compress_threshold", None))
        except (RuntimeError, ValueError) as exc:
            raise IndexError_(f"index file {faiss_path} cannot be read: {str(exc).splitlines()[0]}",
                              str(faiss_path)) from None
        if dense.size != len(chunks) or set(dense.labels().tolist()) != set(labels):
            raise IndexError_(f"index file {faiss_path} does not match {chunks_path} "
                              f"({dense.size} vectors, {len(chunks)} chunks)", str(faiss_path))
        if manifest.get("tokenizer") != TOKENIZER_VERSION:
            log.warning("index in %s has BM25 tokens from %s; re-tokenising %d chunks with %s",
                        version.parent, manifest.get("tokenizer"), len(chunks), TOKENIZER_VERSION)
            tokens = [chunk_tokens(c) for c in chunks]
            manifest["tokenizer"] = TOKENIZER_VERSION
        return cls.make(documents, chunks, labels, tokens, dense, dict(manifest.get("files", {})),
                        int(manifest.get("next_label", len(chunks))))
