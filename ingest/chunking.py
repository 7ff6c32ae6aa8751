"""Chinese-aware sentence splitting and chunking with exact offsets.

Sentences end at 。！？；… (fullwidth or ASCII ! ? ;), at an English full stop followed
by a space (not inside numbers such as 1.58, not after abbreviations such as U.S. or
Dr.), and at every line break — so list items (`1. …`, `- …`) and ◎ headings, which sit
on their own lines in the corpus, are always boundaries. Closing quotes and brackets
stay with the sentence they close.

Chunks are runs of whole sentences, at most `chunk_size` characters from the first
sentence's start to the last one's end; the next chunk repeats the previous chunk's
last whole sentences up to `overlap` characters. Only a single sentence longer than
`chunk_size` is cut: at the last clause mark (，、,：: space) that fits, else hard.
A heading line never ends a chunk (it opens the next one); a heading that cannot
share a chunk with the sentence below it gets no chunk of its own — the chunks
below carry it in `heading`.
"""

from __future__ import annotations

import bisect
import re

from .records import Chunk, Document

# Sentence-final marks, with any closing quotes/brackets that follow them.
_CLOSERS = "”’」』）)》〉\"'"
# ASCII ! ? ; count only when no ASCII word character follows (not in "?id=3" or "&amp;").
CJK_END = re.compile(rf"(?:[。！？；]+[!?;]*|[!?;]+(?![A-Za-z0-9=&/%_.-])|…+|\.{{3,}})[{_CLOSERS}]*")
ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "st", "no", "vs", "etc", "e.g", "i.e", "inc", "ltd", "co", "jr", "sr"}
CLAUSE = re.compile(r"[，、,：:]|\s")

# Headings (see README): ◎ lines, markdown #, short lines ending with a colon,
# numbered section titles, and short standalone lines without sentence punctuation.
MAX_HEADING = 40
NUMBERED_TITLE = re.compile(r"^(第[一二三四五六七八九十百\d]+[章节節部分篇条條]|[一二三四五六七八九十]+、|[（(][一二三四五六七八九十]+[）)])")
SENTENCE_PUNCT = re.compile(r"[。！？!?；;，,]|\.(\s|$)")


