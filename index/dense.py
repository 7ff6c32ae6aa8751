"""Dense vector index: FAISS inner product over L2-normalised vectors (= cosine).

FAISS is managed directly (IndexIDMap2 over a flat or HNSW index) rather than through
llama-index's FaissVectorStore: that store keeps its own docstore/ID bookkeeping, has
no delete, and persists via a path that does not fit an atomic versioned directory.
Here every chunk has a stable int64 label, so add/remove are single FAISS calls and the
index is one file.
"""

from __future__ import annotations

import numpy as np

# HNSW parameters, tuned for recall@10 >= 0.95 at 100k with real query vectors (index/README.md, Speed):
# M 16 fell to 0.945 on a more clustered set, M 32 gives 0.98; efSearch 512 costs ~3 ms a query.
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 128
HNSW_EF_SEARCH = 512
# Compressed, for very large indexes (bench/scale.py, index/README.md "Scale"): inverted lists
# over 8-bit scalar-quantised vectors (384 bytes a vector instead of 1,536 + HNSW's graph).
# Removal/update rebuilds from the (quantised) stored vectors, as for HNSW.
IVF_NPROBE = 48
IVF_TRAIN_MAX = 100_000


def ivf_nlist(n: int) -> int:
    """Inverted lists for n vectors: ~4·sqrt(n), a power of two (1M -> 4096)."""
    return int(2 ** round(np.log2(max(16.0, 4 * np.sqrt(max(n, 1))))))


def _faiss():
    import faiss

    return faiss


