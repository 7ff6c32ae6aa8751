"""LLM mode against a real llama.cpp server (llama-server + SmolLM2-135M on loopback).

The model is too small to answer, so these tests check the protocol and the faults: the
streamed and whole answers arrive, follow-ups are condensed, the prompt always fits the
server's context, and a refused key, a server killed mid-stream, a timeout or an endpoint
that is down all end in the extractive answer with a note, never an error or a hang.
Content and citation checks stay on the fake server (test_chat_llm.py).
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from chat import ChatEngine
from chat.llm import LLMAnswerer
from llama_server import ALIAS, free_port, start_llama_server

pytestmark = pytest.mark.slow
QUESTION = "沙特计划建设多少个医疗集群？"
HISTORY = [{"role": "user", "content": "韩国打造了全球最大的什么集群？"},
           {"role": "assistant", "content": "根据文档：韩国打造全球最大半导体集群。[1]"}]
FALLBACK = "不可用"  # the Chinese note: 生成式模型不可用（reason），以下为摘录式回答。


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    server = start_llama_server(tmp_path_factory.mktemp("llama"), n_ctx=2048)
    yield server
    server.kill()


@pytest.fixture(scope="module")
def keyed_llama(tmp_path_factory):
    server = start_llama_server(tmp_path_factory.mktemp("llama-keyed"), n_ctx=2048, api_key="sesame")
    yield server
    server.kill()


class Recorder(LLMAnswerer):
    """The real answerer, remembering what it sent and what came back."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sent_counts: list[int] = []
        self.condensed: list[str] = []

    def stream_answer(self, question, passages, language, sent=None):
        sent = [] if sent is None else sent
        yield from super().stream_answer(question, passages, language, sent=sent)
        self.sent_counts.append(sent[0])

    def condense(self, question, history):
        reply = super().condense(question, history)
        self.condensed.append(reply)
        return reply


def engine_for(index, settings, server, api_key="", timeout=180.0, max_tokens=48, **kw):
    llm = Recorder(server.base_url, ALIAS, api_key=api_key, timeout=timeout, max_tokens=max_tokens, **kw)
    settings = settings.replace(llm_base_url=server.base_url, llm_model=ALIAS, llm_timeout=timeout)
    return ChatEngine(index, settings, llm=llm), llm


def test_whole_answer(corpus_index, test_settings, llama):
    engine, llm = engine_for(corpus_index, test_settings, llama)
    a = engine.ask(QUESTION)
    assert a.mode == "llm" and not (a.note and FALLBACK in a.note), a.note
    assert a.answer and a.citations  # answered with citations, or refused with the nearest passages
    assert llm.probe() == {"status": "up", "n_ctx": 2048}


def test_streamed_answer(corpus_index, test_settings, llama):
    engine, _ = engine_for(corpus_index, test_settings, llama)
    events = list(engine.stream("What does the EU Net-Zero Industry Act aim for?"))
    tokens = [e["text"] for e in events if e["type"] == "token"]
    answer = events[-1]["answer"]
    assert events[-1]["type"] == "answer" and answer["mode"] == "llm", answer.get("note")
    assert len(tokens) >= 3 and "".join(tokens).strip()  # piece by piece, as the server streamed them


def test_follow_up_is_condensed_by_the_server(corpus_index, test_settings, llama):
    engine, llm = engine_for(corpus_index, test_settings, llama)
    a = engine.ask("那沙特呢？", history=HISTORY)
    assert llm.condensed and llm.condensed[0].strip()  # the server's standalone question
    assert a.mode == "llm" and a.resolved_question
    if llm.condensed[0].strip() != "那沙特呢？":
        assert a.resolved_question == llm.condensed[0]


def test_prompt_is_trimmed_to_the_context(corpus_index, test_settings, llama):
    engine, llm = engine_for(corpus_index, test_settings, llama)
    a = engine.ask(QUESTION, top_k=10)  # ten 500-character passages: ~12k SmolLM2 tokens, n_ctx 2048
    assert a.mode == "llm" and not (a.note and FALLBACK in a.note), a.note
    assert 1 <= llm.sent_counts[-1] < 10
    # untrimmed, the same passages are a 400 from this server
    from chat.llm import fence_passages

    passages = [h.chunk.text for h in corpus_index.retrieve(QUESTION, top_k=10)]
    r = httpx.post(llama.base_url + "/chat/completions", timeout=60, json={
        "model": ALIAS, "max_tokens": 8, "messages": [{"role": "user", "content": fence_passages(passages)}]})
    assert r.status_code == 400 and r.json()["error"]["type"] == "exceed_context_size_error"


