"""The OpenAI-compatible endpoint (/v1) of the real `python app.py`, through the official
`openai` package and llama-index's OpenAILike: same answers and citations as /api/ask."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import openai
import pytest

from browser.harness import shared_server

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
KEY = "test-key"
QUESTION = "沙特计划建设多少个医疗集群？"


@pytest.fixture(scope="module")
def server():
    return shared_server("main")


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=120)


def parity_questions() -> list[dict]:
    """30 dev questions: all 8 follow-ups (zh-Hans and en), 8 Traditional, 7 Simplified, 7 English
    (picked across each list, so some meant to be refused are in)."""
    from chat.language import detect_language

    rows = [json.loads(line) for line in (REPO / "data/questions/dev.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()]
    follow = [r for r in rows if r.get("history")]
    rest = [r for r in rows if not r.get("history")]
    by = {lang: [r for r in rest if detect_language(r["question"]) == lang] for lang in ("zh-Hant", "zh-Hans", "en")}
    # a spread over each language's list, so unanswerable questions (listed last) are in too
    pick = lambda rs, k: [rs[round(i * (len(rs) - 1) / (k - 1))] for i in range(k)]
    out = follow + pick(by["zh-Hant"], 8) + pick(by["zh-Hans"], 7) + pick(by["en"], 7)
    assert len(out) == 30 and len({r["id"] for r in out}) == 30
    return out


def same_answer(got: dict, want: dict) -> None:
    strip = lambda a: {k: v for k, v in a.items() if k != "timings_ms"}
    assert strip(got) == strip(want)


def test_models_lists_clusterqa(client):
    assert [m.id for m in client.models.list().data] == ["clusterqa"]
    assert client.models.retrieve("clusterqa").owned_by == "clusterqa"


def test_30_questions_same_answers_as_the_api_stream_and_not(client, server, artifacts_dir):
    api = httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}, timeout=120)
    rows, languages, answered = parity_questions(), set(), 0
    for row in rows:
        history = row.get("history") or []
        want = api.post("/api/ask", json={"question": row["question"], "history": history}).json()
        messages = [{"role": "system", "content": "You are a helpful assistant."}] + history + \
                   [{"role": "user", "content": row["question"]}]
        whole = client.chat.completions.create(model="clusterqa", messages=messages)
        content = whole.choices[0].message.content
        same_answer(whole.model_extra["clusterqa"], want)
        assert content.startswith(want["answer"]) and whole.choices[0].finish_reason == "stop", row["id"]
        for c in want["citations"]:
            assert f"[{c['n']}] {c['title']}" in content  # the sources list, for clients that show only content

        chunks = list(client.chat.completions.create(model="clusterqa", messages=messages, stream=True))
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert streamed == content, row["id"]
        assert "clusterqa" not in chunks[-2].model_extra and chunks[-1].choices[0].finish_reason == "stop"
        same_answer(chunks[-1].model_extra["clusterqa"], want)  # the Answer rides on the last chunk
        languages.add(want["language"])
        answered += want["answered"]
    assert languages == {"zh-Hans", "zh-Hant", "en"}
    (artifacts_dir / "openai_parity.json").write_text(json.dumps(
        {"questions": len(rows), "follow_ups": sum(bool(r.get("history")) for r in rows), "answered": answered,
         "same_answer_and_citations": {"non_stream": len(rows), "stream": len(rows)}}, indent=1) + "\n")


def test_history_coming_back_with_the_sources_list(client):
    """A chat client sends our whole previous content (sources list included) back as history."""
    first = client.chat.completions.create(model="clusterqa", messages=[
        {"role": "user", "content": "韩国打造了全球最大的什么集群？"}])
    follow = client.chat.completions.create(model="clusterqa", messages=[
        {"role": "user", "content": "韩国打造了全球最大的什么集群？"},
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": [{"type": "text", "text": "那沙特呢？"}]}])  # content parts work too
    answer = follow.model_extra["clusterqa"]
    assert answer["resolved_question"] and "沙特" in answer["resolved_question"]


def test_errors_have_openai_shape(client, server):
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0).models.list()
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": QUESTION}])
    assert e.value.code == "model_not_found"
    for messages in ([], [{"role": "assistant", "content": "hi"}], [{"role": "user", "content": "  "}],
                     [{"role": "user", "content": QUESTION}, {"role": "system", "content": "x"}]):
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="clusterqa", messages=messages)
    with pytest.raises(openai.BadRequestError):  # bad input streaming: a plain 400 before any chunk
        client.chat.completions.create(model="clusterqa", messages=[{"role": "user", "content": ""}], stream=True)
    r = httpx.post(server.url + "/v1/chat/completions", content=b"{not json", timeout=30,
                   headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    body = r.json()
    assert r.status_code == 400 and set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    r = httpx.get(server.url + "/v1/models")  # no key
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_llama_index_openailike_against_clusterqa(server):
    from llama_index.core.llms import ChatMessage
    from llama_index.llms.openai_like import OpenAILike

    llm = OpenAILike(api_base=server.url + "/v1", model="clusterqa", api_key=KEY, is_chat_model=True,
                     max_retries=0, timeout=120, context_window=8192)
    messages = [ChatMessage(role="user", content=QUESTION)]
    whole = llm.chat(messages).message.content
    streamed = "".join(r.delta or "" for r in llm.stream_chat(messages))
    async_whole = asyncio.run(llm.achat(messages)).message.content
    want = httpx.post(server.url + "/api/ask", json={"question": QUESTION}, headers={"X-API-Key": KEY},
                      timeout=120).json()
    assert whole == streamed == async_whole and whole.startswith(want["answer"]) and "[1]" in whole
