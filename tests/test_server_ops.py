"""Running ClusterQA as a service (issue 29): Prometheus /metrics, request ids, the JSON access
log, /livez and /readyz, and a graceful SIGTERM — against the real `python app.py` on loopback
(the network guard of conftest.py blocks everything else), plus quick in-process checks."""

from __future__ import annotations

import hashlib
import json
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from browser.harness import make_corpus, start_server

KEY = "test-key"
BURST_KEY = "burst-key"  # its own rate-limit bucket, spent on purpose
RATE = 40  # requests a minute per key on the ops server
ANSWERABLE = "沙特计划建设多少个医疗集群？"
# Off-topic and refused (answered=false) by today's engine; the Chinese ones ("你好", "今天天气怎么样？",
# "红烧肉怎么做？") are answered today (2026-12-06), so an English recipe it is.
OFF_TOPIC = "How do I bake a chocolate cake?"
HEX32 = set("0123456789abcdef")


# --- quick, in-process (no index: the service is never started) -----------------------------

def _client(**overrides):
    from fastapi.testclient import TestClient

    import settings as settings_mod
    from server.factory import create_app
    from server.service import Service

    s = settings_mod.load_settings(env={}, **overrides)
    return TestClient(create_app(s, Service(s)), raise_server_exceptions=False)


