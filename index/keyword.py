"""BM25 keyword index: bm25s scores queries; the score matrix is built here, incrementally.

bm25s builds its matrix with Python loops over every token of every chunk (about 0.7 s
per 10k chunks on an idle 2-core machine, three times that under load), and an index
update needs a fresh matrix because idf and the average length change. So the index
keeps each chunk's term counts and vocabulary ids; an update converts only the new
chunks' tokens and rebuilds the matrix with vectorised numpy/scipy, using bm25s's own
"lucene" formulas (tests/test_index_core.py checks the scores against bm25s.index).
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np

from .fitted import read_fitted

logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at INFO

# k1 and b are fitted parameters: index/fitted.json ("bm25"; why they are low: index/fitted.py
# BM25Params). Read once; the fusion and reader numbers fitted with them record them too.
K1 = read_fitted().bm25.k1
B = read_fitted().bm25.b


class TermCounts(NamedTuple):
    ids: np.ndarray  # distinct vocabulary ids in the chunk
    tf: np.ndarray  # how often each occurs
    length: int  # number of tokens, repeats included (BM25's document length)


def count_terms(tokens: list[str], vocab: dict[str, int]) -> TermCounts:
    """A chunk's term counts; unseen tokens are added to `vocab`."""
    ids = np.fromiter((vocab.setdefault(t, len(vocab)) for t in tokens), dtype=np.int64, count=len(tokens))
    distinct, tf = np.unique(ids, return_counts=True)
    return TermCounts(distinct, tf, len(tokens))