def split_sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) spans of the sentences in `text`, whitespace excluded."""
    spans: list[tuple[int, int]] = []
    pos = 0
    for line in text.split("\n"):
        spans.extend(_split_line(line, pos))
        pos += len(line) + 1
    return spans


def _split_line(line: str, offset: int) -> list[tuple[int, int]]:
    ends = {m.end() for m in CJK_END.finditer(line)}
    for m in re.finditer(r"\.[" + re.escape(_CLOSERS) + r"]*(?=\s|$)", line):
        if _is_full_stop(line, m.start()):
            ends.add(m.end())
    spans, start = [], 0
    for end in sorted(ends) + [len(line)]:
        piece = line[start:end]
        if piece.strip():
            lead = len(piece) - len(piece.lstrip())
            trail = len(piece) - len(piece.rstrip())
            spans.append((offset + start + lead, offset + end - trail))
        start = end
    return spans


def _is_full_stop(line: str, i: int) -> bool:
    """Is the '.' at line[i] (followed by space/end) the end of a sentence?"""
    word = re.search(r"(\S+)$", line[:i])
    token = word.group(1) if word else ""
    if not token:
        return False
    if re.fullmatch(r"\d+", token) and not line[:i - len(token)].strip():
        return False  # "1. item": a list number, not a sentence
    bare = token.lower().lstrip("(\"'“")
    if bare in ABBREVIATIONS or re.fullmatch(r"([a-z]\.)*[a-z]", bare):
        return False  # Dr. / e.g. / U.S. / single initials
    return True


def find_headings(text: str) -> list[tuple[int, str]]:
    """(offset, heading text) for each heading line, in order."""
    headings: list[tuple[int, str]] = []
    lines = text.split("\n")
    pos = 0
    for i, line in enumerate(lines):
        heading = _heading_of(line.strip(), lines, i)
        if heading:
            headings.append((pos + len(line) - len(line.lstrip()), heading))
        pos += len(line) + 1
    return headings


def _heading_of(line: str, lines: list[str], i: int) -> str:
    if not line:
        return ""
    if line.startswith("◎"):
        # "◎跨国合作:国家集群联盟…" — the heading is the part before the colon.
        return re.split(r"[:：。]", line[1:], maxsplit=1)[0].strip()[:MAX_HEADING]
    if line.startswith("#"):
        return line.lstrip("#").strip()[:MAX_HEADING * 2]
    if len(line) > MAX_HEADING * 2:
        return ""
    if line[-1] in ":：" and len(line) <= MAX_HEADING:
        return line[:-1].strip()
    if NUMBERED_TITLE.match(line) and len(line) <= MAX_HEADING and not SENTENCE_PUNCT.search(line):
        return line
    standalone = (i == 0 or not lines[i - 1].strip()) and (i + 1 >= len(lines) or not lines[i + 1].strip())
    if standalone and len(line) <= MAX_HEADING * 2 and not SENTENCE_PUNCT.search(line) and line[-1] not in ".。":
        return line
    return ""


def _units(text: str, chunk_size: int) -> list[tuple[int, int, bool]]:
    """Sentences, with any sentence longer than chunk_size cut into pieces.

    Returns (start, end, whole) where whole is False for pieces of a cut sentence.
    """
    units = []
    for start, end in split_sentences(text):
        if end - start <= chunk_size:
            units.append((start, end, True))
            continue
        while end - start > chunk_size:
            limit = start + chunk_size
            cuts = [m.end() for m in CLAUSE.finditer(text, start + chunk_size // 2, limit)]
            cut = cuts[-1] if cuts else limit
            piece_end = cut
            while piece_end > start and text[piece_end - 1].isspace():
                piece_end -= 1
            units.append((start, piece_end, False))
            start = cut
            while start < end and text[start].isspace():
                start += 1
        if end > start:
            units.append((start, end, False))
    return units


def chunk_document(doc: Document, chunk_size: int = 350, overlap: int = 60) -> list[Chunk]:
    """Pack whole sentences of doc.text into chunks; doc.text[start:end] == chunk.text."""
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    text = doc.text
    units = _units(text, chunk_size)
    headings = find_headings(text)
    heading_starts = {pos for pos, _ in headings}
    chunks: list[Chunk] = []
    i = 0
    first_new = 0  # every chunk must reach at least this unit (no chunk inside another)
    while i < len(units):
        j = i
        while j + 1 < len(units) and units[j + 1][1] - units[i][0] <= chunk_size:
            j += 1
        if j > max(i, first_new) and j + 1 < len(units) and units[j][0] in heading_starts:
            j -= 1  # a heading belongs with the text below it, not at the end of a chunk
        if j == i and i + 1 < len(units) and units[i][0] in heading_starts:
            # A heading too long to share a chunk with its first sentence: it is not
            # worth a chunk of its own; the chunks below carry it as their `heading`.
            i = first_new = i + 1
            continue
        start, end = units[i][0], units[j][1]
        chunks.append(Chunk(
            doc_id=doc.doc_id,
            chunk_id=f"{doc.doc_id}#{len(chunks)}",
            title=doc.title,
            source=doc.source,
            date=doc.date,
            heading=_heading_at(headings, start),
            start=start,
            end=end,
            text=text[start:end],
            language=doc.language,
        ))
        if j + 1 >= len(units):
            break
        first_new = j + 1
        i = _next_start(units, i, j, overlap, chunk_size)
    return chunks


def _next_start(units, i: int, j: int, overlap: int, chunk_size: int) -> int:
    """First unit of the next chunk: repeat trailing whole sentences up to `overlap` chars,
    as long as the next chunk still gains the following unit (no chunk inside another)."""
    k = j + 1
    while k - 1 > i and units[j][1] - units[k - 1][0] <= overlap:
        k -= 1
    while k <= j and units[j + 1][1] - units[k][0] > chunk_size:
        k += 1
    return k


def _heading_at(headings: list[tuple[int, str]], offset: int) -> str:
    i = bisect.bisect_right(headings, offset, key=lambda h: h[0])
    return headings[i - 1][1] if i else ""
