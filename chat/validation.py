"""Checking what the asker sent before any work is done: bad input gets a QuestionError.

The error message is user-facing and in the asker's language where it can be told;
`status` is the HTTP status the server should answer with (400, or 413 for too long).
"""

from __future__ import annotations

import re
import unicodedata

from .language import EN, bilingual, detect_language, message

# C0/C1 control characters except tab/newline, plus zero-width and bidi controls
# (they hide text from the reader and break matching).
CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
TAG_RE = re.compile(r"<\s*/?\s*[A-Za-z][^<>]{0,200}>")
SCRIPT_BLOCK_RE = re.compile(r"<\s*(script|style)\b[^>]*>.*?<\s*/\s*\1\s*>", re.I | re.S)
WORDISH_RE = re.compile(r"[\w]", re.UNICODE)

MAX_TOP_K = 50
MAX_HISTORY_TURNS = 20
MAX_HISTORY_CHARS = 20_000


class QuestionError(ValueError):
    """Bad input. `str(err)` is the user-facing message; `status` is 400 or 413."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


def clean_text(text: str) -> str:
    """Strip control characters and normalise whitespace; the text is otherwise kept as sent."""
    text = unicodedata.normalize("NFC", text)
    text = CONTROL_RE.sub("", text)
    return re.sub(r"\s+", " ", text).strip()


def query_text(question: str) -> str:
    """The question as a search query: markup is treated as text, but tags carry no meaning.

    `<script>…</script>` content is dropped with its tags; other tags are removed and
    their inner text kept. Nothing is ever executed or rendered here.
    """
    text = SCRIPT_BLOCK_RE.sub(" ", question)
    text = TAG_RE.sub(" ", text)
    return re.sub(r"\s+", " ", text).strip()


def has_words(text: str) -> bool:
    """True when the text has letters or digits (emoji and punctuation are not \\w)."""
    return any(unicodedata.category(ch)[0] in "LN" for ch in text)


def validate_question(question, max_chars: int) -> tuple[str, str]:
    """Return (cleaned question, query text) or raise QuestionError."""
    if not isinstance(question, str):
        raise QuestionError(bilingual("bad_type"))
    cleaned = clean_text(question)
    if not cleaned:
        raise QuestionError(bilingual("empty"))
    if len(cleaned) > max_chars:
        language = detect_language(cleaned[:2000])
        raise QuestionError(message("too_long", language, n=len(cleaned), limit=max_chars), status=413)
    query = query_text(cleaned)
    if not has_words(query):
        raise QuestionError(bilingual("no_words") if not has_words(cleaned) else bilingual("empty"))
    return cleaned, query


def validate_history(history, language: str = EN) -> list[dict]:
    """A list of {"role": "user"|"assistant", "content": str}; returns a cleaned copy (last turns)."""
    if history is None:
        return []
    if not isinstance(history, list):
        raise QuestionError(message("bad_history", language, detail=_detail("not_list", language)))
    out = []
    for i, turn in enumerate(history):
        if not isinstance(turn, dict):
            raise QuestionError(message("bad_history", language, detail=_detail("turn", language, i=i)))
        role, content = turn.get("role"), turn.get("content")
        if role not in ("user", "assistant"):
            raise QuestionError(message("bad_history", language, detail=_detail("role", language, i=i, role=repr(role)[:40])))
        if not isinstance(content, str):
            raise QuestionError(message("bad_history", language, detail=_detail("content", language, i=i)))
        out.append({"role": role, "content": clean_text(content)[:MAX_HISTORY_CHARS]})
    return out[-MAX_HISTORY_TURNS:]


def validate_top_k(top_k, default: int, language: str = EN) -> int:
    if top_k is None:
        return default
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
        raise QuestionError(message("bad_top_k", language, limit=MAX_TOP_K))
    return top_k


_DETAILS = {
    "not_list": {"zh": "应为由对话轮次组成的列表", "en": "expected a list of turns"},
    "turn": {"zh": "第 {i} 项不是对象", "en": "item {i} is not an object"},
    "role": {"zh": "第 {i} 项的 role 为 {role}，应为 user 或 assistant",
             "en": "item {i} has role {role}; expected user or assistant"},
    "content": {"zh": "第 {i} 项的 content 不是文本", "en": "item {i} has a content that is not text"},
}


def _detail(key: str, language: str, **fields) -> str:
    from .language import render

    if language == EN:
        return _DETAILS[key]["en"].format(**fields)
    return render(_DETAILS[key]["zh"].format(**fields), language)
