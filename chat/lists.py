"""List questions ("哪几项", "哪些", "which ones", "第三项") answered with the whole list.

The reader returns one span; when the question asks for several things and that span sits
in (or just before) a block of list lines — "1. …", "（一）…", "◎…", "- …" — the answer is
the count and every item of that block, not the one item the span covers. Items are lines
of the document's canonical text, so a list cut by a chunk boundary is still whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ingest.script import to_simplified

ITEM_RE = re.compile(r"^\s*(?:(\d{1,2})\s*[.、．)）]|[（(]([一二三四五六七八九十]{1,2})[）)]|([一二三四五六七八九十]{1,2})\s*、|[◎•·▪●○■\-–*]\s*)")
_ZH_LIST_Q = re.compile(r"哪些|哪几|哪[一二三四五六七八九十两\d]+[项个条点种类大方]|几项|几个方面|几大|几点|几条|分别是|包括什么|包括哪|有什么建议|列举")
_EN_LIST_Q = re.compile(r"\bwhich\s+ones\b|\bwhat\s+are\s+the\b|\blist\b|\bname\s+the\b|\bwhat\s+(?:\w+\s+){0,2}(?:recommendations|suggestions|items|measures|trends|keywords|steps)\b", re.IGNORECASE)


def is_list_question(question: str) -> bool:
    return bool(_ZH_LIST_Q.search(to_simplified(question)) or _EN_LIST_Q.search(question))


@dataclass
class ListItem:
    number: int | None  # the item's own number when it has one
    start: int  # offsets of the line in the document's text
    end: int


def _lines(text: str) -> list[tuple[int, int]]:
    out, pos = [], 0
    for line in text.split("\n"):
        out.append((pos, pos + len(line)))
        pos += len(line) + 1
    return out


def _marker_kind(line: str) -> str | None:
    m = ITEM_RE.match(line)
    if not m or len(line.strip()) < 3:
        return None
    if m.group(1):
        return "digit"
    if m.group(2):
        return "paren"
    if m.group(3):
        return "numeral"
    return "bullet"


def _number(line: str) -> int | None:
    m = ITEM_RE.match(line)
    if m and m.group(1):
        return int(m.group(1))
    zh = "一二三四五六七八九十"
    token = m.group(2) or m.group(3) if m else None
    if token and len(token) == 1:
        return zh.index(token) + 1
    return None


def list_block(text: str, pos: int) -> list[ListItem]:
    """The list the position `pos` of `text` belongs to or introduces (≥ 2 items), else []."""
    lines = _lines(text)
    at = next((i for i, (a, b) in enumerate(lines) if a <= pos <= b), None)
    if at is None:
        return []
    kind = _marker_kind(text[slice(*lines[at])])
    if kind is None:
        # a line ending in a colon that introduces the list right below it
        intro = text[slice(*lines[at])].rstrip()
        if not intro.endswith(("：", ":")) or at + 1 >= len(lines):
            return []
        at += 1
        kind = _marker_kind(text[slice(*lines[at])])
        if kind is None:
            return []
    first = at
    while first > 0 and _marker_kind(text[slice(*lines[first - 1])]) == kind:
        first -= 1
    last = at
    while last + 1 < len(lines) and _marker_kind(text[slice(*lines[last + 1])]) == kind:
        last += 1
    items = [ListItem(_number(text[a:b]), a, b) for a, b in lines[first:last + 1]]
    return items if len(items) >= 2 else []


def item_at(items: list[ListItem], ordinal: int) -> ListItem | None:
    """The ordinal-th item (1-based; -1 = the last), by its own number when it has one."""
    if not items:
        return None
    if ordinal == -1:
        return items[-1]
    numbered = [it for it in items if it.number == ordinal]
    if numbered:
        return numbered[0]
    return items[ordinal - 1] if 0 < ordinal <= len(items) else None