class DenseIndex:
    """Labels -> vectors; exact (flat) below `ann_threshold` vectors, HNSW at or above."""

    def __init__(self, dim: int, ann_threshold: int, index=None, compress_threshold: int | None = None):
        self.dim = dim
        self.ann_threshold = ann_threshold
        self.compress_threshold = compress_threshold  # None: never compressed
        self.index = index if index is not None else self._empty(flat=True)

    # --- construction -------------------------------------------------------------
    def kind_for(self, n: int) -> str:
        if self.compress_threshold and n >= self.compress_threshold:
            return "ivf-sq8"
        return "flat" if n < self.ann_threshold else "hnsw"

    def prepare(self, n_expected: int, train: np.ndarray) -> None:
        """Start empty as the kind n_expected vectors get (trained on `train` when compressed),
        so a bulk build can add its vectors block by block without holding them all."""
        kind = self.kind_for(n_expected)
        self.index = self._empty(flat=kind == "flat", kind=kind, train=train)

    def _empty(self, flat: bool, kind: str | None = None, train=None):
        faiss = _faiss()
        kind = kind or ("flat" if flat else "hnsw")
        if kind == "ivf-sq8":
            index = faiss.index_factory(self.dim, f"IDMap2,IVF{ivf_nlist(len(train))},SQ8", faiss.METRIC_INNER_PRODUCT)
            sample = train
            if len(train) > IVF_TRAIN_MAX:
                sample = train[np.sort(np.random.default_rng(0).choice(len(train), IVF_TRAIN_MAX, replace=False))]
            index.train(np.ascontiguousarray(sample, dtype=np.float32))
            ivf = faiss.extract_index_ivf(index)
            ivf.make_direct_map()  # reconstruct(label) for candidate scoring
            ivf.nprobe = IVF_NPROBE
            return index
        if kind == "flat":
            inner = faiss.IndexFlatIP(self.dim)
        else:
            inner = faiss.IndexHNSWFlat(self.dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            inner.hnsw.efSearch = HNSW_EF_SEARCH
        return faiss.IndexIDMap2(inner)

    @property
    def index_type(self) -> str:
        inner = _faiss().downcast_index(self.index.index)
        if isinstance(inner, _faiss().IndexIVFScalarQuantizer):
            return "ivf-sq8"
        return "hnsw" if isinstance(inner, _faiss().IndexHNSWFlat) else "flat"

    @property
    def is_approximate(self) -> bool:
        return self.index_type != "flat"

    @property
    def size(self) -> int:
        return int(self.index.ntotal)

    def labels(self) -> np.ndarray:
        return _faiss().vector_to_array(self.index.id_map).astype(np.int64)

    def copy(self) -> "DenseIndex":
        return DenseIndex(self.dim, self.ann_threshold, _faiss().clone_index(self.index), self.compress_threshold)

    def add(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        labels = np.asarray(labels, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape[1:] != (self.dim,):
            raise ValueError(f"vectors have shape {vectors.shape}, expected (n, {self.dim})")
        order = ("flat", "hnsw", "ivf-sq8")
        if order.index(self.kind_for(self.size + len(labels))) > order.index(self.index_type):
            self._rebuild(extra=(labels, vectors))  # crossing a threshold: switch to HNSW / IVF-SQ8
        else:
            self.index.add_with_ids(vectors, labels)

    def remove(self, labels) -> None:
        labels = np.asarray(list(labels), dtype=np.int64)
        if not len(labels):
            return
        if self.is_approximate:
            # HNSW graphs cannot delete; rebuild from the kept vectors (rare: updates/removals).
            keep = np.setdiff1d(self.labels(), labels)
            self._rebuild(keep_labels=keep)
        else:
            self.index.remove_ids(labels)

    def _rebuild(self, keep_labels=None, extra=None) -> None:
        old_labels = self.labels() if keep_labels is None else keep_labels
        old_vectors = self.vectors(old_labels)
        if extra is not None:
            old_labels = np.concatenate([old_labels, extra[0]])
            old_vectors = np.concatenate([old_vectors, extra[1]])
        kind = self.kind_for(len(old_labels))
        self.index = self._empty(flat=kind == "flat", kind=kind, train=old_vectors)
        if len(old_labels):
            self.index.add_with_ids(old_vectors, old_labels)

    # --- queries ------------------------------------------------------------------
    def vectors(self, labels) -> np.ndarray:
        labels = np.asarray(labels, dtype=np.int64)
        if not len(labels):
            return np.empty((0, self.dim), dtype=np.float32)
        return self.index.reconstruct_batch(labels)

    def search(self, queries: np.ndarray, k: int, allowed=None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, labels), each (n_queries, k'); missing slots have label -1.
        `allowed`: only these labels are searched (a metadata filter, FAISS IDSelector)."""
        k = min(k, self.size)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if k <= 0:
            n = len(queries)
            return np.empty((n, 0), dtype=np.float32), np.empty((n, 0), dtype=np.int64)
        if allowed is None:
            return self.index.search(queries, k)
        faiss = _faiss()
        allowed = np.ascontiguousarray(allowed, dtype=np.int64)
        selector = faiss.IDSelectorBatch(len(allowed), faiss.swig_ptr(allowed))
        inner = faiss.downcast_index(self.index.index)
        if isinstance(inner, faiss.IndexIVFScalarQuantizer):
            params = faiss.SearchParametersIVF()
            params.nprobe = inner.nprobe
        elif isinstance(inner, faiss.IndexHNSWFlat):
            params = faiss.SearchParametersHNSW()
            params.efSearch = inner.hnsw.efSearch
        else:
            params = faiss.SearchParameters()
        params.sel = selector
        return self.index.search(queries, k, params=params)

    # --- persistence ----------------------------------------------------------------
    def save(self, path) -> None:
        _faiss().write_index(self.index, str(path))

    @classmethod
    def load(cls, path, dim: int, ann_threshold: int, compress_threshold: int | None = None) -> "DenseIndex":
        faiss = _faiss()
        index = faiss.read_index(str(path))
        if not isinstance(index, faiss.IndexIDMap2):
            index = faiss.downcast_index(index)
        if isinstance(faiss.downcast_index(index.index), faiss.IndexHNSWFlat):
            faiss.downcast_index(index.index).hnsw.efSearch = HNSW_EF_SEARCH
        if isinstance(faiss.downcast_index(index.index), faiss.IndexIVFScalarQuantizer):
            faiss.downcast_index(index.index).nprobe = IVF_NPROBE
        if index.d != dim:
            raise ValueError(f"vector dimension {index.d}, expected {dim}")
        return cls(dim, ann_threshold, index, compress_threshold)
