"""The chat page, the document view, /embed and the widget in headless Chromium, against `python app.py`.

Screenshots go to tests/artifacts/app-*.png.
"""

import json
import time
from urllib.parse import urlparse

import httpx
import pytest
from playwright import sync_api as playwright_api  # a test dependency: missing means fail, not skip

from browser.harness import XSS_DOC_ID, launch_chromium, shared_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

XSS_LITERALS = ["<script>window.__xss=1</script>", '<img src=x onerror="window.__xss=1">']
XSS_QUESTION = "Zorblax 安全测试样本包含哪些标签？"


@pytest.fixture(scope="module")
def server():
    return shared_server("main")


@pytest.fixture(scope="module")
def browser():
    """One Chromium for the module; records every request that leaves the machine."""
    with playwright_api.sync_playwright() as p:
        ctx = launch_chromium(p, viewport={"width": 1280, "height": 900})
        ctx.grant_permissions(["clipboard-read", "clipboard-write"])
        ctx.external = []
        ctx.on("request", lambda r: ctx.external.append(r.url)
               if urlparse(r.url).hostname not in (None, "127.0.0.1", "localhost") else None)
        yield ctx
        ctx.close()


@pytest.fixture
def page(browser, server):
    page = browser.new_page()
    page.set_default_timeout(30_000)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    page.close()
    assert not errors, errors


def open_chat(page, server):
    page.goto(server.url + "/", wait_until="load")
    page.wait_for_selector("#cqa-question textarea")
    page.wait_for_function("document.querySelector('#cqa-status').innerText.includes('Ready')")


def ask_in_chat(page, question):
    """Type a question, send it, wait for the finished answer; returns its locator."""
    answers = page.locator(".cqa-answer")
    before = answers.count()
    page.fill("#cqa-question textarea", question)
    page.click("#cqa-send")
    page.wait_for_function(f"document.querySelectorAll('.cqa-answer').length > {before}")
    return answers.nth(before)


def shot(page, artifacts_dir, name):
    page.screenshot(path=str(artifacts_dir / f"app-{name}.png"))


def test_chinese_question_answer_cards_and_document_view(page, server, artifacts_dir):
    open_chat(page, server)
    answer = ask_in_chat(page, "沙特计划建设多少个医疗集群？")
    text = answer.locator(".cqa-text").inner_text()
    assert "21" in text and "[1]" in text
    card = answer.locator("details.cqa-card").first
    assert not card.evaluate("e => e.open")
    answer.locator("a.cqa-ref").first.click()  # [1] leads to its card and opens it
    page.wait_for_function("e => e.open", arg=card.element_handle())
    mark = card.locator(".cqa-passage mark:not(.cqa-span)")
    quote = mark.inner_text()
    assert mark.is_visible() and quote and quote in card.locator(".cqa-passage").inner_text()
    api = httpx.post(server.url + "/api/ask", json={"question": "沙特计划建设多少个医疗集群？"},
                     headers={"X-API-Key": "test-key"}, timeout=60).json()
    span = api.get("span")
    if span and span["citation"] == 1:  # the exact answer, marked inside its passage
        assert card.locator(".cqa-passage mark.cqa-span").inner_text() == span["text"]
    assert "[1]" in card.locator("summary").inner_text()
    shot(page, artifacts_dir, "chat-zh-desktop")

    href = card.locator("a", has_text="Full document").get_attribute("href")
    assert href.startswith("doc/") and "#passage" in href
    size = page.viewport_size
    # a window shorter than the document, so the quote is below the fold unless the view scrolls to it
    page.set_viewport_size({"width": size["width"], "height": 500})
    page.goto(server.url + "/" + href, wait_until="load")
    doc_mark = page.locator("#passage mark:not(.cqa-span)")
    assert doc_mark.inner_text() == quote
    if span and span["citation"] == 1:
        assert page.locator("#passage mark.cqa-span").inner_text() == span["text"]
    # the view opens at the passage: the marked quote's box lies inside the viewport
    # (getBoundingClientRect is relative to it), wherever in the document the passage is
    view = page.evaluate("""() => { const r = document.querySelector('#passage mark:not(.cqa-span)')
                                                      .getBoundingClientRect();
                                    return {top: r.top, bottom: r.bottom, height: window.innerHeight,
                                            quote_in_document: r.top + window.scrollY}; }""")
    assert view["quote_in_document"] > view["height"], view  # the check below means something
    assert 0 <= view["top"] < view["height"] and view["bottom"] > 0, view
    page.set_viewport_size(size)
    shot(page, artifacts_dir, "doc-view")