def test_metrics_key_and_switch():
    c = _client(metrics_key="s3cret")
    assert c.get("/metrics").status_code == 401
    assert c.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.get("/metrics?key=wrong").status_code == 401
    r = c.get("/metrics", headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert c.get("/metrics?key=s3cret").status_code == 200
    assert "clusterqa_status" in {f.name for f in text_string_to_metric_families(r.text)}
    off = _client(metrics_enabled=False)
    r = off.get("/metrics")
    assert r.status_code == 404 and "clusterqa_" not in r.text
    assert off.get("/livez").status_code == 200  # probes and request ids work without metrics
    assert off.get("/livez", headers={"X-Request-ID": "abc"}).headers["x-request-id"] == "abc"


def test_probes_while_building_and_request_id_rules():
    c = _client()
    assert c.get("/livez").json() == {"status": "alive"}
    r = c.get("/readyz")
    assert r.status_code == 503 and r.json()["service"] == "building" and r.headers["retry-after"]
    assert c.get("/api/health").json()["status"] == "building"  # /api/health as before
    ok = "req-42.A_b:c/d=e+f"
    assert c.get("/livez", headers={"X-Request-ID": ok}).headers["x-request-id"] == ok
    for bad in ("x" * 129, "", "   ", "é".encode("utf-8"), b"\x80\xff"):
        rid = c.get("/livez", headers={"X-Request-ID": bad}).headers["x-request-id"]
        assert len(rid) == 32 and set(rid) <= HEX32, (bad, rid)
    assert len(c.get("/livez", headers={"X-Request-ID": "y" * 128}).headers["x-request-id"]) == 128


def test_clean_request_id_and_label_words():
    from server.observability import clean_request_id, label_word, llm_reason

    for bad in ("a\r\nSet-Cookie: x=1", "a\nb", "\x00", "tab\there", "x" * 200, "中文"):
        rid = clean_request_id(bad)
        assert len(rid) == 32 and set(rid) <= HEX32
    assert clean_request_id(" spaced id ") == "spaced id"
    assert label_word("factoid") == "factoid" and label_word(None) == "unknown"
    assert label_word("沙特计划建设多少个医疗集群") == "other" and label_word("x" * 40) == "other"
    assert llm_reason("The generative model was unavailable (timeout); this is the extractive answer.") == "timeout"
    assert llm_reason("HTTP 503") == "http_5xx" and llm_reason("connection failed") == "connection_failed"


def test_answer_metrics_modes_fallback_and_llm_probe():
    """The LLM outcomes, without an LLM: answers as the engine reports them, fed to the
    observed engine of a service that has an LLM configured."""
    import settings as settings_mod
    from server.observability import Metrics, ObservedEngine
    from server.service import Service

    s = settings_mod.load_settings(env={}, llm_base_url="http://127.0.0.1:9/v1", llm_model="m")
    service = Service(s)
    service.metrics = metrics = Metrics(service, s)

    class Answer:
        def __init__(self, d):
            self.d = d

        def to_dict(self):
            return self.d

    base = {"answered": True, "language": "en", "timings_ms": {"retrieve": 5, "read": 20, "answer": 60, "total": 70}}
    answers = iter([{**base, "mode": "llm", "kind": "factoid"},
                    {**base, "mode": "extractive", "note": "The generative model was unavailable (timeout); this is "
                                                          "the extractive answer."},
                    {**base, "answered": False, "mode": "extractive", "language": "zh-Hant", "kind": "今天天气"}])

    class Engine:
        def ask(self, question, **kw):
            return Answer(next(answers))

    engine = ObservedEngine(Engine(), service)
    for _ in range(3):
        engine.ask("q")
    metrics.llm_probe({"status": "down", "error": "connection failed"})
    metrics.llm_probe({"status": "up"})
    got = lambda name, **labels: metrics.registry.get_sample_value(name, labels) or 0.0
    assert got("clusterqa_answers_total", kind="factoid", language="en", outcome="answered", mode="llm") == 1
    assert got("clusterqa_answers_total", kind="unknown", language="en", outcome="answered", mode="fallback") == 1
    assert got("clusterqa_answers_total", kind="other", language="zh-Hant", outcome="refused", mode="extractive") == 1
    assert got("clusterqa_llm_errors_total", reason="timeout", source="answer") == 1
    assert got("clusterqa_llm_errors_total", reason="connection_failed", source="probe") == 1
    assert got("clusterqa_answer_stage_seconds_count", stage="generate") == 1
    assert got("clusterqa_answer_stage_seconds_count", stage="compose") == 2
    assert got("clusterqa_answer_stage_seconds_sum", stage="generate") == pytest.approx(0.040)


def test_json_log_lines_carry_the_request_id():
    import io
    import logging

    import settings as settings_mod
    from server.observability import _request_id, configure_logging

    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    buf = io.StringIO()
    try:
        configure_logging(settings_mod.load_settings(env={}, log_format="json"), stream=buf)
        token = _request_id.set("rid-1")
        try:
            logging.getLogger("clusterqa.test").info("inside %s", "a request")
        finally:
            _request_id.reset(token)
        logging.getLogger("clusterqa.test").warning("outside")
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert lines[0]["request_id"] == "rid-1" and lines[0]["msg"] == "inside a request"
    assert lines[1]["request_id"] == "-" and lines[1]["level"] == "WARNING"
    with pytest.raises(ValueError):
        configure_logging(settings_mod.load_settings(env={}, log_format="xml"))


def test_deploy_scrape_config_matches_the_compose_file():
    """Not run here (no Docker engine): the configs are at least consistent with each other."""
    import yaml

    deploy = Path(__file__).resolve().parents[1] / "deploy"
    compose = yaml.safe_load((deploy / "docker-compose.yml").read_text(encoding="utf-8"))
    prom = yaml.safe_load((deploy / "prometheus.yml").read_text(encoding="utf-8"))
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "clusterqa")
    assert job["metrics_path"] == "/metrics"
    targets = {t for c in job["static_configs"] for t in c["targets"]}
    replicas = {name for name, svc in compose["services"].items() if svc.get("image") == "clusterqa:latest"
                and name != "indexer"}
    assert targets == {f"{name}:{compose['services'][name]['environment']['CLUSTERQA_PORT']}" for name in replicas}
    service = compose["services"]["prometheus"]
    assert any(v.startswith("./prometheus.yml:") for v in service["volumes"])
    for name in replicas:
        grace = float(compose["services"][name]["environment"]["CLUSTERQA_SHUTDOWN_GRACE_S"])
        assert int(compose["services"][name]["stop_grace_period"].rstrip("s")) > grace
    assert "return 404" in (deploy / "nginx.conf").read_text()  # /metrics is not public


# --- the real server ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ops(tmp_path_factory):
    home = tmp_path_factory.mktemp("ops")
    server = start_server("ops", home=home / "run", corpus=make_corpus(home), index_dir=home / "index",
                          api_keys=[KEY, BURST_KEY], rate_limit_per_minute=RATE, log_format="json")
    server.corpus, server.index_dir = home / "corpus", home / "index"
    deadline = time.monotonic() + 300  # /readyz waits for the warm-up too
    while httpx.get(server.url + "/readyz", timeout=5).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    yield server
    server.stop()