class KeywordIndex:
    """BM25 over token lists; row i of the index is token_lists[i]."""

    def __init__(self, token_lists: list[list[str]]):
        vocab: dict[str, int] = {}
        self._init([count_terms(t, vocab) for t in token_lists], vocab)

    def updated(self, keep_rows, new_token_lists: list[list[str]]) -> "KeywordIndex":
        """A new index of the kept rows (in that order) followed by the new token lists;
        only the new tokens are counted. `self` stays valid for readers still using it."""
        if self._counts is None:
            raise RuntimeError("this BM25 index was loaded frozen (memory-mapped, no term counts): "
                               "rebuild it to change it")
        vocab = dict(self._vocab)  # ids only grow, so kept counts stay valid
        counts = [self._counts[r] for r in keep_rows] + [count_terms(t, vocab) for t in new_token_lists]
        new = object.__new__(KeywordIndex)
        new._init(counts, vocab)
        return new

    def _init(self, counts: list[TermCounts], vocab: dict[str, int]) -> None:
        import bm25s
        import scipy.sparse as sp

        self._counts, self._vocab = counts, vocab
        self.size = len(counts)
        self._bm25 = None
        lengths = np.array([c.length for c in counts], dtype=np.float64)
        if not self.size or not lengths.any():
            return
        rows = np.repeat(np.arange(self.size), [len(c.ids) for c in counts])
        cols = np.concatenate([c.ids for c in counts])
        tf = np.concatenate([c.tf for c in counts]).astype(np.float64)
        n_vocab = len(vocab) + 1  # + bm25s's empty token, below
        df = np.bincount(cols, minlength=n_vocab)
        idf = np.log(1 + (self.size - df + 0.5) / (df + 0.5))  # bm25s _score_idf_lucene
        norm = K1 * ((1 - B) + B * lengths[rows] / lengths.mean())
        data = idf[cols] * tf / (norm + tf)  # bm25s _score_tfc_lucene
        matrix = sp.csc_matrix((data.astype(np.float32), (rows, cols)), shape=(self.size, n_vocab))
        bm25 = bm25s.BM25(k1=K1, b=B)
        bm25.scores = {"data": matrix.data, "indices": matrix.indices, "indptr": matrix.indptr,
                       "num_docs": self.size}
        bm25.vocab_dict = dict(vocab, **{"": n_vocab - 1})
        bm25.unique_token_ids_set = set(bm25.vocab_dict.values())
        bm25.nonoccurrence_array = None
        self._bm25 = bm25

    @property
    def memory_mapped(self) -> bool:
        """True when the score matrix is read from disk on demand (load_frozen)."""
        return self._bm25 is not None and isinstance(self._bm25.scores["data"], np.memmap)

    @property
    def nnz(self) -> int:
        """Stored (chunk, token) entries of the score matrix."""
        return 0 if self._bm25 is None else int(len(self._bm25.scores["data"]))

    def scores(self, query_tokens: list[str]) -> np.ndarray:
        """BM25 score of every row for this query (zeros when no token is known)."""
        if self._bm25 is None:
            return np.zeros(self.size, dtype=np.float32)
        vocab = self._bm25.vocab_dict
        ids = [vocab[t] for t in query_tokens if t in vocab and t]
        out = np.zeros(self.size, dtype=np.float32)
        # the matrix's column per token (bm25s layout): its rows are unique, so a fancy-index
        # add is exact; 7x faster than bm25s's np.add.at over the concatenated postings at 1M
        # chunks (48 -> 7 ms a query). A repeated query token counts twice, as in bm25s.
        m = self._bm25.scores
        data, rows, ptr = m["data"], m["indices"], m["indptr"]
        for i in ids:
            start, end = int(ptr[i]), int(ptr[i + 1])
            out[rows[start:end]] += data[start:end]
        return out

    def search(self, query_tokens: list[str], k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top-k rows with a positive score: (rows, scores, all_scores), best first."""
        all_scores = self.scores(query_tokens)
        k = min(k, self.size)
        if k <= 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32), all_scores
        top = np.argpartition(-all_scores, k - 1)[:k]
        top = top[np.argsort(-all_scores[top], kind="stable")]
        top = top[all_scores[top] > 0]
        return top.astype(np.int64), all_scores[top], all_scores


# --- large indexes: built from flat arrays, saved and memory-mapped ------------------------------

def _install_matrix(index: "KeywordIndex", data, indices, indptr, size: int, vocab: dict) -> None:
    import bm25s

    bm25 = bm25s.BM25(k1=K1, b=B)
    bm25.scores = {"data": data, "indices": indices, "indptr": indptr, "num_docs": size}
    n_vocab = len(indptr) - 1
    bm25.vocab_dict = dict(vocab, **{"": n_vocab - 1})
    bm25.unique_token_ids_set = set(bm25.vocab_dict.values())
    bm25.nonoccurrence_array = None
    index._bm25 = bm25


def frozen_from_term_ids(term_ids: np.ndarray, doc_offsets: np.ndarray, vocab: dict,
                         block: int = 50_000) -> "KeywordIndex":
    """The same BM25 matrix as KeywordIndex(token_lists), built from flat vocabulary ids
    (`term_ids[doc_offsets[d]:doc_offsets[d+1]]` are chunk d's tokens, repeats included;
    scores to float16 precision, about 3 significant digits)
    without per-chunk Python objects; it cannot be updated incrementally (rebuild instead).
    For indexes of millions of chunks (bench/scale.py): term counts are taken a block of
    chunks at a time, so memory stays near the size of the matrix itself."""
    import scipy.sparse as sp

    size = len(doc_offsets) - 1
    n_vocab = len(vocab) + 1
    lengths = np.diff(doc_offsets).astype(np.float64)
    docs, terms, tfs = [], [], []
    for start in range(0, size, block):
        stop = min(size, start + block)
        lo, hi = int(doc_offsets[start]), int(doc_offsets[stop])
        doc_of = np.repeat(np.arange(start, stop, dtype=np.int64), np.diff(doc_offsets[start:stop + 1]))
        keys, tf = np.unique(doc_of * n_vocab + term_ids[lo:hi].astype(np.int64), return_counts=True)
        docs.append((keys // n_vocab).astype(np.int32))
        terms.append((keys % n_vocab).astype(np.int32))
        tfs.append(tf.astype(np.float32))
    doc, term, tf = np.concatenate(docs), np.concatenate(terms), np.concatenate(tfs)
    del docs, terms, tfs
    df = np.bincount(term, minlength=n_vocab)
    idf = np.log(1 + (size - df + 0.5) / (df + 0.5))  # bm25s _score_idf_lucene
    norm = (K1 * ((1 - B) + B * lengths / lengths.mean())).astype(np.float32)
    data = idf.astype(np.float32)[term]  # in place from here: the arrays are hundreds of MB at 1M chunks
    denom = norm[doc]
    denom += tf
    np.divide(tf, denom, out=tf)
    data *= tf  # idf * tf / (norm + tf): bm25s _score_tfc_lucene
    del tf, denom
    matrix = sp.csc_matrix((data, (doc, term)), shape=(size, n_vocab))
    del data, doc, term
    index = object.__new__(KeywordIndex)
    index._counts, index._vocab, index.size = None, dict(vocab), size
    # stored as float16 (scores still summed in float32): a query touches the postings of its
    # tokens, and at 1M chunks those pages are most of the resident memory (index/README.md)
    _install_matrix(index, matrix.data.astype(np.float16), matrix.indices, matrix.indptr, size, vocab)
    return index


def save_frozen(index: "KeywordIndex", folder) -> None:
    """data/indices/indptr as .npy (memory-mappable) and the vocabulary as JSON."""
    import json
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    m = index._bm25.scores
    for name in ("data", "indices", "indptr"):
        np.save(folder / f"bm25_{name}.npy", np.asarray(m[name]))
    (folder / "bm25_vocab.json").write_text(json.dumps({"size": index.size, "vocab": index._vocab},
                                                       ensure_ascii=False), encoding="utf-8")


def load_frozen(folder, mmap: bool = True) -> "KeywordIndex":
    """A saved matrix, memory-mapped: a query touches only its tokens' postings, so resident
    memory stays small however many chunks there are."""
    import json
    from pathlib import Path

    folder = Path(folder)
    meta = json.loads((folder / "bm25_vocab.json").read_text(encoding="utf-8"))
    arrays = {name: np.load(folder / f"bm25_{name}.npy", mmap_mode="r" if mmap else None)
              for name in ("data", "indices", "indptr")}
    index = object.__new__(KeywordIndex)
    index._counts, index._vocab, index.size = None, meta["vocab"], int(meta["size"])
    _install_matrix(index, arrays["data"], arrays["indices"], np.asarray(arrays["indptr"]), index.size, index._vocab)
    return index
