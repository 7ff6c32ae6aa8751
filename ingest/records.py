"""Records that flow out of ingest: a cleaned Document and its citable Chunks."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class Document:
    doc_id: str  # stable: derived from the file path relative to the corpus root
    title: str
    source: str  # URL when the file names one, else the file path
    date: str  # ISO date "YYYY-MM-DD", or "" when unknown
    language: str  # "zh" or "en" (of the content, not of the script)
    text: str  # canonical text: cleaned, Simplified Chinese; all offsets point into this
    original_text: str  # the decoded file as read, kept for provenance
    path: str = ""  # file the document came from
    content_hash: str = ""  # sha256 of the file bytes; drives incremental indexing
    meta: dict = field(default_factory=dict)  # e.g. detected encoding, original script

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Document":
        return cls(**data)


@dataclass
class Chunk:
    doc_id: str
    chunk_id: str  # f"{doc_id}#{ordinal}"
    title: str
    source: str
    date: str
    heading: str  # nearest section heading above the chunk, "" if none
    start: int  # Document.text[start:end] == text
    end: int
    text: str
    language: str = "zh"

    def to_dict(self) -> dict:
        # all fields are flat, so a shallow dict is enough; asdict's deep copy was half the
        # cost of writing a 10k-chunk index after an incremental add
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict) -> "Chunk":
        return cls(**data)