def scrape(server) -> dict:
    """{(name, frozenset(labels)): value} of every sample."""
    r = httpx.get(server.url + "/metrics", timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def total(samples: dict, name: str, **labels) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def log_lines(server) -> list[dict]:
    out = []
    for line in server.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


@pytest.mark.slow
def test_probes_when_ready(ops):
    assert httpx.get(ops.url + "/livez").status_code == 200
    r = httpx.get(ops.url + "/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ready", "service": "ready", "warm": True}


@pytest.mark.slow
def test_metrics_move_after_asked_refused_error_and_rate_limited(ops):
    api = httpx.Client(base_url=ops.url, headers={"X-API-Key": KEY}, timeout=120)
    before = scrape(ops)
    asked = api.post("/api/ask", json={"question": ANSWERABLE}).json()
    refused = api.post("/api/ask", json={"question": OFF_TOPIC}).json()
    assert asked["answered"] and not refused["answered"], refused
    assert api.post("/api/ask", json={"question": "   "}).status_code == 400
    statuses = [httpx.post(ops.url + "/api/ask", content=b"{", headers={"X-API-Key": BURST_KEY}).status_code
                for _ in range(RATE + 20)]  # the bucket refills while they go: 40 a minute
    assert statuses.count(429) >= 3 and set(statuses) <= {400, 429}
    after = scrape(ops)

    def delta(name, **labels):
        return total(after, name, **labels) - total(before, name, **labels)

    assert delta("clusterqa_http_requests_total", route="/api/ask", method="POST", status="200") == 2
    assert delta("clusterqa_http_requests_total", route="/api/ask", status="400") == 1 + statuses.count(400)
    assert delta("clusterqa_http_requests_total", route="/api/ask", status="429") == statuses.count(429)
    assert delta("clusterqa_rate_limited_total", route="/api/ask") == statuses.count(429)
    assert delta("clusterqa_http_request_duration_seconds_count", route="/api/ask") == 3 + len(statuses)
    assert delta("clusterqa_http_request_duration_seconds_bucket", route="/api/ask", le="+Inf") == 3 + len(statuses)
    kind = asked.get("kind", "unknown")
    assert delta("clusterqa_answers_total", outcome="answered", language="zh-Hans", mode="extractive", kind=kind) == 1
    assert delta("clusterqa_answers_total", outcome="refused", language="en") == 1
    assert delta("clusterqa_answers_total") == 2  # the 400 and the 429s are no answers
    for stage in ("retrieve", "read", "compose", "total"):
        assert delta("clusterqa_answer_stage_seconds_count", stage=stage) == 2, stage
    assert delta("clusterqa_reader_forwards_total") >= 1
    assert delta("clusterqa_reader_windows_per_forward_sum") >= delta("clusterqa_reader_forwards_total")
    assert total(after, "clusterqa_index_documents") == 10 and total(after, "clusterqa_index_chunks") >= 10
    assert total(after, "clusterqa_status", status="ready") == 1 and total(after, "clusterqa_warm") == 1
    assert total(after, "clusterqa_index_build_progress") == 1.0
    assert total(after, "process_resident_memory_bytes") > 0 and total(after, "process_cpu_seconds_total") > 0
    assert total(after, "clusterqa_http_requests_in_flight") == 1  # the scrape itself

    # bounded labels: no question text, no document ids, short values only
    values = {v for (_, ls) in after for _, v in ls}
    for v in values:
        assert len(v) <= 64 and "沙特" not in v and "chocolate" not in v and ".txt" not in v, v
    routes = {dict(ls).get("route") for (n, ls) in after if n == "clusterqa_http_requests_total"}
    assert all(r == "unmatched" or r.startswith("/") for r in routes), routes


@pytest.mark.slow
def test_request_ids_round_trip_and_reach_the_json_log(ops):
    h = {"X-API-Key": KEY}
    seen = {}
    with httpx.Client(base_url=ops.url, timeout=120) as http:
        r = http.post("/api/ask", json={"question": ANSWERABLE}, headers={**h, "X-Request-ID": "rid-ask-1"})
        seen["rid-ask-1"] = r.headers["x-request-id"]
        with http.stream("POST", "/api/ask/stream", json={"question": ANSWERABLE},
                         headers={**h, "X-Request-ID": "rid-sse-1"}) as s:
            seen["rid-sse-1"] = s.headers["x-request-id"]
            events = [line for line in s.iter_lines() if line.startswith("data: ")]
        assert json.loads(events[-1][6:])["type"] == "answer"
        chat = {"model": "clusterqa", "messages": [{"role": "user", "content": ANSWERABLE}]}
        r = http.post("/v1/chat/completions", json=chat, headers={"Authorization": f"Bearer {KEY}",
                                                                   "X-Request-ID": "rid-v1-1"})
        assert r.status_code == 200
        seen["rid-v1-1"] = r.headers["x-request-id"]
        with http.stream("POST", "/v1/chat/completions", json={**chat, "stream": True},
                         headers={"Authorization": f"Bearer {KEY}", "X-Request-ID": "rid-v1-stream"}) as s:
            seen["rid-v1-stream"] = s.headers["x-request-id"]
            assert "data: [DONE]" in list(s.iter_lines())
        r = http.post("/api/ask", json={"question": ""}, headers={**h, "X-Request-ID": "rid-400"})
        assert r.status_code == 400
        seen["rid-400"] = r.headers["x-request-id"]
        r = http.post("/api/ask", json={"question": "x"}, headers={"X-Request-ID": "rid-401"})
        assert r.status_code == 401
        seen["rid-401"] = r.headers["x-request-id"]
        rpc = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
               "params": {"name": "ask", "arguments": {"question": ANSWERABLE}}}
        r = http.post("/mcp", json=rpc, headers={**h, "X-Request-ID": "rid-mcp-1",
                                                 "Accept": "application/json, text/event-stream"})
        assert r.status_code == 200
        seen["rid-mcp-1"] = r.headers["x-request-id"]
        r = http.get("/api/health")
        assert len(r.headers["x-request-id"]) == 32  # generated when none is sent
    assert seen == {k: k for k in seen}

    time.sleep(0.5)  # the access line is written as the response ends
    lines = log_lines(ops)
    access = {e["request_id"]: e for e in lines if e.get("logger") == "clusterqa.access"}
    for rid in seen:
        assert rid in access, rid
        assert access[rid]["id"] == rid and isinstance(access[rid]["duration_ms"], float)
    a = access["rid-ask-1"]
    assert (a["route"], a["status"], a["answered"], a["mode"], a["language"]) == \
        ("/api/ask", 200, True, "extractive", "zh-Hans") and a["kind"]
    assert access["rid-sse-1"]["answered"] is True and access["rid-sse-1"]["route"] == "/api/ask/stream"
    assert access["rid-v1-stream"]["answered"] is True and access["rid-v1-1"]["route"] == "/v1/chat/completions"
    assert access["rid-mcp-1"]["route"] == "/mcp" and access["rid-mcp-1"]["answered"] is True
    assert (access["rid-400"]["status"], access["rid-400"]["answered"]) == (400, None)
    assert access["rid-401"]["status"] == 401
    # questions stay out of the log (log_questions is off) and every line has a request_id
    text = ops.log_path.read_text(encoding="utf-8", errors="replace")
    assert ANSWERABLE not in text and OFF_TOPIC not in text
    assert all("request_id" in e for e in lines)


