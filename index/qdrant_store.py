"""The index on Qdrant: dense vectors + sparse BM25 vectors in one collection, behind an alias.

Layout of a collection (one per build; the alias `settings.qdrant_collection` names the live one):

- chunk points: id = a 63-bit hash of (chunk_id, the document's content hash), named vectors
  "dense" (the E5 passage vector, DOT = cosine on L2-normalised vectors) and "bm25" (sparse);
  payload {kind: "chunk", doc_id, language, date, date_num, chunk: Chunk.to_dict()}.
- document points (no vectors): {kind: "document", doc_id, document: Document.to_dict()}.
- one manifest point (no vectors): {kind: "manifest", manifest: {...}} -- model, chunking,
  tokenizer, dense text, BM25 parameters, per-file hashes; checked on open.

**BM25 through Qdrant's IDF modifier.** A chunk's sparse vector holds, for each of its
tokens (index.text.tokenize, hashed to 32 bits), bm25s's Lucene term-frequency part
tf / (tf + k1·(1 − b + b·dl/avgdl)); the query vector holds each query token's count; the
collection's `Modifier.IDF` multiplies by ln(1 + (N − df + 0.5)/(df + 0.5)), N = points that
have the sparse vector. The product summed over the query's tokens is exactly the default
backend's BM25 score (tests/test_store_contract.py compares them). avgdl is fixed when the
collection is built (the manifest records it): chunks added later are weighted with it, so
after incremental adds the scores drift from a fresh build's by the change of avgdl
(b = 0.1 keeps that small); a rebuild re-weights everything.

**Fusion stays ours.** A hybrid query is two round trips: one batch with the dense and the
sparse top lists, one batch scoring each list's missing candidates on the other side
(filtered by id), so every candidate has both exact scores, as in the default backend.

**Writes wait** (`wait=True`). A rebuild (`create`) fills a new collection and then moves the
alias in one `update_collection_aliases` call; readers address the alias, so they go on
being answered from the old collection until the switch and from the new one after it.
The previous collection is kept one round (like the default backend's previous version).

Local mode (`QdrantClient(path=...)`, pure Python) locks its folder: one process at a time.
A server or cluster (`qdrant_url`) serves any number of app processes.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

from ingest.records import Chunk, Document

from .errors import IndexError_, StoreUnavailable
from .keyword import B, K1
from .stores import Change, Pool, Where, assemble_pool

log = logging.getLogger("clusterqa.index")

DENSE, SPARSE = "dense", "bm25"
MANIFEST_ID = 1
TOKEN_HASH = "blake2b-32"
UPSERT_BATCH = 256
SCROLL_BATCH = 1024

_clients: dict = {}
_clients_lock = threading.Lock()


def _models():
    from qdrant_client import models

    return models


# --- ids and sparse vectors ------------------------------------------------------------------

def _hash63(text: str) -> int:
    h = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")
    return (h & ((1 << 63) - 1)) | (1 << 40)  # never a reserved small id (MANIFEST_ID)


def chunk_point_id(chunk: Chunk, content_hash: str) -> int:
    """Stable across processes and replicas: same chunk of the same content -> same id."""
    return _hash63(f"chunk\0{chunk.chunk_id}\0{content_hash}\0{chunk.start}:{chunk.end}")


def document_point_id(doc_id: str) -> int:
    return _hash63(f"document\0{doc_id}")


def token_id(token: str) -> int:
    """A token's sparse index: 32 bits of blake2b (no shared vocabulary to coordinate)."""
    return int.from_bytes(hashlib.blake2b(token.encode("utf-8"), digest_size=4).digest(), "little")


def chunk_sparse(tokens: list[str], avgdl: float) -> tuple[list[int], list[float]]:
    """(indices, values): bm25s's Lucene tf part per distinct token (IDF is the engine's)."""
    counts = Counter(token_id(t) for t in tokens)
    norm = K1 * ((1 - B) + B * len(tokens) / avgdl) if avgdl > 0 else K1
    indices = sorted(counts)
    return indices, [counts[i] / (counts[i] + norm) for i in indices]


