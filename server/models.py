"""Typed request and response bodies, so /api/openapi.json describes them. The Answer and
Citation shapes are the contract in docs/CONTRACTS.md; `extra="allow"` lets fields the chat
package adds later pass through unchanged (extend, don't rename)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Turn(BaseModel):
    role: Literal["user", "assistant"]
    content: str


class AskRequest(BaseModel):
    question: str = Field(description="the question, in Chinese or English")
    history: list[Turn] | None = Field(None, description="earlier turns, oldest first")
    top_k: int | None = Field(None, ge=1, le=50, description="passages to retrieve")

    def history_dicts(self) -> list[dict] | None:
        return [t.model_dump() for t in self.history] if self.history is not None else None


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Citation(Open):
    n: int = Field(description="the [n] marker in the answer points at citations[n-1]")
    doc_id: str
    title: str
    source: str = Field(description="URL or file the document came from")
    date: str
    chunk_id: str
    text: str = Field(description="the passage, in the asker's script")
    quote: str = Field(description="the sentence(s) relied on; a substring of text")
    start: int = Field(description="the passage's start offset in the document's canonical text")
    end: int
    score: float


class Span(Open):
    text: str = Field(description="the exact answer")
    citation: int = Field(description="n of the citation whose text holds it")
    start: int = Field(description="character offset into citations[citation-1].text")
    end: int


class Answer(Open):
    question: str
    answer: str = Field(description="the answer text with [n] citation markers")
    answered: bool = Field(description="false when the documents do not support an answer")
    language: Literal["zh-Hans", "zh-Hant", "en"]
    mode: Literal["extractive", "llm"]
    kind: str | None = Field(None, description="the question's kind, as routed: factoid | list | overview | "
                                               "compare | metadata | chitchat (absent from older servers)")
    citations: list[Citation]
    timings_ms: dict[str, float]
    resolved_question: str | None = Field(None, description="the follow-up rewritten from the history")
    note: str | None = Field(None, description="e.g. why a generated answer fell back to extractive")
    span: Span | None = Field(None, description="the exact answer inside a cited passage; null when refused")


class Progress(BaseModel):
    stage: str
    done: int
    total: int
    fraction: float


class LLMHealth(Open):
    base_url: str
    model: str
    status: Literal["up", "down", "unknown"]
    error: str | None = None


class Health(Open):
    status: Literal["building", "ready", "degraded", "error"]
    progress: Progress
    mode: Literal["extractive", "llm"]
    warm: bool
    documents: int
    chunks: int
    model: str | None
    llm: LLMHealth | None = Field(None, description="present when an LLM endpoint is configured")
    error: str | None = None


class Document(Open):
    doc_id: str
    title: str
    date: str
    language: str
    source: str
    chunks: int


class DocumentText(Document):
    text: str = Field(description="the document's canonical (Simplified) text; citation offsets index it")


class DocumentList(BaseModel):
    documents: list[Document]
    count: int


class Error(BaseModel):
    error: str


ERRORS = {status: {"model": Error} for status in (400, 401, 404, 413, 429, 503)}
