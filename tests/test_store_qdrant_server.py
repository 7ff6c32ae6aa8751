"""The Qdrant backend against a real Qdrant server or cluster: run only when
CLUSTERQA_QDRANT_URL is set (and CLUSTERQA_QDRANT_API_KEY if it needs one); reported as
skipped otherwise -- no Qdrant server exists on the development machines.

    CLUSTERQA_QDRANT_URL=http://127.0.0.1:6333 .venv/bin/python -m pytest tests/test_store_qdrant_server.py

(tests/netguard lets loopback connections through only: reach a server elsewhere through a
local port, e.g. `ssh -L 6333:qdrant-1:6333 host`, and point the URL at 127.0.0.1.)
"""

from __future__ import annotations

import os

import pytest

from settings import load_settings

URL = os.environ.get("CLUSTERQA_QDRANT_URL", "")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not URL, reason="needs a Qdrant server: set CLUSTERQA_QDRANT_URL")]


@pytest.fixture
def server_settings(tmp_path):
    from test_store_contract import write_corpus

    write_corpus(tmp_path / "corpus")
    collection = f"clusterqa-test-{os.getpid()}"
    settings = load_settings(env={}, corpus_dir=tmp_path / "corpus", index_dir=tmp_path / "index",
                             index_backend="qdrant", qdrant_url=URL, qdrant_collection=collection,
                             qdrant_api_key=os.environ.get("CLUSTERQA_QDRANT_API_KEY", ""),
                             qdrant_shards=int(os.environ.get("CLUSTERQA_QDRANT_SHARDS", "0") or 0),
                             qdrant_replicas=int(os.environ.get("CLUSTERQA_QDRANT_REPLICAS", "0") or 0))
    yield settings
    from index.qdrant_store import connect

    client, _ = connect(settings)
    for a in client.get_aliases().aliases:
        if a.alias_name == collection:
            client.delete_alias(collection)
    for c in client.get_collections().collections:
        if c.name.startswith(collection + "-v"):
            client.delete_collection(c.name)


def test_server_gives_the_default_backends_hits(server_settings, tmp_path):
    from index import build_index
    from test_store_contract import QUERIES, hits_of, same_hits

    faiss_settings = server_settings.replace(index_backend="faiss", index_dir=tmp_path / "faiss")
    reference = build_index([faiss_settings.corpus_dir], faiss_settings, index_dir=faiss_settings.index_dir)
    served = build_index([server_settings.corpus_dir], server_settings, index_dir=server_settings.index_dir,
                         embedder=reference.embedder)
    for query in QUERIES:
        for mode in ("hybrid", "dense", "bm25"):
            same_hits(hits_of(reference, query, mode), hits_of(served, query, mode))


def test_server_add_remove_rebuild_and_reopen(server_settings):
    from index import build_index, open_index

    index = build_index([server_settings.corpus_dir], server_settings, index_dir=server_settings.index_dir)
    new = server_settings.corpus_dir / "zh/new.txt"
    new.write_text("title: 苏州纳米城\n\n苏州工业园区纳米城集聚了六百多家纳米技术企业。", encoding="utf-8")
    assert index.add_paths([new])["added"] == ["zh/new.txt"]
    assert index.retrieve("纳米城", 1, "bm25")[0].chunk.doc_id == "zh/new.txt"
    assert index.remove(["en/chips.txt"]) == 1
    other = open_index(server_settings.index_dir, server_settings)  # another replica
    assert {d.doc_id for d in other.documents()} == {"zh/yongin.txt", "zh/hamburg.txt", "zh/owl.txt", "zh/new.txt"}
    build_index([server_settings.corpus_dir], server_settings, index_dir=server_settings.index_dir,
                embedder=index.embedder)
    assert other.retrieve("汉堡航空集群", 1)[0].chunk.doc_id == "zh/hamburg.txt"
    assert other.stats()["documents"] == 5
