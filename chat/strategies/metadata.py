"""Metadata questions: a document's date, publisher/source or title from its metadata
(ingest reads them from the file's header), citing the document.

Who published *the report* is in the article's own text (工业和信息化部工业文化发展中心
发布的《…》报告), not in the page's metadata (the site that republished it): the engine
asks the reader first for such questions (`text_first`) and comes here when it finds
nothing. When or where the page was posted, and its title, come from the metadata."""

from __future__ import annotations

import re

from ingest.script import to_simplified

from ..compose import Composed, compose_metadata
from ..language import EN, render
from ..metadata import fact_of, subject_terms

_PUBLICATION = re.compile(r"报告|研究|白皮书|\breport\b|\bstudy\b|\bwhite paper\b", re.IGNORECASE)
_PAGE = re.compile(r"网页|网站|页面|网址|链接|转载|\bpage\b|\bsite\b|\bwebsite\b|\burl\b|\bposted\b|\brepublish", re.IGNORECASE)


def text_first(field: str, question: str) -> bool:
    """Whether the document's text (the reader) should answer before the metadata does."""
    q = to_simplified(question)
    return field in ("publisher", "title") and bool(_PUBLICATION.search(q)) and not _PAGE.search(q)


def main_document(index):
    """The corpus's main article: the seed document, else the one with the most passages."""
    docs = index.documents()
    if not docs:
        return None
    return max(docs, key=lambda d: (d.path.startswith("seed") or "/seed/" in d.path, len(index.chunks_of(d.doc_id))))


def document_asked_about(index, remainder: str):
    """The document whose passages the question's remaining words retrieve, else the main one."""
    from ..refusal import content_terms

    if content_terms(remainder):  # words that can pick a document, not "On" or "the"
        found = index.retrieve(remainder, top_k=1)
        doc = index.get_document(found[0].chunk.doc_id) if found else None
        if doc is not None:
            return doc
    return main_document(index)


def answer(index, field: str, question: str, language: str) -> Composed | None:
    """Date / publisher / title of the document the question is about."""
    doc = document_asked_about(index, subject_terms(question))
    if doc is None:
        return None
    fact = fact_of(doc, field)
    chunks = index.chunks_of(doc.doc_id)
    if fact is None or not chunks:
        return None
    from index.hybrid import Hit

    value = fact.value if language == EN else render(fact.value, language)
    return compose_metadata(Hit(chunks[0], 1.0, None, None, None, None), field, value, language)
