"""Pieces for very large indexes (bench/scale.py): the compressed dense index (IVF over 8-bit
vectors), the BM25 matrix built from flat token ids and memory-mapped, the on-disk chunk
table, metadata filters on the default store, the Qdrant sparse encoding. No model needed."""

from __future__ import annotations

import numpy as np
import pytest


def _unit(rng, n, d=384):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_dense_index_switches_to_ivf_sq8_and_keeps_add_remove_save_load(tmp_path):
    from index.dense import DenseIndex

    rng = np.random.default_rng(0)
    x = _unit(rng, 12_000)
    d = DenseIndex(384, ann_threshold=2_000, compress_threshold=10_000)
    d.add(np.arange(1_000), x[:1_000])
    assert d.index_type == "flat"
    d.add(np.arange(1_000, 5_000), x[1_000:5_000])
    assert d.index_type == "hnsw"
    _, got = d.search(x[:1], 5, allowed=np.array([10, 11, 12]))
    assert set(got[0][got[0] >= 0].tolist()) <= {10, 11, 12}
    d.add(np.arange(5_000, 12_000), x[5_000:])
    assert d.index_type == "ivf-sq8" and d.size == 12_000
    _, labels = d.search(x[:20], 1)
    assert (labels[:, 0] == np.arange(20)).mean() >= 0.95  # each vector finds itself
    assert np.abs(d.vectors([3, 11_999]) - x[[3, 11_999]]).max() < 0.01  # 8-bit reconstruction
    smaller = d.copy()
    smaller.remove([3])
    assert smaller.size == 11_999 and d.size == 12_000 and 3 not in set(smaller.labels().tolist())
    _, allowed = d.search(x[:1], 5, allowed=np.array([7, 8, 9]))
    assert set(allowed[0][allowed[0] >= 0].tolist()) <= {7, 8, 9}
    d.save(tmp_path / "d.faiss")
    back = DenseIndex.load(tmp_path / "d.faiss", 384, 2_000, 10_000)
    assert back.index_type == "ivf-sq8" and np.array_equal(back.search(x[:5], 3)[1], d.search(x[:5], 3)[1])


def test_frozen_bm25_from_flat_ids_equals_keyword_index_and_memory_maps(tmp_path):
    from index.keyword import KeywordIndex, frozen_from_term_ids, load_frozen, save_frozen

    rng = np.random.default_rng(1)
    words = [f"w{i}" for i in range(300)] + ["§集群", "集群"]
    docs = [[words[j] for j in rng.integers(0, len(words), rng.integers(3, 40))] for _ in range(2_000)]
    reference = KeywordIndex(docs)
    vocab: dict = {}
    ids = [np.array([vocab.setdefault(t, len(vocab)) for t in doc], dtype=np.int32) for doc in docs]
    offsets = np.concatenate([[0], np.cumsum([len(i) for i in ids])])
    frozen = frozen_from_term_ids(np.concatenate(ids), offsets, vocab, block=333)
    save_frozen(frozen, tmp_path)
    mapped = load_frozen(tmp_path)
    assert mapped.memory_mapped and not frozen.memory_mapped
    assert mapped.nnz == reference.nnz
    for query in (["w1", "w2", "w2"], ["集群", "§集群", "unknown"], ["w299"]):
        want = reference.scores(query)
        # float16 postings: three significant digits per term, summed in float32
        assert np.allclose(frozen.scores(query), want, rtol=2e-3, atol=1e-3)
        assert np.allclose(mapped.scores(query), want, rtol=2e-3, atol=1e-3)
        assert list(mapped.search(query, 5)[0]) == list(reference.search(query, 5)[0])
    with pytest.raises(RuntimeError, match="rebuild"):
        mapped.updated([0, 1], [["w1"]])


def test_chunk_table_reads_rows_from_disk(tmp_path):
    from index.stores import ChunkTable
    from ingest.records import Chunk

    chunks = [Chunk(f"d{i}", f"d{i}#0", "标题", "", "2025-01-0%d" % (i % 9 + 1), "", 0, 3, f"文本{i}") for i in range(50)]
    table = ChunkTable.write(tmp_path / "chunks.jsonl", chunks)
    again = ChunkTable.open(tmp_path / "chunks.jsonl")
    assert len(again) == 50 and again[7] == chunks[7] and again[-1] == chunks[-1]
    assert list(again) == chunks and table[3:5] == chunks[3:5]


def test_where_filters_on_the_default_store():
    from index.dense import DenseIndex
    from index.stores import FaissStore, Where
    from ingest.records import Chunk

    rng = np.random.default_rng(2)
    chunks = [Chunk(f"doc{i % 4}", f"doc{i % 4}#{i}", "t", "", ["2024-05-01", "2025-10-14", "", "2025-01-02"][i % 4],
                    "", 0, 1, "x", language="en" if i % 4 == 2 else "zh") for i in range(40)]
    tokens = [["集群", f"t{i}"] for i in range(40)]
    store = FaissStore.make({}, chunks, np.arange(40), tokens, _dense(rng, 40), {}, 40)
    q = _unit(rng, 1)[0]
    for where, ok in [(Where(doc_ids=["doc1", "doc3"]), lambda c: c.doc_id in ("doc1", "doc3")),
                      (Where(languages="en"), lambda c: c.language == "en"),
                      (Where(date_from="2025"), lambda c: c.date >= "2025"),
                      (Where(date_to="2024-12"), lambda c: c.date and c.date <= "2024-12"),
                      (Where(date_from="2025-01", date_to="2025-01"), lambda c: c.date.startswith("2025-01"))]:
        dense = store.dense_search(q[None], 10, where)[0]
        bm25 = store.keyword_search(["集群"], 10, where)
        pool = store.candidates(q, ["集群"], 10, where)
        assert dense and bm25 and len(pool.chunks)
        assert all(ok(c) for c, _ in dense) and all(ok(c) for c, _ in bm25) and all(ok(c) for c in pool.chunks)


def _dense(rng, n):
    from index.dense import DenseIndex

    d = DenseIndex(384, 1_000)
    d.add(np.arange(n), _unit(rng, n))
    return d


def test_qdrant_sparse_encoding_matches_bm25_formula():
    import math

    from index.keyword import B, K1
    from index.qdrant_store import chunk_sparse, date_num, query_sparse, token_id

    ind, val = chunk_sparse(["集群", "集群", "龙仁"], avgdl=4.0)
    norm = K1 * ((1 - B) + B * 3 / 4.0)
    got = dict(zip(ind, val))
    assert got[token_id("集群")] == pytest.approx(2 / (2 + norm)) and got[token_id("龙仁")] == pytest.approx(1 / (1 + norm))
    qi, qv = query_sparse(["集群", "集群", "x"])
    assert dict(zip(qi, qv)) == {token_id("集群"): 2.0, token_id("x"): 1.0}
    assert ind == sorted(ind) and all(0 <= i < 2**32 for i in ind)
    assert date_num("2025-10-14") == 20251014 and date_num("2025") == 20250000
    assert date_num("2025-10", high=True) == 20251099 and date_num("") is None
    assert not math.isnan(val[0])
