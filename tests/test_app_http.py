"""The JSON API, the document view and the Gradio endpoint, against the real `python app.py` process."""

import json
import subprocess
import sys
import textwrap
import time

import httpx
import pytest

from app import answer_html
from server.html import marked
from browser.harness import XSS_DOC_ID, shared_server

pytestmark = pytest.mark.slow
KEY = {"X-API-Key": "test-key"}


@pytest.fixture(scope="session")
def main_server():
    return shared_server("main")


def while_building(server) -> dict:
    """What the server says before its index is ready (it answers HTTP from the start)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            health = httpx.get(server.url + "/api/health", timeout=2).json()
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    ask = httpx.post(server.url + "/api/ask", json={"question": "集群"})
    return {"health": health, "ask": (ask.status_code, ask.json(), ask.headers.get("retry-after")),
            "page": httpx.get(server.url + "/config").text}


@pytest.fixture(scope="session")
def open_server():
    return shared_server("open", early=while_building)


def test_server_is_up_while_the_index_builds(open_server):
    early = open_server.early
    assert early["health"]["status"] == "building" and "progress" in early["health"]
    status, body, retry_after = early["ask"]
    assert status == 503 and "building" in body["error"] and retry_after
    assert "still building" in early["page"]  # the chat page's status line
    log = open_server.log_path.read_text()
    assert "index embed:" in log and "ready in" in log  # build progress in the log


@pytest.fixture
def api(main_server):
    with httpx.Client(base_url=main_server.url, headers=KEY, timeout=30) as client:
        yield client


def ask(api, question, **extra):
    r = api.post("/api/ask", json={"question": question, **extra})
    assert r.status_code == 200, r.text
    return r.json()


def test_health_reports_ready_with_counts(main_server):
    h = httpx.get(main_server.url + "/api/health").json()  # open without a key
    assert h["status"] == "ready" and h["progress"]["fraction"] == 1.0
    assert h["documents"] == 10 and h["chunks"] >= 10  # 9 bundled + the XSS sample
    assert h["mode"] == "extractive" and h["model"]


def test_ask_chinese_answer_cites_passages(api):
    a = ask(api, "沙特计划建设多少个医疗集群？")
    assert a["answered"] and a["language"] == "zh-Hans" and a["mode"] == "extractive"
    assert "[1]" in a["answer"] and "21" in a["answer"]
    c = a["citations"][0]
    assert c["n"] == 1 and c["quote"] and c["quote"] in c["text"]
    assert set(a["timings_ms"]) >= {"retrieve", "answer", "total"}


def test_ask_english_and_follow_up(api):
    first = ask(api, "How many members does it's OWL have?")
    assert first["language"] == "en" and "According to" in first["answer"]
    assert "200" in first["answer"] and first["citations"] and "200" in first["span"]["text"]
    history = [{"role": "user", "content": first["question"]}, {"role": "assistant", "content": first["answer"]}]
    follow = ask(api, "What about Hamburg Aviation?", history=history)
    assert follow["language"] == "en" and "According to" in follow["answer"]
    assert "Hamburg Aviation" in follow.get("resolved_question", "") and "Hamburg" in follow["answer"]


def test_stream_sends_status_tokens_then_answer(api):
    with api.stream("POST", "/api/ask/stream", json={"question": "沙特计划建设多少个医疗集群？"}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    kinds = [e["type"] for e in events]
    assert kinds[-1] == "answer" and "token" in kinds
    assert "".join(e["text"] for e in events if e["type"] == "token") == events[-1]["answer"]["answer"]


@pytest.mark.parametrize("body, content_type", [
    ('{"question": ""}', "application/json"),                                   # empty question
    ('{"question": "   "}', "application/json"),
    ('{"question": "集群", "history": [{"role": "system", "content": "x"}]}', "application/json"),  # bad role
    ('{"question": "集群", "history": "not a list"}', "application/json"),
    ('{"question": "集群", "top_k": 0}', "application/json"),
    ('{"question": ', "application/json"),                                       # bad JSON
    ("question=hi", "application/x-www-form-urlencoded"),
    ('{"history": []}', "application/json"),                                     # missing field (422 -> 400)
    ('{"question": 42}', "application/json"),
])
def test_bad_requests_get_400_with_error(api, body, content_type):
    r = api.post("/api/ask", content=body, headers={"Content-Type": content_type})
    assert r.status_code == 400, r.text
    assert set(r.json()) == {"error"} and r.json()["error"]


def test_bad_stream_request_is_a_plain_400(api):
    r = api.post("/api/ask/stream", json={"question": ""})
    assert r.status_code == 400 and "error" in r.json()


def test_api_keys(main_server):
    url = main_server.url + "/api/ask"
    body = {"question": "沙特计划建设多少个医疗集群？"}
    assert httpx.post(url, json=body).status_code == 401
    assert httpx.post(url, json=body, headers={"X-API-Key": "wrong"}).status_code == 401
    assert httpx.get(main_server.url + "/api/documents").status_code == 401
    assert httpx.post(url, json=body, headers={"Authorization": "Bearer test-key"}, timeout=30).status_code == 200
    assert httpx.post(url, json=body, headers={"X-Embed-Token": "9999999999.forged"}).status_code == 401


def test_embed_page_token_allows_asking_without_a_key(main_server):
    page = httpx.get(main_server.url + "/embed")
    assert page.status_code == 200
    token = page.text.split('name="cqa-token" content="')[1].split('"')[0]
    r = httpx.post(main_server.url + "/api/ask", json={"question": "沙特计划建设多少个医疗集群？"},
                   headers={"X-Embed-Token": token}, timeout=30)
    assert r.status_code == 200 and r.json()["citations"]
    # the token is for asking only
    assert httpx.get(main_server.url + "/api/documents", headers={"X-Embed-Token": token}).status_code == 401


def test_unknown_document_is_404(api, main_server):
    r = api.get("/api/documents/no/such/doc.txt")
    assert r.status_code == 404 and "error" in r.json()
    assert httpx.get(main_server.url + "/doc/no/such/doc.txt").status_code == 404


def test_documents_list_and_one_document(api):
    docs = api.get("/api/documents").json()["documents"]
    ids = {d["doc_id"]: d for d in docs}
    assert XSS_DOC_ID in ids and all(d["chunks"] >= 1 for d in docs)
    one = api.get(f"/api/documents/{XSS_DOC_ID}").json()
    assert "<script>window.__xss=1</script>" in one["text"]


def test_document_view_script_passage_and_escaping(api, main_server):
    a = ask(api, "全球先進製造業集群有哪些發展趨勢？")  # Traditional in, Traditional out
    assert a["language"] == "zh-Hant"
    c = a["citations"][0]
    qs = c["text"].find(c["quote"])
    r = httpx.get(f"{main_server.url}/doc/{c['doc_id']}",
                  params={"script": "zh-Hant", "start": c["start"], "end": c["end"], "qs": qs, "qe": qs + len(c["quote"])})
    assert r.status_code == 200 and 'id="passage"' in r.text
    assert f"<mark>{c['quote']}</mark>" in r.text  # quote highlighted, in Traditional like the answer
    assert "frame-ancestors" in r.headers["content-security-policy"]
    x = httpx.get(f"{main_server.url}/doc/{XSS_DOC_ID}")
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in x.text and "<script>window" not in x.text
    assert "<img src=x" not in x.text


def test_size_limits_413(api):
    r = api.post("/api/ask", content=json.dumps({"question": "集" * 40_000}), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "error" in r.json()  # body over max_request_bytes (64 KiB)
    r = api.post("/api/ask", json={"question": "集群" * 1500})  # under the body limit, over max_question_chars
    assert r.status_code == 413 and "error" in r.json()

    def chunked():  # no Content-Length: counted while reading
        for _ in range(20):
            yield b" " * 8192
    r = api.post("/api/ask", content=chunked(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413


ADMIN = {"X-Admin-Key": "test-admin", **KEY}


def test_upload_checks_size_type_and_name_then_indexes_and_removes(api, main_server):
    up = "/api/admin/documents"
    big = b"a" * (1024 * 1024 + 10)
    assert api.post(up, files={"file": ("big.txt", big)}, headers=ADMIN).status_code == 413
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    r = api.post(up, files={"file": ("photo.txt", png)}, headers=ADMIN)  # extension lies: content decides
    assert r.status_code == 415 and "error" in r.json()
    r = api.post(up, files={"file": ("notes.txt", b"PK\x03\x04 not really a zip")}, headers=ADMIN)
    assert r.status_code == 415
    assert api.post(up, files={"file": ("a.txt", b"x")}, headers=KEY).status_code == 401  # API key is not admin

    text = "Quarkvale 集群位于示例省，拥有 77 家企业，专注于氢能装备制造。".encode()
    r = api.post(up, files={"file": ("../../../etc/../quarkvale notes.md", text)}, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["file"] == "quarkvale_notes.md"
    stored = main_server.upload_dir / "quarkvale_notes.md"
    assert stored.read_bytes() == text and not list(main_server.home.rglob("*.part"))
    assert [p for p in main_server.home.rglob("quarkvale*")] == [stored]  # nowhere else, e.g. up the tree
    docs = {d["doc_id"]: d for d in api.get("/api/documents").json()["documents"]}
    new = [d for d in docs if "quarkvale" in d]
    assert len(new) == 1 and docs[new[0]]["chunks"] >= 1
    a = ask(api, "Quarkvale 集群有多少家企业？")
    assert "77" in a["answer"] and a["citations"][0]["doc_id"] == new[0]

    r = api.delete(f"{up}/{new[0]}", headers=ADMIN)
    assert r.status_code == 200 and r.json()["removed"] == 1
    assert not stored.exists()  # the uploaded file goes with it
    assert not [d for d in api.get("/api/documents").json()["documents"] if "quarkvale" in d["doc_id"]]
    assert api.delete(f"{up}/{new[0]}", headers=ADMIN).status_code == 404


def test_cors_and_frame_ancestors_follow_allowed_origins(main_server, open_server):
    pre = httpx.options(main_server.url + "/api/ask", headers={
        "Origin": "http://portal.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-api-key"})
    assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "http://portal.example"
    other = httpx.get(main_server.url + "/api/health", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    assert "frame-ancestors 'self' http://portal.example" in httpx.get(main_server.url + "/embed").headers["content-security-policy"]
    csp = httpx.get(open_server.url + "/embed").headers["content-security-policy"]
    assert "frame-ancestors 'self';" in csp or csp.endswith("frame-ancestors 'self'")


def test_links_carry_the_root_path(open_server):
    embed = httpx.get(open_server.url + "/embed").text
    assert 'name="cqa-base" content="/qa/"' in embed and 'src="/qa/web/embed.js"' in embed
    config = httpx.get(open_server.url + "/config").json()
    assert config["root"].endswith("/qa") and "/qa/web/chat.js" in config["head"]
    doc = httpx.get(open_server.url + "/doc/seed/global-advanced-manufacturing-cluster-trends-2025.txt").text
    assert 'href="/qa/web/doc.css"' in doc and 'href="/qa/doc/seed/' in doc


def test_answer_html_escapes_and_has_no_blank_lines():
    # In the chat's Markdown a blank line ends the HTML block, so passages must not contain one.
    a = {"answer": "第一 [1]\n\n第二 [2]", "language": "zh-Hans", "citations": [
        {"n": 1, "doc_id": "a/b.txt", "title": "<b>T</b>", "source": "javascript:alert(1)", "date": "",
         "text": "甲\n\n<script>x</script>乙", "quote": "甲\n\n<script>x</script>", "start": 0, "end": 9}]}
    out = answer_html(a, 3)
    assert "\n" not in out and "<script>" not in out and "<b>T</b>" not in out
    assert 'href="javascript' not in out and "<span>javascript:alert(1)</span>" in out  # shown, not linked
    assert '<mark>甲<br><br>&lt;script&gt;x&lt;/script&gt;</mark>乙' in out
    assert 'href="#cite-3-1"' in out and "[2]" in out and 'href="#cite-3-2"' not in out  # only cited markers link


def test_failing_llm_endpoint_falls_back_with_a_note(open_server):
    assert httpx.get(open_server.url + "/api/health").json()["mode"] == "llm"
    r = httpx.post(open_server.url + "/api/ask", json={"question": "沙特计划建设多少个医疗集群？"}, timeout=60)
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["mode"] == "extractive" and a["note"] and "21" in a["answer"]
    assert '<div class="cqa-note">' in answer_html(a, 0)  # the chat page shows the note


def test_open_server_has_no_admin_and_rate_limits(open_server):
    url = open_server.url
    page = httpx.get(url + "/config").text  # the Gradio page's component tree
    assert "Documents (admin)" not in page
    assert httpx.post(url + "/api/admin/documents", files={"file": ("a.txt", b"hello")}).status_code in (404, 405, 429)
    # a bucket of 5 a minute, partly used by the tests above: all 200 until it is empty
    codes = [httpx.get(url + "/api/documents", headers={"X-API-Key": f"made-up-{i}"}).status_code
             for i in range(6)]
    assert 429 in codes and set(codes[:codes.index(429)]) <= {200}
    r = httpx.get(url + "/api/documents")
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1 and "error" in r.json()
    assert httpx.get(url + "/api/health").status_code == 200  # monitoring is never throttled


def test_main_page_offers_admin_only_when_configured(main_server):
    assert "Documents (admin)" in httpx.get(main_server.url + "/config").text


def test_gradio_client_from_another_process(main_server):
    code = textwrap.dedent(f"""
        import json
        from gradio_client import Client
        client = Client({main_server.url!r}, verbose=False)
        print(json.dumps(client.predict("沙特计划建设多少个医疗集群？", api_name="/ask"), ensure_ascii=False))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    assert "21" in answer["answer"] and answer["citations"][0]["quote"]


