"""What the chat package hands back: an Answer with numbered Citations (docs/CONTRACTS.md)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Citation:
    n: int  # the [n] marker in the answer text points at citations[n-1]
    doc_id: str
    title: str
    source: str
    date: str
    chunk_id: str
    text: str  # the passage, rendered in the asker's script
    quote: str  # the sentence(s) relied on; always a substring of `text`
    start: int  # the chunk's offsets in its document's canonical text
    end: int
    score: float

    def to_dict(self) -> dict:
        return {
            "n": self.n, "doc_id": self.doc_id, "title": self.title, "source": self.source,
            "date": self.date, "chunk_id": self.chunk_id, "text": self.text, "quote": self.quote,
            "start": self.start, "end": self.end, "score": round(float(self.score), 6),
        }


@dataclass
class Answer:
    question: str
    answer: str
    answered: bool
    language: str  # "zh-Hans" | "zh-Hant" | "en"
    mode: str  # "extractive" | "llm"
    citations: list[Citation] = field(default_factory=list)
    timings_ms: dict = field(default_factory=lambda: {"retrieve": 0.0, "answer": 0.0, "total": 0.0})
    resolved_question: str | None = None  # set when a follow-up was rewritten from the history
    note: str | None = None  # e.g. why an LLM answer fell back to extractive
    # the reader's short answer: {"text", "citation": n, "start", "end"} with offsets into
    # citations[n-1].text; None when refused (and for LLM and metadata answers)
    span: dict | None = None
    kind: str = "factoid"  # the router's kind (chat/kinds.py): factoid | list | overview | compare | metadata | chitchat
    # the passages in the order the answer path ranked them (reader first), for in-process
    # evaluation of the chat path's ranking; not part of the JSON contract
    ranked: list = field(default_factory=list, repr=False)
    evidence: dict | None = field(default=None, repr=False)  # the refusal rule's inputs (tuning, debugging)

    def to_dict(self) -> dict:
        out = {
            "question": self.question,
            "answer": self.answer,
            "answered": self.answered,
            "language": self.language,
            "mode": self.mode,
            "kind": self.kind,
            "citations": [c.to_dict() for c in self.citations],
            "span": self.span if self.answered else None,
            "timings_ms": {k: round(float(v), 2) for k, v in self.timings_ms.items()},
        }
        if self.resolved_question:
            out["resolved_question"] = self.resolved_question
        if self.note:
            out["note"] = self.note
        return out
