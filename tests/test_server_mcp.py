"""The MCP server through the official SDK's client: streamable HTTP at /mcp of the real
`python app.py` (keys enforced like /api) and stdio (`python -m server.mcp_server`)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import httpx
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from browser.harness import XSS_DOC_ID, shared_server

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
QUESTION = "沙特计划建设多少个医疗集群？"
TOOLS = {"ask", "search", "get_document"}


@pytest.fixture(scope="module")
def server():
    return shared_server("main")


def payload(result) -> dict:
    """A tool result's JSON: the structured content, the same as its text block."""
    assert not result.is_error, result.content
    text = json.loads(result.content[0].text)
    if result.structured_content is not None:
        assert result.structured_content == text
    return text


async def exercise(client: Client, api_answer: dict) -> None:
    tools = await client.list_tools()
    assert {t.name for t in tools.tools} == TOOLS
    ask_schema = next(t for t in tools.tools if t.name == "ask").input_schema
    assert ask_schema["required"] == ["question"] and {"history", "top_k"} <= set(ask_schema["properties"])

    answer = payload(await client.call_tool("ask", {"question": QUESTION}))
    strip = lambda a: {k: v for k, v in a.items() if k != "timings_ms"}
    assert strip(answer) == strip(api_answer)  # the Answer JSON, as /api/ask gives it
    follow = payload(await client.call_tool("ask", {"question": "那韩国呢？", "top_k": 3, "history": [
        {"role": "user", "content": QUESTION}, {"role": "assistant", "content": answer["answer"]}]}))
    assert follow["resolved_question"] and "韩国" in follow["resolved_question"]

    found = payload(await client.call_tool("search", {"query": "医疗集群", "top_k": 3}))["passages"]
    assert [p["rank"] for p in found] == [1, 2, 3]
    first = found[0]
    assert {"chunk_id", "doc_id", "score", "start", "end", "text"} <= set(first)
    doc = payload(await client.call_tool("get_document", {"doc_id": first["doc_id"]}))
    assert doc["text"][first["start"]:first["end"]] == first["text"]  # offsets index the document
    assert doc["title"] == first["title"] and doc["chunks"] >= 1

    for name, args in (("get_document", {"doc_id": "no/such.txt"}), ("ask", {"question": " "}),
                       ("search", {"query": ""})):
        bad = await client.call_tool(name, args)
        assert bad.is_error and bad.content[0].text  # a tool error, not a crash
    xss = payload(await client.call_tool("get_document", {"doc_id": XSS_DOC_ID}))
    assert "<script>window.__xss=1</script>" in xss["text"]  # data is returned as data


def api_answer(server) -> dict:
    return httpx.post(server.url + "/api/ask", json={"question": QUESTION},
                      headers={"X-API-Key": "test-key"}, timeout=120).json()


def test_streamable_http_lists_and_calls_the_tools(server):
    async def run():
        async with create_mcp_http_client(headers={"Authorization": "Bearer test-key"}) as http:
            async with Client(streamable_http_client(server.url + "/mcp", http_client=http)) as client:
                await exercise(client, api_answer(server))
    asyncio.run(run())


def test_streamable_http_needs_a_key(server):
    r = httpx.post(server.url + "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                   headers={"Accept": "application/json, text/event-stream"})
    assert r.status_code == 401 and "error" in r.json()
    # stateless: no server-to-client stream to hold open
    r = httpx.get(server.url + "/mcp", headers={"X-API-Key": "test-key", "Accept": "text/event-stream"}, timeout=10)
    assert r.status_code == 405 and r.headers["allow"] == "POST"

    async def run():
        async with create_mcp_http_client(headers={"X-API-Key": "wrong"}) as http:
            async with Client(streamable_http_client(server.url + "/mcp", http_client=http)) as client:
                await client.list_tools()
    with pytest.raises(Exception):
        asyncio.run(run())


def test_stdio_lists_and_calls_the_tools(server):
    """The documented command, with the main server's settings (its index is read, not rebuilt)."""
    params = StdioServerParameters(command=sys.executable, args=["-m", "server.mcp_server"],
                                   env=dict(server.env), cwd=str(REPO))

    async def run():
        async with Client(params) as client:
            await exercise(client, api_answer(server))
    asyncio.run(run())