def test_a_wrong_context_belief_is_corrected_by_the_400(corpus_index, test_settings, llama):
    engine, llm = engine_for(corpus_index, test_settings, llama, context_window=100_000)
    a = engine.ask(QUESTION, top_k=10)
    assert a.mode == "llm" and not (a.note and FALLBACK in a.note), a.note
    assert llm.context_window == 2048 and llm.sent_counts[-1] < 10  # learnt from the error, retried once


@pytest.mark.parametrize("key", ["wrong", ""])
def test_refused_key_falls_back_with_a_clear_note(corpus_index, test_settings, keyed_llama, key):
    engine, llm = engine_for(corpus_index, test_settings, keyed_llama, api_key=key)
    a = engine.ask(QUESTION)
    assert a.mode == "extractive" and "401" in a.note and "API key" in a.note and FALLBACK in a.note
    assert a.answer and a.citations  # the extractive answer (its content is tested elsewhere)
    assert llm.probe()["status"] == "down" and "API key" in llm.probe()["error"]
    good, _ = engine_for(corpus_index, test_settings, keyed_llama, api_key="sesame")
    assert good.ask(QUESTION).mode == "llm"


def test_server_killed_mid_stream_falls_back(corpus_index, test_settings, tmp_path):
    server = start_llama_server(tmp_path, n_ctx=2048)
    try:
        engine, _ = engine_for(corpus_index, test_settings, server, max_tokens=1500)
        t0 = time.monotonic()
        events, killed = [], False
        for event in engine.stream("请逐条列出文档中出现的所有数字，每行一个，越多越好。"):
            events.append(event)
            if event["type"] == "token" and not killed:
                server.kill()  # the model is mid-answer: 1,500 tokens allowed
                killed = True
        answer = events[-1]["answer"]
        assert killed and time.monotonic() - t0 < 60
        assert answer["mode"] == "extractive" and FALLBACK in answer["note"], answer.get("note")
        assert "connection" in answer["note"]
        again = engine.ask(QUESTION)  # the endpoint is gone now: refused at once
        assert again.mode == "extractive" and "connection failed" in again.note
    finally:
        server.kill()


def test_timeout_falls_back(corpus_index, test_settings, llama):
    engine, _ = engine_for(corpus_index, test_settings, llama, timeout=0.3, max_tokens=400)
    t0 = time.monotonic()
    a = engine.ask(QUESTION)
    assert a.mode == "extractive" and "timeout" in a.note and a.answer
    assert time.monotonic() - t0 < 15


def test_endpoint_down_at_start_then_up(tmp_path):
    """The real `python app.py`: health says the endpoint is down and extractive serves; once a
    llama-server listens there, health says up and answers are generated (API, SSE, /v1)."""
    from browser.harness import start_server

    port = free_port()
    app = start_server("llm-down", llm_base_url=f"http://127.0.0.1:{port}/v1", llm_model=ALIAS,
                       llm_timeout=180, rate_limit_per_minute=0)
    llama = None
    try:
        health = wait_for(app.url, lambda h: h.get("llm", {}).get("status") == "down")
        assert health["mode"] == "llm" and "connection" in health["llm"]["error"]
        r = httpx.post(app.url + "/api/ask", json={"question": QUESTION}, timeout=120)
        a = r.json()
        assert r.status_code == 200 and a["mode"] == "extractive" and FALLBACK in a["note"] and a["citations"]

        llama = start_llama_server(tmp_path, n_ctx=2048, port=port)
        # "up" can be reported a probe before the server's context size is read: wait for both
        health = wait_for(app.url, lambda h: h.get("llm", {}).get("status") == "up" and "n_ctx" in h["llm"])
        assert health["llm"]["n_ctx"] == 2048
        r = httpx.post(app.url + "/api/ask", json={"question": QUESTION}, timeout=180)
        assert r.status_code == 200 and r.json()["mode"] == "llm", r.text
        with httpx.stream("POST", app.url + "/api/ask/stream", json={"question": QUESTION}, timeout=180) as s:
            events = [json.loads(line[6:]) for line in s.iter_lines() if line.startswith("data: ")]
        assert events[-1]["type"] == "answer" and events[-1]["answer"]["mode"] == "llm"
        import openai

        client = openai.OpenAI(base_url=app.url + "/v1", api_key="none", max_retries=0, timeout=180)
        chunks = list(client.chat.completions.create(model="clusterqa", stream=True,
                                                     messages=[{"role": "user", "content": QUESTION}]))
        final = chunks[-1].model_extra["clusterqa"]
        content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert final["mode"] == "llm" and content.startswith(final["answer"])
        assert "Traceback" not in app.log_path.read_text(errors="replace")
    finally:
        if llama is not None:
            llama.kill()
        app.stop()


def wait_for(url: str, condition, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    health = {}
    while time.monotonic() < deadline:
        health = httpx.get(url + "/api/health", timeout=5).json()
        if condition(health):
            return health
        time.sleep(0.5)
    raise AssertionError(f"health never matched: {health}")