def test_english_answer_copy_and_feedback(page, server):
    open_chat(page, server)
    question = "How many members does it's OWL have?"
    answer = ask_in_chat(page, question)
    text = answer.locator(".cqa-text").inner_text()
    assert "According to" in text and "200" in text and "[1]" in text
    answer.locator("a.cqa-copy").click()
    page.wait_for_function("document.querySelector('a.cqa-copy').innerText.includes('Copied')")
    assert page.evaluate("navigator.clipboard.readText()") == text  # the answer only, no card markup

    lines_before = server.feedback_log.read_text().count("\n") if server.feedback_log.exists() else 0
    page.locator('button[aria-label="Like"]').last.click()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = server.feedback_log.read_text().splitlines() if server.feedback_log.exists() else []
        if len(lines) > lines_before:
            break
        time.sleep(0.2)
    record = json.loads(lines[-1])
    assert record["vote"] == "up" and record["question"] == question
    assert record["answer"] and record["citations"] and record["time"]


def test_follow_up_and_new_conversation(page, server):
    open_chat(page, server)
    first = ask_in_chat(page, "沙特计划建设多少个医疗集群？")
    assert "21" in first.inner_text()
    follow = ask_in_chat(page, "那韩国呢？")  # resolved to 韩国计划建设多少个医疗集群？
    assert "韩国" in follow.locator(".cqa-text").inner_text()
    page.click("#cqa-new")
    page.wait_for_function("document.querySelectorAll('.cqa-answer').length === 0")
    assert page.locator(".cqa-q").count() == 0


def test_phone_width_layout(browser, server, artifacts_dir):
    page = browser.new_page()
    page.set_viewport_size({"width": 390, "height": 844})
    try:
        open_chat(page, server)
        answer = ask_in_chat(page, "全球先进制造业集群有哪些发展趋势？")
        answer.locator("a.cqa-ref").first.click()
        page.wait_for_timeout(300)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
        box = page.locator("#cqa-send").bounding_box()
        assert box and box["x"] + box["width"] <= 390
        shot(page, artifacts_dir, "chat-phone-390")
    finally:
        page.close()


def assert_xss_inert(page, container):
    text = container.inner_text()
    for literal in XSS_LITERALS:
        assert literal in text, text[:500]
    assert page.evaluate("typeof window.__xss") == "undefined"


def test_xss_document_is_text_in_chat_and_document_view(page, server, artifacts_dir):
    open_chat(page, server)
    answer = ask_in_chat(page, XSS_QUESTION)
    cards = answer.locator("details.cqa-card")
    xss_card = cards.filter(has_text="Zorblax").first
    xss_card.locator("summary").click()
    assert_xss_inert(page, xss_card.locator(".cqa-passage"))  # all of it inside the passage box
    assert xss_card.locator("mark:not(.cqa-span)").count() == 1  # the quote spans a blank line and stays one <mark>
    shot(page, artifacts_dir, "xss-chat")
    markup_question = '<img src=x onerror="window.__xss=1"> Zorblax 样本是什么？'
    ask_in_chat(page, markup_question)
    assert page.locator(".cqa-q", has_text=markup_question).count() == 1  # the question shown as typed
    assert page.evaluate("typeof window.__xss") == "undefined"
    page.goto(f"{server.url}/doc/{XSS_DOC_ID}", wait_until="load")
    assert_xss_inert(page, page.locator("article"))


def test_widget_on_portal_opens_answers_and_keeps_xss_inert(page, server, artifacts_dir):
    page.goto(server.url + "/web/portal-example.html", wait_until="load")
    page.click("#cqa-widget-button")
    frame = page.frame_locator("#cqa-widget-panel iframe")
    frame.locator("#cqa-q").fill("沙特计划建设多少个医疗集群？")
    frame.locator("#cqa-send").click()
    reply = frame.locator(".msg.bot").last
    reply.locator("details").first.wait_for(state="attached")
    assert "21" in reply.inner_text() and "[1]" in reply.inner_text()
    reply.locator("a.ref").first.click()
    assert reply.locator("details").first.locator("mark:not(.cqa-span)").is_visible()
    panel = page.locator("#cqa-widget-panel").bounding_box()
    assert round(panel["width"]) == 380 and round(panel["height"]) == 600
    shot(page, artifacts_dir, "portal-widget")

    frame.locator("#cqa-q").fill(XSS_QUESTION)
    frame.locator("#cqa-send").click()
    xss_reply = frame.locator(".msg.bot").nth(1)
    xss_reply.locator("details").first.wait_for(state="attached")
    card = xss_reply.locator("details", has_text="Zorblax").first
    card.locator("summary").click()
    widget_frame = page.locator("#cqa-widget-panel iframe").element_handle().content_frame()
    text = card.inner_text()
    assert all(literal in text for literal in XSS_LITERALS), text
    assert widget_frame.evaluate("typeof window.__xss") == "undefined"
    assert page.evaluate("typeof window.__xss") == "undefined"