def query_sparse(tokens: list[str]) -> tuple[list[int], list[float]]:
    """(indices, values): each query token's count (bm25s sums repeated query tokens)."""
    counts = Counter(token_id(t) for t in tokens if t)
    indices = sorted(counts)
    return indices, [float(counts[i]) for i in indices]


def date_num(date: str, high: bool = False) -> int | None:
    """An ISO date (or its prefix: "2025", "2025-10") as YYYYMMDD; a prefix bound is padded
    low (from) or high (to), matching Where's inclusive prefix comparison."""
    digits = "".join(ch for ch in (date or "")[:10] if ch.isdigit())
    return int(digits.ljust(8, "9" if high else "0")) if len(digits) >= 4 else None


# --- the client -------------------------------------------------------------------------------

def connect(settings, index_dir=None):
    """(client, location): one client per server URL or local folder for the process
    (local mode locks its folder; the server client pools its connections)."""
    try:
        from qdrant_client import QdrantClient
    except ImportError as exc:  # an optional dependency: the server alone runs on FAISS
        raise IndexError_("index_backend = qdrant needs qdrant-client: install the qdrant extra "
                          "(pip install 'clusterqa[qdrant]', or bash .ci/install --test)") from exc

    url = (getattr(settings, "qdrant_url", "") or "").strip()
    if url:
        key = ("url", url, getattr(settings, "qdrant_api_key", "") or "")
    else:
        path = getattr(settings, "qdrant_path", None) or ""
        path = Path(path) if str(path) else Path(index_dir or settings.index_dir) / "qdrant"
        key = ("path", str(Path(path).resolve()), "")
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            if key[0] == "url":
                client = QdrantClient(url=url, api_key=key[2] or None, check_compatibility=False,
                                      timeout=int(getattr(settings, "qdrant_timeout", 10) or 10))
            else:
                Path(key[1]).mkdir(parents=True, exist_ok=True)
                try:
                    client = QdrantClient(path=key[1])
                except RuntimeError as exc:  # "Storage folder ... is already accessed by another instance"
                    raise StoreUnavailable(f"Qdrant local folder {key[1]} is in use by another process "
                                           f"(local mode is one process; use a server for more): {exc}",
                                           url=key[1]) from None
            _clients[key] = client
    return client, (url or key[1])


@atexit.register
def close_clients() -> None:
    """Close every cached client (tests; a process that is done with its local folders)."""
    with _clients_lock:
        for client in _clients.values():
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        _clients.clear()