def _raw_request(url: str, head: bytes) -> bytes:
    host, port = url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n\r\n")[0]


@pytest.mark.slow
def test_odd_request_ids_on_the_wire_no_header_injection(ops):
    """CRLF, bare CR or LF, NUL, binary and very long ids, sent raw: never a 5xx, never an
    injected header, the id sent back is clean."""
    for value in (b"abc\r\nInjected: yes", b"abc\rInjected: yes", b"abc\nInjected: yes", b"a\x00b",
                  bytes(range(0x80, 0x100)), b"\x01\x02\x7f", b"z" * 20000, "集群".encode()):
        head = (b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-Request-ID: " + value +
                b"\r\n\r\n")
        response = _raw_request(ops.url, head)
        status_line, *headers = response.split(b"\r\n")
        status = int(status_line.split()[1])
        assert status < 500, (value[:40], response[:200])
        names = [h.split(b":", 1)[0].lower() for h in headers]
        assert b"injected" not in names, response
        for h in headers:
            if h.lower().startswith(b"x-request-id:"):
                rid = h.split(b":", 1)[1].strip()
                assert len(rid) <= 128 and all(0x20 <= b < 0x7f for b in rid), rid
                if value.startswith(b"abc\r\n"):
                    assert rid == b"abc"  # the CRLF ended the header: the id is "abc", Injected a request header
    assert httpx.get(ops.url + "/livez").status_code == 200


# --- SIGTERM --------------------------------------------------------------------------------

