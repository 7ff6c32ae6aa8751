"""Reading an Answer (object from chat, or the JSON of POST /api/ask) the same way."""

from __future__ import annotations

import re

_MARKER = re.compile(r"\s*\[\d+(?:\s*[,，]\s*\d+)*\]")


def answer_dict(answer) -> dict:
    """The Answer JSON; in process it also carries "retrieved", the chat path's own passage
    order (reader first), so its hit@k/MRR measure that order, not only the citations."""
    if not hasattr(answer, "to_dict"):
        return dict(answer)
    out = answer.to_dict()
    ranked = getattr(answer, "ranked", None)
    if ranked:
        out["retrieved"] = [{"chunk_id": c.chunk_id, "doc_id": c.doc_id, "text": c.text} for c in ranked]
    return out


def ranked_passages(ad: dict) -> list[dict]:
    """Passages in rank order: the full retrieved list when the Answer carries one, else its citations."""
    for key in ("retrieved", "hits", "passages"):
        items = ad.get(key)
        if isinstance(items, list) and items and isinstance(items[0], dict):
            return items
    return list(ad.get("citations") or [])


def passage_text(p: dict) -> str:
    return str(p.get("text") or p.get("quote") or "")


def passage_id(p: dict) -> str:
    return str(p.get("chunk_id") or p.get("doc_id") or "")


def strip_markers(text: str) -> str:
    """Answer text without its [n] citation markers (they must not count as answer content)."""
    return _MARKER.sub("", text or "")


def sentence_count(text: str) -> int:
    text = strip_markers(text).strip()
    if not text:
        return 0
    try:
        from ingest.chunking import split_sentences

        return len([s for s in split_sentences(text) if text[s[0] : s[1]].strip()])
    except ImportError:
        return len([s for s in re.split(r"(?<=[。！？!?；;])|(?<=\.)\s+", text) if s.strip()])