def _unavailable_errors() -> tuple:
    import httpx
    from qdrant_client.http.exceptions import ResponseHandlingException

    errors = [ResponseHandlingException, httpx.HTTPError, ConnectionError, TimeoutError]
    try:
        import grpc

        errors.append(grpc.RpcError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


class QdrantStore:
    """A ChunkStore on a Qdrant collection alias. Live, not a snapshot: apply() writes to the
    engine (waiting for it) and returns the same store."""

    backend = "qdrant"

    def __init__(self, client, alias: str, location: str, avgdl: float, local: bool):
        self.client, self.alias, self.location = client, alias, location
        self.avgdl = avgdl
        self.local = local
        # local mode is plain Python state: serialise access from the server's threads
        self._lock = threading.RLock() if local else None

    # --- engine calls: every failure to reach the engine becomes StoreUnavailable ---
    def _call(self, fn, *args, **kwargs):
        from qdrant_client.http.exceptions import UnexpectedResponse

        try:
            if self._lock is not None:
                with self._lock:
                    return fn(*args, **kwargs)
            return fn(*args, **kwargs)
        except UnexpectedResponse as exc:
            if exc.status_code is not None and exc.status_code >= 500:
                raise StoreUnavailable(f"Qdrant at {self.location} failed: {exc}", url=self.location) from None
            raise
        except _unavailable_errors() as exc:
            raise StoreUnavailable(f"Qdrant at {self.location} is unreachable: {exc}", url=self.location) from None

    # --- construction ---
    @classmethod
    def create(cls, settings, index_dir, documents, chunks, tokens, vectors, files, manifest, progress=None):
        """Fill a new collection, then switch the alias to it atomically. Returns (store, manifest)."""
        m = _models()
        client, location = connect(settings, index_dir)
        alias = settings.qdrant_collection
        local = not (getattr(settings, "qdrant_url", "") or "").strip()
        lengths = [len(t) for t in tokens]
        avgdl = float(np.mean(lengths)) if lengths else 1.0
        store = cls(client, alias, location, avgdl, local)
        name = f"{alias}-v{time.time_ns()}"
        dim = int(vectors.shape[1]) if len(vectors) else int(manifest["model"]["dim"])
        kwargs = {}
        if not local:
            if getattr(settings, "qdrant_shards", 0):
                kwargs["shard_number"] = int(settings.qdrant_shards)
            if getattr(settings, "qdrant_replicas", 0):
                kwargs["replication_factor"] = int(settings.qdrant_replicas)
        store._call(client.create_collection, name,
                    vectors_config={DENSE: m.VectorParams(size=dim, distance=m.Distance.DOT)},
                    sparse_vectors_config={SPARSE: m.SparseVectorParams(modifier=m.Modifier.IDF)},
                    **kwargs)
        if not local:  # payload indexes (local mode has none and warns)
            for field, schema in (("kind", m.PayloadSchemaType.KEYWORD), ("doc_id", m.PayloadSchemaType.KEYWORD),
                                  ("language", m.PayloadSchemaType.KEYWORD),
                                  ("date_num", m.PayloadSchemaType.INTEGER)):
                store._call(client.create_payload_index, name, field, field_schema=schema, wait=True)
        manifest = dict(manifest, backend="qdrant",
                        bm25={"k1": K1, "b": B, "avgdl": avgdl, "token_ids": TOKEN_HASH, "modifier": "idf"},
                        qdrant={"collection": name, "alias": alias})
        try:
            store._upsert_documents(name, documents)
            store._upsert_chunks(name, {d.doc_id: d for d in documents}, chunks, tokens, vectors, progress)
            store._write_manifest(name, manifest, files, documents=len(documents), chunks=len(chunks))
        except BaseException:
            store._call(client.delete_collection, name)  # never leave a half-filled collection behind
            raise
        previous = store._alias_target()
        ops = []
        if previous is not None:
            ops.append(m.DeleteAliasOperation(delete_alias=m.DeleteAlias(alias_name=alias)))
        ops.append(m.CreateAliasOperation(create_alias=m.CreateAlias(collection_name=name, alias_name=alias)))
        store._call(client.update_collection_aliases, change_aliases_operations=ops)  # one atomic switch
        store._sweep(keep={name, previous})
        return store, store._read_manifest()

    @classmethod
    def open(cls, settings, index_dir=None):
        """(store, manifest) of the live collection; IndexError_ when there is none."""
        client, location = connect(settings, index_dir)
        alias = settings.qdrant_collection
        local = not (getattr(settings, "qdrant_url", "") or "").strip()
        store = cls(client, alias, location, 1.0, local)
        if store._alias_target() is None and not store._call(client.collection_exists, alias):
            raise IndexError_(f"no index in Qdrant collection {alias!r} at {location} "
                              "(build one with `python -m index build`)", location)
        manifest = store._read_manifest()
        if manifest is None:
            raise IndexError_(f"Qdrant collection {alias!r} at {location} has no ClusterQA manifest; "
                              "rebuild it with `python -m index build`", location)
        store.avgdl = float(manifest.get("bm25", {}).get("avgdl") or 1.0)
        if manifest.get("bm25", {}).get("token_ids") != TOKEN_HASH:
            raise IndexError_(f"Qdrant collection {alias!r} has BM25 vectors of another format "
                              f"({manifest.get('bm25')}); rebuild it", location)
        return store, manifest

    def _alias_target(self) -> str | None:
        for a in self._call(self.client.get_aliases).aliases:
            if a.alias_name == self.alias:
                return a.collection_name
        return None

    def _sweep(self, keep: set) -> None:
        """Drop this alias's older collections (keep the live one and the previous)."""
        prefix = f"{self.alias}-v"
        for c in self._call(self.client.get_collections).collections:
            if c.name.startswith(prefix) and c.name not in keep:
                try:
                    self._call(self.client.delete_collection, c.name)
                except Exception as exc:  # noqa: BLE001 - an old collection left is harmless
                    log.warning("could not delete old collection %s: %s", c.name, exc)

    # --- points ---
    def _upsert(self, name, points) -> None:
        for i in range(0, len(points), UPSERT_BATCH):
            self._call(self.client.upsert, name, points=points[i:i + UPSERT_BATCH], wait=True)

    def _upsert_documents(self, name, documents) -> None:
        m = _models()
        self._upsert(name, [m.PointStruct(id=document_point_id(d.doc_id), vector={},
                                          payload={"kind": "document", "doc_id": d.doc_id, "document": d.to_dict()})
                            for d in documents])

    def _upsert_chunks(self, name, docs_by_id, chunks, tokens, vectors, progress=None) -> list[int]:
        m = _models()
        ids, points = [], []
        for n, (c, toks, vec) in enumerate(zip(chunks, tokens, vectors)):
            pid = chunk_point_id(c, docs_by_id[c.doc_id].content_hash if c.doc_id in docs_by_id else "")
            ind, val = chunk_sparse(toks, self.avgdl)
            payload = {"kind": "chunk", "doc_id": c.doc_id, "language": c.language, "date": c.date,
                       "chunk": c.to_dict()}
            dn = date_num(c.date)
            if dn is not None:
                payload["date_num"] = dn
            vector = {DENSE: np.asarray(vec, dtype=np.float32).tolist()}
            if ind:
                vector[SPARSE] = m.SparseVector(indices=ind, values=val)
            points.append(m.PointStruct(id=pid, vector=vector, payload=payload))
            ids.append(pid)
        total = len(points)
        for i in range(0, total, UPSERT_BATCH):
            self._call(self.client.upsert, name, points=points[i:i + UPSERT_BATCH], wait=True)
            if progress is not None:
                progress("upload", min(i + UPSERT_BATCH, total), total)
        return ids

    def _write_manifest(self, name, manifest, files, documents: int, chunks: int) -> None:
        m = _models()
        manifest = dict(manifest, files=dict(sorted((files or {}).items())),
                        counts={"documents": documents, "chunks": chunks})
        self._call(self.client.upsert, name, wait=True, points=[
            m.PointStruct(id=MANIFEST_ID, vector={}, payload={"kind": "manifest", "manifest": manifest})])

    def _read_manifest(self) -> dict | None:
        got = self._call(self.client.retrieve, self.alias, ids=[MANIFEST_ID], with_payload=True, with_vectors=False)
        return dict(got[0].payload["manifest"]) if got else None

    def _scroll(self, flt, with_payload=True):
        offset = None
        while True:
            points, offset = self._call(self.client.scroll, self.alias, scroll_filter=flt, limit=SCROLL_BATCH,
                                        offset=offset, with_payload=with_payload, with_vectors=False)
            yield from points
            if offset is None:
                return

    @staticmethod
    def _kind(kind: str, *more):
        m = _models()
        return m.Filter(must=[m.FieldCondition(key="kind", match=m.MatchValue(value=kind)), *more])

    def _filter(self, where: Where | None, ids=None):
        m = _models()
        must = []
        if where is not None and not where.empty:
            if where.doc_ids is not None:
                must.append(m.FieldCondition(key="doc_id", match=m.MatchAny(any=list(where.doc_ids))))
            if where.languages is not None:
                must.append(m.FieldCondition(key="language", match=m.MatchAny(any=list(where.languages))))
            if where.date_from or where.date_to:
                must.append(m.FieldCondition(key="date_num", range=m.Range(
                    gte=date_num(where.date_from) if where.date_from else None,
                    lte=date_num(where.date_to, high=True) if where.date_to else None)))
        if ids is not None:
            must.append(m.HasIdCondition(has_id=list(ids)))
        return m.Filter(must=must) if must else None

    # --- contents ---
    def count(self) -> int:
        return int(self._call(self.client.count, self.alias, count_filter=self._kind("chunk"), exact=True).count)

    def count_documents(self) -> int:
        return int(self._call(self.client.count, self.alias, count_filter=self._kind("document"), exact=True).count)

    def documents(self) -> list[Document]:
        return [Document.from_dict(p.payload["document"]) for p in self._scroll(self._kind("document"))]

    def get_document(self, doc_id: str) -> Document | None:
        got = self._call(self.client.retrieve, self.alias, ids=[document_point_id(doc_id)], with_payload=True)
        return Document.from_dict(got[0].payload["document"]) if got else None

    def chunks_of(self, doc_id: str) -> list[Chunk]:
        m = _models()
        flt = self._kind("chunk", m.FieldCondition(key="doc_id", match=m.MatchValue(value=doc_id)))
        chunks = [Chunk.from_dict(p.payload["chunk"]) for p in self._scroll(flt)]
        return sorted(chunks, key=lambda c: (c.start, c.end))

    def files(self) -> dict:
        return dict((self._read_manifest() or {}).get("files", {}))

    def describe(self) -> dict:
        return {"backend": self.backend, "index_type": "qdrant", "collection": self.alias,
                "qdrant": self.location}

    def ping(self) -> None:
        self._call(self.client.get_collection, self.alias)

    # --- search ---
    def _query(self, requests) -> list:
        return self._call(self.client.query_batch_points, self.alias, requests=requests)

    def _dense_request(self, qvec, k, where, ids=None):
        return _models().QueryRequest(query=np.asarray(qvec, dtype=np.float32).tolist(), using=DENSE, limit=k,
                                      filter=self._filter(where, ids), with_payload=["chunk"] if ids is None else False)

    def _sparse_request(self, query_tokens, k, where, ids=None):
        m = _models()
        ind, val = query_sparse(query_tokens)
        if not ind:
            return None
        return m.QueryRequest(query=m.SparseVector(indices=ind, values=val), using=SPARSE, limit=k,
                              filter=self._filter(where, ids), with_payload=["chunk"] if ids is None else False)

    def dense_search(self, qvecs, k, where=None):
        if k <= 0 or not len(qvecs):
            return [[] for _ in qvecs]
        results = self._query([self._dense_request(q, k, where) for q in qvecs])
        return [[(Chunk.from_dict(p.payload["chunk"]), float(p.score)) for p in r.points] for r in results]

    def keyword_search(self, query_tokens, k, where=None):
        req = self._sparse_request(query_tokens, k, where) if k > 0 else None
        if req is None:
            return []
        return [(Chunk.from_dict(p.payload["chunk"]), float(p.score)) for p in self._query([req])[0].points]

    def candidates(self, qvec, query_tokens, depth, where=None) -> Pool:
        if self.local:
            return self._candidates_local(qvec, query_tokens, depth, where)
        sparse = self._sparse_request(query_tokens, depth, where)
        results = self._query([self._dense_request(qvec, depth, where)] + ([sparse] if sparse else []))
        chunk_of = {}
        dense_list, bm25_list = [], []
        for p in results[0].points:
            dense_list.append((int(p.id), float(p.score)))
            chunk_of[int(p.id)] = p.payload["chunk"]
        if sparse is not None:
            for p in results[1].points:
                bm25_list.append((int(p.id), float(p.score)))
                chunk_of.setdefault(int(p.id), p.payload["chunk"])
        in_dense, in_bm25 = {l for l, _ in dense_list}, dict(bm25_list)
        need_dense = [l for l, _ in bm25_list if l not in in_dense]
        need_bm25 = [l for l, _ in dense_list if l not in in_bm25]
        extra = {}
        requests, kinds = [], []
        if need_dense:
            requests.append(self._dense_request(qvec, len(need_dense), None, ids=need_dense))
            kinds.append("dense")
        if need_bm25 and sparse is not None:
            requests.append(self._sparse_request(query_tokens, len(need_bm25), None, ids=need_bm25))
            kinds.append("bm25")
        if requests:
            for kind, r in zip(kinds, self._query(requests)):
                extra[kind] = {int(p.id): float(p.score) for p in r.points}
        missing_dense = extra.get("dense", {})
        bm25_scores = dict(in_bm25)
        bm25_scores.update(extra.get("bm25", {}))
        return assemble_pool(
            dense_list, bm25_list,
            dense_of_missing=lambda ls: [missing_dense.get(l, 0.0) for l in ls],
            bm25_of=lambda ls: [bm25_scores.get(l, 0.0) for l in ls],
            chunk_of=lambda ls: [Chunk.from_dict(chunk_of[l]) for l in ls],
        )

    def _candidates_local(self, qvec, query_tokens, depth, where) -> Pool:
        """Local mode scores sparse vectors with a Python loop over every point, so a filtered
        second sparse query costs as much as the first: one unlimited sparse query gives every
        BM25 score at once (the same numbers; the top list is its first `depth`)."""
        sparse = self._sparse_request(query_tokens, 1 << 30, where)
        if sparse is not None:
            sparse.with_payload = False
        results = self._query([self._dense_request(qvec, depth, where)] + ([sparse] if sparse else []))
        chunk_of = {int(p.id): p.payload["chunk"] for p in results[0].points}
        dense_list = [(int(p.id), float(p.score)) for p in results[0].points]
        all_bm25 = [(int(p.id), float(p.score)) for p in results[1].points] if sparse is not None else []
        bm25_list = all_bm25[:depth]
        bm25_scores = dict(all_bm25)
        in_dense = {l for l, _ in dense_list}
        need_dense = [l for l, _ in bm25_list if l not in in_dense]
        missing_dense = {}
        if need_dense:
            r = self._query([self._dense_request(qvec, len(need_dense), None, ids=need_dense)])[0]
            missing_dense = {int(p.id): float(p.score) for p in r.points}
            got = self._call(self.client.retrieve, self.alias, ids=need_dense, with_payload=["chunk"])
            chunk_of.update({int(p.id): p.payload["chunk"] for p in got})
        return assemble_pool(
            dense_list, bm25_list,
            dense_of_missing=lambda ls: [missing_dense.get(l, 0.0) for l in ls],
            bm25_of=lambda ls: [bm25_scores.get(l, 0.0) for l in ls],
            chunk_of=lambda ls: [Chunk.from_dict(chunk_of[l]) for l in ls],
        )

    # --- writes ---
    def apply(self, change: Change, manifest: dict) -> tuple["QdrantStore", dict]:
        """Write `change` to the live collection and wait: new chunks first, then the old
        chunks of removed/updated documents, so a reader never finds a document missing."""
        m = _models()
        live = self._read_manifest() or {}
        self.avgdl = float(live.get("bm25", {}).get("avgdl") or self.avgdl)  # a rebuild elsewhere may have moved it
        manifest = {**manifest, **{k: live[k] for k in ("bm25", "qdrant", "created") if k in live}}
        old_ids = []
        if change.remove_doc_ids:
            flt = self._kind("chunk", m.FieldCondition(key="doc_id", match=m.MatchAny(any=sorted(change.remove_doc_ids))))
            old_ids = [p.id for p in self._scroll(flt, with_payload=False)]
        docs_by_id = {d.doc_id: d for d in change.add_docs}
        new_ids = set()
        if change.add_chunks:
            new_ids = set(self._upsert_chunks(self.alias, docs_by_id, change.add_chunks, change.tokens,
                                              change.vectors))
        if change.add_docs:
            self._upsert_documents(self.alias, change.add_docs)
        stale = [i for i in old_ids if i not in new_ids]
        if stale:
            self._call(self.client.delete, self.alias, points_selector=m.PointIdsList(points=stale), wait=True)
        gone = [d for d in change.remove_doc_ids if d not in docs_by_id]
        if gone:
            self._call(self.client.delete, self.alias, wait=True,
                       points_selector=m.PointIdsList(points=[document_point_id(d) for d in gone]))
        files = self.files() if change.files is None else change.files
        self._write_manifest(self.alias, manifest, files, documents=self.count_documents(), chunks=self.count())
        return self, self._read_manifest()

    def save(self, index_dir, manifest: dict) -> dict:
        """The engine holds the data; this refreshes the manifest point (counts, files)."""
        files = manifest.get("files") or self.files()
        self._write_manifest(self.alias, manifest, files, documents=self.count_documents(), chunks=self.count())
        return self._read_manifest()
