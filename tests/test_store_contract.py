"""One contract for both stores (index/stores.py): FAISS + BM25 in process and Qdrant (local mode).

Each test runs on each backend with the real model, on a small corpus built into tmp
folders; the cross-backend tests check that both give the same chunks and the same fused
scores. Tests that need a Qdrant server are in test_store_qdrant_server.py.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from settings import load_settings

pytestmark = pytest.mark.slow

DOCS = {
    "zh/yongin.txt": "title: 龙仁半导体集群\ndate: 2025-10-14\n\n韩国政府宣布，将投资300万亿韩元在京畿道龙仁地区打造世界最大规模的尖端系统半导体集群。"
    "三星电子将在龙仁新建五座晶圆厂，并吸引150家材料、零部件和设备企业入驻。",
    "zh/hamburg.txt": "title: 汉堡航空集群\ndate: 2024-03-01\n\n汉堡航空集群聚集了空中客车、汉莎技术公司以及三百多家中小型供应商，是全球第三大民用航空制造基地。"
    "该集群设有航空应用技术中心，为企业提供测试与研发设施。",
    "zh/owl.txt": "title: 东威斯特法伦利普集群\n\n德国的it's OWL集群以智能技术系统为主题，由企业、高校和研究机构组成，"
    "重点研究工业4.0背景下的自适应与自优化机器。",
    "en/chips.txt": "title: CHIPS and Science Act\ndate: 2022-08-09\n\nThe CHIPS and Science Act provides 52.7 billion dollars for American "
    "semiconductor research, manufacturing and workforce development, and created regional technology hubs.",
}
QUERIES = ["龙仁半导体集群投资多少韩元", "龍仁半導體聚落投資多少？", "Which companies are in the Hamburg aviation cluster?",
           "集群", "CHIPS Act 52.7 billion", "智能技术系统"]
BACKENDS = ["faiss", "qdrant"]


def write_corpus(root: Path, docs: dict = DOCS) -> Path:
    for rel, text in docs.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    return root


def make_settings(tmp: Path, backend: str, **more):
    return load_settings(env={}, corpus_dir=tmp / "corpus", index_dir=tmp / f"index-{backend}",
                         index_backend=backend, qdrant_collection="contract", **more)


@pytest.fixture(params=BACKENDS)
def built(request, tmp_path):
    """(settings, index) of the small corpus on one backend, private to the test."""
    from index import build_index

    write_corpus(tmp_path / "corpus")
    settings = make_settings(tmp_path, request.param)
    return settings, build_index([settings.corpus_dir], settings, index_dir=settings.index_dir)


@pytest.fixture
def both(tmp_path):
    from index import build_index

    write_corpus(tmp_path / "corpus")
    out = {}
    for backend in BACKENDS:
        s = make_settings(tmp_path, backend)
        out[backend] = build_index([s.corpus_dir], s, index_dir=s.index_dir)
    return out


def hits_of(index, query, mode, k=4, **kw):
    return [(h.chunk.chunk_id, h.score, h.dense_score, h.bm25_score, h.dense_rank, h.bm25_rank)
            for h in index.retrieve(query, k, mode, **kw)]


def same_hits(a, b):
    assert [h[0] for h in a] == [h[0] for h in b]
    for x, y in zip(a, b):
        for u, v in zip(x[1:], y[1:]):
            assert (u is None) == (v is None)
            if u is not None:
                assert u == pytest.approx(v, rel=1e-5, abs=1e-5)


# --- the two backends agree ------------------------------------------------------------

def test_both_backends_give_the_same_hits_and_scores(both):
    """Same chunks, same dense and BM25 scores, same fused scores and ranks, in every mode."""
    for query in QUERIES:
        for mode in ("hybrid", "dense", "bm25"):
            same_hits(hits_of(both["faiss"], query, mode), hits_of(both["qdrant"], query, mode))


def test_the_server_query_plan_gives_the_same_hits(both):
    """On a server the hybrid query is two batched rounds (top lists, then each side's missing
    scores filtered by id); run that plan on the local engine too: same hits and scores."""
    from index.text import tokenize

    store = both["qdrant"].store
    assert store.local
    store.local = False  # the plan a server gets (the local engine answers the same requests)
    for index in both.values():  # pools of 2 + 2 leave candidates missing from one list
        index.fusion.depth = 2
    try:
        for query in QUERIES:
            same_hits(hits_of(both["faiss"], query, "hybrid", k=1), hits_of(both["qdrant"], query, "hybrid", k=1))
            pool = store.candidates(both["qdrant"].embed_query(query), tokenize(query), 2)
            assert len(pool.labels) >= 2
    finally:
        store.local = True


def test_qdrant_bm25_equals_the_default_bm25_score_for_every_chunk(both):
    """Qdrant's IDF modifier over our tf part reproduces bm25s's Lucene BM25 exactly."""
    faiss_index, q_index = both["faiss"], both["qdrant"]
    n = faiss_index.stats()["chunks"]
    for query in QUERIES + ["集群 集群 龙仁"]:  # repeated query tokens count twice in both
        want = {h.chunk.chunk_id: h.bm25_score for h in faiss_index.retrieve(query, n, "bm25")}
        got = {h.chunk.chunk_id: h.bm25_score for h in q_index.retrieve(query, n, "bm25")}
        assert got.keys() == want.keys(), query
        for cid in want:
            assert got[cid] == pytest.approx(want[cid], rel=1e-5), (query, cid)


def test_query_vector_is_returned_and_can_be_passed_back(both):
    for index in both.values():
        result = index.retrieve(QUERIES[0], 3)
        assert result.query_vector.shape == (384,)
        assert np.allclose(result.query_vector, index.embed_query(QUERIES[0]))
        again = index.retrieve(QUERIES[0], 3, query_vector=result.query_vector)
        assert [h.chunk.chunk_id for h in again] == [h.chunk.chunk_id for h in result]
        assert index.retrieve(QUERIES[0], 3, mode="bm25").query_vector is None


# --- each backend: contents, filters, updates, persistence -----------------------------------

def test_documents_chunks_and_stats(built):
    settings, index = built
    assert {d.doc_id for d in index.documents()} == set(DOCS)
    assert index.get_document("zh/yongin.txt").title == "龙仁半导体集群"
    assert index.get_document("no/such") is None
    assert [c.doc_id for c in index.chunks_of("zh/hamburg.txt")] == ["zh/hamburg.txt"]
    st = index.stats()
    assert st["backend"] == settings.index_backend and st["documents"] == 4 and st["chunks"] == 4
    assert index.health() == {"backend": settings.index_backend, "ok": True, "error": None}


def test_metadata_filters(built):
    from index.stores import Where

    _, index = built
    for mode in ("hybrid", "dense", "bm25"):
        hits = index.retrieve("集群", 10, mode, where=Where(doc_ids=["zh/owl.txt", "zh/hamburg.txt"]))
        assert hits and {h.chunk.doc_id for h in hits} <= {"zh/owl.txt", "zh/hamburg.txt"}, mode
        hits = index.retrieve("semiconductor 集群", 10, mode, where=Where(languages=["en"]))
        assert {h.chunk.doc_id for h in hits} == {"en/chips.txt"}, mode
        hits = index.retrieve("集群 Act", 10, mode, where=Where(date_from="2023", date_to="2025-12"))
        assert {h.chunk.doc_id for h in hits} <= {"zh/yongin.txt", "zh/hamburg.txt"} and hits, mode
        hits = index.retrieve("集群 Act", 10, mode, where=Where(date_to="2024"))
        assert {h.chunk.doc_id for h in hits} <= {"zh/hamburg.txt", "en/chips.txt"} and hits, mode


def test_add_update_remove_and_reopen(built):
    from index import open_index

    settings, index = built
    corpus = settings.corpus_dir
    (corpus / "zh/new.txt").write_text("title: 苏州纳米城\n\n苏州工业园区纳米城集聚了六百多家纳米技术企业。", encoding="utf-8")
    summary = index.add_paths([corpus / "zh/new.txt"])
    assert summary["added"] == ["zh/new.txt"] and summary["chunks"] == 5
    assert index.retrieve("纳米城", 1, "bm25")[0].chunk.doc_id == "zh/new.txt"
    assert index.retrieve("纳米城有多少家企业", 1, "hybrid")[0].chunk.doc_id == "zh/new.txt"

    (corpus / "zh/new.txt").write_text("title: 苏州纳米城\n\n苏州纳米城改名为苏州微纳制造创新中心，聚焦微机电系统。", encoding="utf-8")
    summary = index.add_paths([corpus / "zh/new.txt"])
    assert summary["updated"] == ["zh/new.txt"] and summary["chunks"] == 5
    assert "六百多家" not in " ".join(c.text for c in index.chunks_of("zh/new.txt"))
    assert all("六百多家" not in h.chunk.text for h in index.retrieve("六百多家纳米技术企业", 10, "hybrid"))

    assert index.remove([corpus / "zh/new.txt"]) == 1
    assert index.remove(["en/chips.txt"]) == 1
    assert index.remove(["no/such-doc"]) == 0
    for mode in ("dense", "bm25", "hybrid"):
        assert all(h.chunk.doc_id not in ("zh/new.txt", "en/chips.txt")
                   for h in index.retrieve("CHIPS Act 52.7 billion dollars 纳米", 10, mode))
    assert index.stats()["chunks"] == 3

    reopened = open_index(settings.index_dir, settings)
    assert {d.doc_id for d in reopened.documents()} == {"zh/yongin.txt", "zh/hamburg.txt", "zh/owl.txt"}
    assert set(reopened.manifest["files"]) == {"zh/yongin.txt", "zh/hamburg.txt", "zh/owl.txt"}
    assert reopened.retrieve("汉堡航空集群", 1)[0].chunk.doc_id == "zh/hamburg.txt"


def test_manifest_is_checked_on_open(built):
    from index import IndexError_, open_index

    settings, _ = built
    with pytest.raises(IndexError_, match="chunk_size: index has 500, configuration wants 120"):
        open_index(settings.index_dir, settings.replace(chunk_size=120, chunk_overlap=20))


def test_retrieve_while_adding(built):
    settings, index = built
    errors, stop = [], threading.Event()

    def reader():
        while not stop.is_set():
            try:
                hits = index.retrieve("汉堡航空集群", 3, "hybrid")
                assert hits and hits[0].chunk.doc_id == "zh/hamburg.txt"
            except Exception as exc:  # noqa: BLE001 - collected and reported below
                errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for n in range(2):
            p = settings.corpus_dir / f"zh/more{n}.txt"
            p.write_text(f"title: 第{n}号\n\n集群资料{n}：先进制造业的集群化发展。", encoding="utf-8")
            index.add_paths([p])
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    assert index.stats()["documents"] == 6


# --- Qdrant: rebuild behind an alias, unreachable engine ------------------------------------

def test_qdrant_rebuild_switches_the_alias_while_serving(tmp_path):
    """A rebuild fills a new collection; readers on the alias keep getting answers throughout,
    and see the new documents once the alias moved."""
    from index import build_index
    from index.qdrant_store import connect

    write_corpus(tmp_path / "corpus")
    settings = make_settings(tmp_path, "qdrant")
    serving = build_index([settings.corpus_dir], settings, index_dir=settings.index_dir)
    client, _ = connect(settings, settings.index_dir)
    first = {a.alias_name: a.collection_name for a in client.get_aliases().aliases}["contract"]

    write_corpus(tmp_path / "corpus", {"zh/new.txt": "title: 苏州纳米城\n\n苏州工业园区纳米城集聚了六百多家纳米技术企业。"})
    errors, answered, stop = [], [0], threading.Event()

    def reader():
        while not stop.is_set():
            try:
                hits = serving.retrieve("汉堡航空集群", 3, "hybrid")
                assert hits and hits[0].chunk.doc_id == "zh/hamburg.txt"
                answered[0] += 1
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

    t = threading.Thread(target=reader)
    t.start()
    try:
        for _ in range(2):  # two rebuilds: the oldest collection is swept by the second
            build_index([settings.corpus_dir], settings, index_dir=settings.index_dir, embedder=serving.embedder)
    finally:
        stop.set()
        t.join()
    assert not errors, errors[:3]
    assert answered[0] > 0
    live = {a.alias_name: a.collection_name for a in client.get_aliases().aliases}["contract"]
    assert live != first
    names = {c.name for c in client.get_collections().collections}
    assert first not in names and live in names and len([n for n in names if n.startswith("contract-v")]) == 2
    # the serving index reads through the alias: it sees the rebuilt collection without reopening
    assert serving.retrieve("纳米城", 1, "bm25")[0].chunk.doc_id == "zh/new.txt"
    assert serving.stats()["documents"] == 5


def _free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_qdrant_raises_store_unavailable(tmp_path):
    from index import load_or_build, open_index
    from index.errors import IndexError_, StoreUnavailable

    settings = make_settings(tmp_path, "qdrant", qdrant_url=f"http://127.0.0.1:{_free_loopback_port()}",
                             qdrant_timeout=2)
    with pytest.raises(StoreUnavailable, match="unreachable") as info:
        open_index(settings.index_dir, settings)
    assert not isinstance(info.value, IndexError_)
    with pytest.raises(StoreUnavailable):  # not mistaken for a missing index: nothing is rebuilt
        load_or_build(settings)


def test_engine_going_away_after_open_is_reported_and_recovers(built):
    """retrieve() raises StoreUnavailable while the engine does not answer, health() says so,
    and both work again once it answers."""
    from index.errors import StoreUnavailable
    from index.qdrant_store import QdrantStore

    settings, index = built
    if settings.index_backend != "qdrant":
        assert index.health()["ok"]
        return
    store: QdrantStore = index.store
    real = store.client
    dead = type("Dead", (), {"__getattr__": lambda self, name: _raise_connect})()
    store.client = dead
    try:
        with pytest.raises(StoreUnavailable):
            index.retrieve("汉堡航空集群", 3)
        h = index.health()
        assert h["ok"] is False and "unreachable" in h["error"]
    finally:
        store.client = real
    assert index.health()["ok"] and index.retrieve("汉堡航空集群", 1)[0].chunk.doc_id == "zh/hamburg.txt"


def _raise_connect(*args, **kwargs):
    import httpx

    raise httpx.ConnectError("connection refused")