def _hashes(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_sigterm_lets_streams_finish_and_exits_0(ops, tmp_path):
    """A second server on the ops server's index (loaded, not rebuilt): SIGTERM while an SSE
    stream and a /v1 stream are running; both end complete, the process exits 0 within the
    grace, the index files are byte for byte the same."""
    grace = 20
    before = _hashes(ops.index_dir)
    server = start_server("sigterm", home=tmp_path / "run", corpus=ops.corpus, index_dir=ops.index_dir,
                          api_keys=[KEY], rate_limit_per_minute=0, log_format="json", shutdown_grace_s=grace)
    results: dict = {}
    started = threading.Barrier(3)

    def sse():
        with httpx.stream("POST", server.url + "/api/ask/stream", json={"question": ANSWERABLE},
                          headers={"X-API-Key": KEY}, timeout=120) as r:
            lines = r.iter_lines()
            first = next(lines)
            started.wait()
            results["sse"] = [first] + list(lines)

    def v1():
        body = {"model": "clusterqa", "stream": True, "messages": [{"role": "user", "content": "How many members does it's OWL have?"}]}
        with httpx.stream("POST", server.url + "/v1/chat/completions", json=body,
                          headers={"Authorization": f"Bearer {KEY}"}, timeout=120) as r:
            lines = r.iter_lines()
            first = next(lines)
            started.wait()
            results["v1"] = [first] + list(lines)

    def load():  # keeps the engine busy, so the streams are still running when SIGTERM comes
        try:
            results.setdefault("load", []).append(httpx.post(
                server.url + "/api/ask", json={"question": "欧盟如何推动集群发展？"}, headers={"X-API-Key": KEY},
                timeout=120).status_code)
        except httpx.HTTPError as exc:  # sent after the SIGTERM: refused, that is fine
            results.setdefault("load", []).append(type(exc).__name__)

    try:
        threads = [threading.Thread(target=f) for f in (load, load, load, sse, v1)]
        for t in threads:
            t.start()
        started.wait(timeout=120)
        t0 = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises(httpx.HTTPError):  # no new connections once it drains
            httpx.get(server.url + "/livez", timeout=2)
        code = server.proc.wait(grace + 15)
        took = time.monotonic() - t0
        for t in threads:
            t.join(30)
    finally:
        server.stop()
    assert code == 0, server.log_tail()
    assert took <= grace + 10, took
    sse_data = [json.loads(line[6:]) for line in results["sse"] if line.startswith("data: ")]
    assert sse_data[-1]["type"] == "answer" and sse_data[-1]["answer"]["answer"]  # complete, parsed
    v1_data = [line[6:] for line in results["v1"] if line.startswith("data: ")]
    assert v1_data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in v1_data[:-1]]  # every chunk is whole JSON
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and "clusterqa" in chunks[-1]
    assert _hashes(ops.index_dir) == before
    log = server.log_path.read_text(errors="replace")
    assert "SIGTERM" in log and "Traceback" not in log
    assert "Waiting for connections to close" in log  # it did drain in-flight requests
    assert all(x == 200 for x in results["load"] if isinstance(x, int))


@pytest.mark.slow
def test_sigterm_during_an_index_update_leaves_the_previous_index_intact(ops, tmp_path):
    """SIGTERM while the server is embedding a new document into a copy of the ops index: exit 0
    within the grace, every file of the previous index byte for byte the same (the new version
    was never made live)."""
    import shutil

    index_dir, corpus = tmp_path / "index", tmp_path / "corpus"
    shutil.copytree(ops.index_dir, index_dir)
    shutil.copytree(ops.corpus, corpus)
    paragraph = "先进制造业集群的测试段落，第{n}段：集群协同创新、产业链供应链韧性与区域合作。"
    (corpus / "big-update.txt").write_text(
        "\n\n".join(paragraph.format(n=n) * 6 for n in range(1500)), encoding="utf-8")
    before = _hashes(index_dir)
    server = start_server("sigterm-build", home=tmp_path / "run", corpus=corpus, index_dir=index_dir, wait=False,
                          log_format="json", shutdown_grace_s=5)
    try:
        deadline, health = time.monotonic() + 240, {}
        while time.monotonic() < deadline:
            try:
                health = httpx.get(server.url + "/api/health", timeout=5).json()
            except httpx.HTTPError:
                health = {}
            p = health.get("progress", {})
            if health.get("status") == "building" and p.get("stage") == "embed" and 0 < p.get("done", 0) < p["total"]:
                break
            assert health.get("status") != "ready", "the update finished before the SIGTERM: make it bigger"
            time.sleep(0.2)
        assert httpx.get(server.url + "/readyz").status_code == 503  # not ready while building
        t0 = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        code = server.proc.wait(30)
        took = time.monotonic() - t0
    finally:
        server.stop()
    assert code == 0, server.log_tail()
    assert took < 5 + 10, took
    after = _hashes(index_dir)
    assert {k: after.get(k) for k in before} == before  # nothing of the live index changed
    log = server.log_path.read_text(errors="replace")
    assert "abandoned" in log and "Traceback" not in log


def test_gradio_is_imported_without_its_stub_writer():
    """server/gradio_import.py: Gradio's import-time .pyi writer is off (2.5 s of cold start)
    and the page's components still build."""
    import subprocess
    import sys

    code = ("import server.gradio_import as g; g.install(); import gradio as gr, gradio.component_meta as m; "
            "assert m.create_or_modify_pyi('x', 'y', []) is None; "
            "b = gr.Blocks(); b.__enter__(); gr.Chatbot(); gr.Textbox(); b.__exit__(None, None, None); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parent.parent,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]
