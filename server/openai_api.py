"""The OpenAI-compatible endpoint: POST /v1/chat/completions (streaming and not) and
GET /v1/models, so Open WebUI, LibreChat, the openai SDK or llama-index's OpenAILike can
use ClusterQA as a "model" named `clusterqa`.

The last user message is the question, the earlier user/assistant messages are the history
(system prompts are ignored: the answer comes from the documents). The content is the answer
with its [n] markers plus a markdown list of the sources, for clients that show only
content; the top-level extension field `clusterqa` carries the whole Answer JSON
(docs/CONTRACTS.md) on the completion, and on the last chunk before `[DONE]` when streaming,
so citations survive streaming too.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from . import models
from .api import start_stream
from .errors import ApiError, error_body
from .html import safe_href

log = logging.getLogger("clusterqa.server")
MODEL_ID = "clusterqa"
SOURCES_RULE = "\n\n---\n"  # starts the sources list; cut off again when the message comes back as history
SOURCES_LABEL = {"zh-Hans": "来源", "zh-Hant": "來源", "en": "Sources"}
NEAREST_LABEL = {"zh-Hans": "最接近的段落", "zh-Hant": "最接近的段落", "en": "Nearest passages"}


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict] | None = None


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # temperature, max_tokens, … are accepted and ignored
    model: str = Field(description='"clusterqa"')
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    top_k: int | None = Field(None, ge=1, le=50, description="ClusterQA extension: passages to retrieve")


def text_of(content) -> str:
    if isinstance(content, list):  # content parts: only the text ones mean anything here
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return content or ""


def to_ask(req: ChatCompletionRequest) -> models.AskRequest:
    if req.model != MODEL_ID:
        raise ApiError(404, f"The model '{req.model}' does not exist; use '{MODEL_ID}'", code="model_not_found")
    turns = [m for m in req.messages if m.role in ("user", "assistant")]
    if not turns or turns[-1].role != "user" or req.messages[-1].role != "user":
        raise ApiError(400, "the last message must be the user's question")
    history = [models.Turn(role=m.role, content=text_of(m.content).split(SOURCES_RULE)[0]) for m in turns[:-1]]
    return models.AskRequest(question=text_of(turns[-1].content), history=history, top_k=req.top_k)


def sources_markdown(answer: dict) -> str:
    if not answer.get("citations"):
        return ""
    language = answer.get("language", "en")
    label = (SOURCES_LABEL if answer.get("answered") else NEAREST_LABEL).get(language, "Sources")
    lines = []
    for c in answer["citations"]:
        href = safe_href(c.get("source", ""))
        where = f"[{c['source']}]({href})" if href else c.get("source", "")
        date = f" ({c['date']})" if c.get("date") else ""
        lines.append(f"- [{c['n']}] {c.get('title', '')}{date} — {where}")
    return f"{SOURCES_RULE}**{label}**\n" + "\n".join(lines)


def completion(answer: dict) -> dict:
    return {"id": f"chatcmpl-{secrets.token_hex(12)}", "object": "chat.completion", "created": int(time.time()),
            "model": MODEL_ID, "system_fingerprint": None,
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": answer["answer"] + sources_markdown(answer)}}],
            "clusterqa": answer}


def chunk(cid: str, created: int, delta: dict, finish: str | None = None, **extra) -> str:
    body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": MODEL_ID,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


def openai_router(service) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["openai"])
    started = int(time.time())
    model_card = {"id": MODEL_ID, "object": "model", "created": started, "owned_by": "clusterqa"}

    @router.get("/models")
    def list_models():
        """The one model: `clusterqa` (retrieval-augmented answers with citations)."""
        return {"object": "list", "data": [model_card]}

    @router.get("/models/{model_id}")
    def get_model(model_id: str):
        if model_id != MODEL_ID:
            raise ApiError(404, f"The model '{model_id}' does not exist", code="model_not_found")
        return model_card

    @router.post("/chat/completions", responses={200: {"content": {"text/event-stream": {}}}})
    async def chat_completions(req: ChatCompletionRequest):
        """OpenAI chat completions; the Answer JSON rides along in the top-level field `clusterqa`."""
        ask = to_ask(req)
        if not req.stream:
            from starlette.concurrency import run_in_threadpool

            engine = service.require_engine()
            answer = await run_in_threadpool(
                lambda: engine.ask(ask.question, history=ask.history_dicts(), top_k=ask.top_k).to_dict())
            return completion(answer)
        first, events = await start_stream(service, ask)
        # Extractive tokens are the final text; an LLM's raw tokens are not (markers get
        # checked and renumbered, or the answer falls back), so then the text is sent at the end.
        live = service.mode == "extractive"
        return StreamingResponse(stream_chunks(first, events, live, service), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return router


def stream_chunks(first, events, live: bool, service):
    cid, created = f"chatcmpl-{secrets.token_hex(12)}", int(time.time())
    sent = ""
    yield chunk(cid, created, {"role": "assistant", "content": ""})
    try:
        event = first
        while event is not None:
            if event["type"] == "token" and live:
                sent += event["text"]
                yield chunk(cid, created, {"content": event["text"]})
            elif event["type"] == "answer":
                answer = event["answer"]
                rest = answer["answer"][len(sent):] if answer["answer"].startswith(sent) else answer["answer"]
                if rest:
                    yield chunk(cid, created, {"content": rest})
                sources = sources_markdown(answer)
                if sources:
                    yield chunk(cid, created, {"content": sources})
                yield chunk(cid, created, {}, "stop", clusterqa=answer)
            event = next(events, None)
    except Exception as exc:
        known = isinstance(exc, service.question_error)
        if not known:
            log.exception("chat completion stream failed")
        body = error_body("/v1", 400 if known else 500, str(exc) if known else "internal server error")
        yield f"data: {json.dumps(body, ensure_ascii=False)}\n\n"
    yield "data: [DONE]\n\n"