def test_no_server_errors_logged(main_server):
    # every bad request above must have been a 4xx, never a traceback
    assert "Traceback" not in main_server.log_path.read_text(errors="replace")


def test_answer_span_is_marked_inside_the_quote():
    text = "甲乙。沙特计划建设21个医疗集群。丙丁"
    quote = "沙特计划建设21个医疗集群。"
    start = text.index("21")
    a = {"answer": "答：21个 [1]", "language": "zh-Hans", "answered": True,
         "span": {"text": "21个", "citation": 1, "start": start, "end": start + 3},
         "citations": [{"n": 1, "doc_id": "d.txt", "title": "T", "source": "", "date": "", "text": text,
                        "quote": quote, "start": 100, "end": 100 + len(text)}]}
    out = answer_html(a, 0)
    assert '甲乙。<mark>沙特计划建设<mark class="cqa-span">21个</mark>医疗集群。</mark>丙丁' in out
    assert f"ss={start}&amp;se={start + 3}" in out  # the document view gets the span too
    assert "cqa-span" not in answer_html({**a, "span": None}, 0)  # refused / not sent yet: no span
    assert "cqa-span" not in answer_html({k: v for k, v in a.items() if k != "span"}, 0)
    # a span that runs past the quote still nests: the tags are balanced everywhere
    both = marked(text, (3, 10), (8, 14))
    assert both == '甲乙。<mark>沙特计划建<mark class="cqa-span">设2</mark></mark><mark class="cqa-span">1个医疗</mark>集群。丙丁'


