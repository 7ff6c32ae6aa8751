"""Text normalisation for matching answers and evidence.

Both sides of every comparison go through `normalize`: Traditional -> Simplified,
NFKC (full-width letters/digits become ASCII), lower case, whitespace and
punctuation removed. A Traditional gold answer thus matches a Simplified passage,
"Ω-Force" matches "ω-force", and "1,500" matches "1500".
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache


@lru_cache(maxsize=1)
def _simplifier():
    # The product's own converter, so gold text and indexed text (which ingest
    # converted with the same function) become Simplified the same way.
    try:
        from ingest.script import to_simplified

        return to_simplified
    except ImportError:  # ingest not installed yet / partial checkout
        import opencc

        return opencc.OpenCC("t2s").convert


def to_simplified(text: str) -> str:
    return _simplifier()(text)


_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def _drop(ch: str) -> bool:
    # Punctuation (P*), separators (Z*) and control/format characters (C*).
    # Symbols (S*: ℃, $, +) are kept: they can carry meaning in an answer.
    return ch.isspace() or unicodedata.category(ch)[0] in "PZC"


@lru_cache(maxsize=200_000)
def normalize(text: str) -> str:
    """The matching form of `text` (see module doc)."""
    if not text:
        return ""
    if _CJK.search(text):
        text = to_simplified(text)
    text = unicodedata.normalize("NFKC", text).lower()
    return "".join(ch for ch in text if not _drop(ch))


def contains(haystack: str, needle: str) -> bool:
    """True if normalised `needle` is non-empty and occurs in normalised `haystack`."""
    n = normalize(needle)
    return bool(n) and n in normalize(haystack)


def contains_any(haystack: str, needles) -> bool:
    h = normalize(haystack)
    for needle in needles:
        n = normalize(needle)
        if n and n in h:
            return True
    return False


def has_han(text: str) -> bool:
    """True when the text holds a Chinese (Han) character."""
    return any("\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" for ch in text)