def test_embed_iframe_380x600_answers_follow_up_and_xss(page, server, artifacts_dir):
    page.goto(server.url + "/web/portal-example.html", wait_until="load")
    frame = page.frame_locator("#cqa-iframe")
    frame.locator("#cqa-q").fill("沙特计划建设多少个医疗集群？")
    frame.locator("#cqa-send").click()
    frame.locator(".msg.bot details").first.wait_for(state="attached")
    frame.locator("#cqa-q").fill("那韩国呢？")
    frame.locator("#cqa-send").click()
    second = frame.locator(".msg.bot").nth(1)
    second.locator("details").first.wait_for(state="attached")
    assert "韩国" in second.inner_text()  # the embed keeps the conversation too
    frame.locator("#cqa-q").fill(XSS_QUESTION)
    frame.locator("#cqa-send").click()
    third = frame.locator(".msg.bot").nth(2)
    third.locator("details").first.wait_for(state="attached")
    card = third.locator("details", has_text="Zorblax").first
    card.locator("summary").click()
    text = card.inner_text()
    assert all(literal in text for literal in XSS_LITERALS), text
    embed = page.locator("#cqa-iframe").element_handle().content_frame()
    assert embed.evaluate("typeof window.__xss") == "undefined"
    assert embed.evaluate("document.documentElement.scrollWidth") <= 380
    page.locator("#cqa-iframe").screenshot(path=str(artifacts_dir / "app-embed-380x600.png"))


def test_nothing_left_the_machine(browser, server):
    page = browser.new_page()
    page.goto(server.url + "/api/docs", wait_until="load")  # FastAPI's default docs would use a CDN
    assert page.get_by_text("POST /api/ask/stream").is_visible()
    page.close()
    assert browser.external == []  # no CDN fonts or scripts, no analytics, no share links


def test_admin_uploads_lists_and_removes_on_the_page(page, server, tmp_path, artifacts_dir):
    doc = tmp_path / "Velmora 集群简报.md"
    doc.write_text("# Velmora 集群\n\nVelmora 集群拥有 64 家企业，专注于海上风电装备。\n", encoding="utf-8")
    open_chat(page, server)
    page.click("#cqa-admin >> text=Documents (admin)")
    admin = page.locator("#cqa-admin")
    admin.locator("input[type=password]").fill("wrong")
    admin.get_by_role("button", name="刷新列表 List documents").click()
    page.wait_for_function("document.querySelector('#cqa-admin').innerText.includes('Wrong admin key')")
    assert "related/" not in admin.inner_text()  # no list without the key

    admin.locator("input[type=password]").fill("test-admin")
    admin.locator("input[type=file][multiple]").set_input_files(str(doc))
    admin.get_by_role("button", name="上传并索引 Upload & index").click()
    page.wait_for_function("document.querySelector('#cqa-admin').innerText.includes('OK Velmora')")
    assert "Velmora_集群简报.md" in admin.inner_text()  # listed, with its chunk count
    shot(page, artifacts_dir, "admin")
    answer = ask_in_chat(page, "Velmora 集群有多少家企业？")
    assert "64" in answer.locator(".cqa-text").inner_text()

    admin.get_by_label("删除文档 Remove document").click()
    page.get_by_role("option", name="Velmora_集群简报.md").click()
    admin.get_by_role("button", name="删除 Remove").click()
    page.wait_for_function("document.querySelector('#cqa-admin').innerText.includes('removed 1')")
    docs = httpx.get(server.url + "/api/documents", headers={"X-API-Key": "test-key"}).json()["documents"]
    assert not [d for d in docs if "Velmora" in d["doc_id"]]


def test_no_server_errors_logged(server):
    assert "Traceback" not in server.log_path.read_text(errors="replace")


def test_embed_marks_the_answer_span_inside_the_quote(page, server):
    """/embed draws the span (docs/CONTRACTS.md) with DOM calls only; a span is injected into
    the streamed answer here so this holds whether or not the engine sends one yet."""
    def add_span(route):
        response = route.fetch()
        blocks = []
        for block in response.text().split("\n\n"):
            if block.startswith("event: answer\n"):
                head, data = block.split("data: ", 1)
                event = json.loads(data)
                c = event["answer"]["citations"][0]
                start = c["text"].find(c["quote"]) + 1
                event["answer"]["span"] = {"text": c["text"][start:start + 4], "citation": 1,
                                           "start": start, "end": start + 4}
                block = head + "data: " + json.dumps(event, ensure_ascii=False)
                page.injected = event["answer"]
            blocks.append(block)
        route.fulfill(response=response, body="\n\n".join(blocks))

    page.route("**/api/ask/stream", add_span)
    page.goto(server.url + "/embed", wait_until="load")
    page.locator("#cqa-q").fill("沙特计划建设多少个医疗集群？")
    page.locator("#cqa-send").click()
    card = page.locator(".msg.bot details").first
    card.wait_for(state="attached")
    span = page.injected["span"]
    nested = card.locator(".passage mark:not(.cqa-span) > mark.cqa-span")
    assert nested.count() == 1 and nested.text_content() == span["text"]
    assert card.locator(".passage").text_content() == page.injected["citations"][0]["text"]  # nothing lost
    href = card.locator("a", has_text="Full document").get_attribute("href")
    assert f"&ss={span['start']}&se={span['end']}" in href