def test_document_view_marks_the_span(api, main_server):
    a = ask(api, "沙特计划建设多少个医疗集群？")
    c = a["citations"][0]
    qs = c["text"].find(c["quote"])
    span = a.get("span") or {"start": qs + 1, "end": qs + 3}  # the engine's span, or one made up here
    if a.get("span"):
        cited = a["citations"][span["citation"] - 1]
        assert cited["text"][span["start"]:span["end"]] == span["text"]  # offsets index the rendered passage
        c = cited
        qs = c["text"].find(c["quote"])
    r = httpx.get(f"{main_server.url}/doc/{c['doc_id']}", params={
        "start": c["start"], "end": c["end"], "qs": qs, "qe": qs + len(c["quote"]),
        "ss": span["start"], "se": span["end"]})
    assert r.status_code == 200
    import re

    marked_text = "".join(re.findall(r'<mark class="cqa-span">(.*?)</mark>', r.text))
    assert marked_text == c["text"][span["start"]:span["end"]]
    assert httpx.get(f"{main_server.url}/doc/{c['doc_id']}", params={"ss": -1}).status_code == 400


def test_openapi_describes_the_answer(main_server):
    spec = httpx.get(main_server.url + "/api/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert {"Answer", "Citation", "Span", "Health", "Document", "Error"} <= set(schemas)
    assert "span" in schemas["Answer"]["properties"] and "citations" in schemas["Answer"]["required"]
    ok = spec["paths"]["/api/ask"]["post"]["responses"]
    assert ok["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/Answer")
    assert ok["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
