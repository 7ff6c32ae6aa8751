"""The server over the Qdrant backend: an engine that does not answer makes /api/health say
"degraded" and questions get 503 with {"error"} (never a 500); serving recovers by itself.

In process (FastAPI's TestClient, no sockets): the real Service, index and chat engine.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from settings import load_settings

pytestmark = pytest.mark.slow

DOCS = {
    "zh/hamburg.txt": "title: 汉堡航空集群\n\n汉堡航空集群聚集了空中客车、汉莎技术公司以及三百多家中小型供应商，是全球第三大民用航空制造基地。",
    "zh/yongin.txt": "title: 龙仁半导体集群\n\n韩国政府宣布，将投资300万亿韩元在京畿道龙仁地区打造世界最大规模的尖端系统半导体集群。",
}


def _free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _client(settings):
    from fastapi.testclient import TestClient

    from server.factory import create_app
    from server.service import Service

    service = Service(settings, warm_up=False)
    service.start()
    return service, TestClient(create_app(settings, service), raise_server_exceptions=False)


def _wait(predicate, timeout=240.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def _corpus(tmp_path):
    for rel, text in DOCS.items():
        p = tmp_path / "corpus" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    return tmp_path / "corpus"


def test_unreachable_qdrant_gives_degraded_health_and_503s(tmp_path):
    settings = load_settings(env={}, corpus_dir=_corpus(tmp_path), index_dir=tmp_path / "index",
                             index_backend="qdrant", qdrant_url=f"http://127.0.0.1:{_free_loopback_port()}",
                             qdrant_timeout=2, feedback_log=tmp_path / "fb.jsonl", upload_dir=tmp_path / "up")
    service, client = _client(settings)
    assert _wait(lambda: service.status == "degraded"), service.status
    health = client.get("/api/health")
    assert health.status_code == 200
    assert health.json()["status"] == "degraded" and "unreachable" in health.json()["error"]
    for _ in range(3):
        r = client.post("/api/ask", json={"question": "汉堡航空集群有哪些企业？"})
        assert r.status_code == 503 and r.json()["error"] and r.headers.get("Retry-After")
    r = client.post("/v1/chat/completions", json={"model": "clusterqa",
                                                  "messages": [{"role": "user", "content": "汉堡航空集群？"}]})
    assert r.status_code == 503


def test_engine_failing_after_start_is_degraded_then_recovers(tmp_path):
    import httpx

    from index import build_index

    settings = load_settings(env={}, corpus_dir=_corpus(tmp_path), index_dir=tmp_path / "index",
                             index_backend="qdrant", qdrant_collection="served",
                             feedback_log=tmp_path / "fb.jsonl", upload_dir=tmp_path / "up")
    build_index([settings.corpus_dir], settings, index_dir=settings.index_dir)
    service, client = _client(settings)
    assert _wait(lambda: service.status in ("ready", "error")), service.status
    assert service.status == "ready", service.error
    ask = {"question": "汉堡航空集群有哪些企业？"}
    assert client.post("/api/ask", json=ask).status_code == 200
    assert client.get("/api/health").json()["status"] == "ready"

    store = service.index.store
    real = store.client

    def refuse(*args, **kwargs):
        raise httpx.ConnectError("connection refused")

    store.client = type("Down", (), {"__getattr__": lambda self, name: refuse})()
    try:
        health = client.get("/api/health").json()
        assert health["status"] == "degraded" and health["index"]["ok"] is False
        r = client.post("/api/ask", json=ask)
        assert r.status_code == 503 and "unavailable" in r.json()["error"]
    finally:
        store.client = real
    health = client.get("/api/health").json()
    assert health["status"] == "ready" and health["documents"] == 2
    r = client.post("/api/ask", json=ask)
    assert r.status_code == 200 and r.json()["citations"]

    # A rebuild (new collection, then the alias switch) while questions keep coming: all answered.
    (settings.corpus_dir / "zh/new.txt").write_text("title: 苏州纳米城\n\n苏州工业园区纳米城集聚了六百多家纳米技术企业。",
                                                   encoding="utf-8")
    done, statuses = threading.Event(), []

    def rebuild():
        try:
            build_index([settings.corpus_dir], settings, index_dir=settings.index_dir, embedder=service.index.embedder)
        finally:
            done.set()

    t = threading.Thread(target=rebuild)
    t.start()
    while not done.is_set() or not statuses:
        statuses.append(client.post("/api/ask", json=ask).status_code)
    t.join()
    assert set(statuses) == {200}, statuses
    assert client.get("/api/health").json()["documents"] == 3
    hits = client.post("/api/ask", json={"question": "苏州纳米城有多少家纳米技术企业？"}).json()["citations"]
    assert any(c["doc_id"] == "zh/new.txt" for c in hits)
