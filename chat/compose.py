"""Turning the reader's span into the answer text, its numbered citations and the span record.

Layout of an extractive answer (each line ends with its [n] marker, n → citations[n-1]):

    答：<the span>[1]                                  the short answer first
    根据文档：<the 1–3 sentences around the span>[1]   the evidence it sits in

List answers: the count, then one line per item. Metadata answers: one line citing the
document. A citation's `quote` is the stretch of its passage the answer relies on (always a
substring of `text`, checked after rendering into the asker's script); `Answer.span` gives
the span's offsets inside citations[n-1].text so every view can highlight it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ingest.chunking import split_sentences

from .language import EN, HANT, is_chinese_text, message, render
from .records import Citation

EN_OPEN_QUOTE, EN_CLOSE_QUOTE = "“", "”"
MAX_ANSWER_CHARS = 300  # the whole extractive answer: short answer, evidence, openings, markers
MAX_EVIDENCE_CHARS = 240  # the sentences around the span, at most
MIN_EVIDENCE_CHARS = 60  # what a long short-answer line still leaves the evidence
MAX_EVIDENCE_SENTENCES = 3


@dataclass
class Composed:
    text: str
    citations: list[Citation]
    span: dict | None


def evidence_window(text: str, start: int, end: int, budget: int = MAX_EVIDENCE_CHARS) -> tuple[int, int]:
    """Offsets of the 1–3 sentences of `text` around [start, end): the sentence holding the
    span, then its neighbours (the next one first: answers are often followed by their
    detail) while they fit in `budget` characters and stay in the span's paragraph; a very
    long sentence is cut around the span."""
    spans = split_sentences(text) or [(0, len(text))]
    at = next((i for i, (a, b) in enumerate(spans) if a <= start < b), None)
    if at is None:
        at = min(range(len(spans)), key=lambda i: abs(spans[i][0] - start))
    lo = hi = at
    while hi + 1 < len(spans) and spans[hi][1] < end:  # a span across a sentence end
        hi += 1
    # neighbours while they fit (until 2026-12-03 only while under 60 characters: filling the
    # evidence raised answer recall on the held-out split, chat/README.md)
    for step in (1, -1, 1, -1):  # the next sentence first
        size = spans[hi][1] - spans[lo][0]
        if hi - lo + 1 >= MAX_EVIDENCE_SENTENCES:
            break
        j = hi + 1 if step == 1 else lo - 1
        if not 0 <= j < len(spans):
            continue
        a, b = spans[j]
        between = text[spans[hi][1]:a] if step == 1 else text[b:spans[lo][0]]
        if size + (b - a) <= budget and "\n" not in between:  # same paragraph only
            lo, hi = min(lo, j), max(hi, j)
    a, b = spans[lo][0], spans[hi][1]
    if b - a > budget:  # one long sentence: a window centred on the span
        half = max(0, (budget - (end - start)) // 2)
        a = max(a, start - half)
        b = min(b, max(end + half, a + budget))
    return a, b


def _shown(text: str, language: str) -> str:
    """A piece of a passage as the asker sees it: rendered for zh askers, quoted for English
    askers when it is Chinese (never translated: no offline translator exists)."""
    text = " ".join(text.split("\n"))  # one answer line per piece of evidence
    if is_chinese_text(text):
        text = render(text, language)
        return f"{EN_OPEN_QUOTE}{text}{EN_CLOSE_QUOTE}" if language == EN else text
    return text


def _line(text: str, n: int, language: str) -> str:
    return f"{text} [{n}]" if language == EN else f"{text}[{n}]"


def _openings(passage_text: str, language: str) -> tuple[str, str]:
    chinese = is_chinese_text(passage_text)
    if language == EN and chinese:
        return message("short_answer_quoted_zh", language), message("opening_quoted_zh", language)
    if language != EN and not chinese:
        return message("short_answer_quoted_en", language), message("opening_quoted_en", language)
    return message("short_answer", language), message("opening", language)


def compose_span(hit, start: int, end: int, language: str) -> Composed:
    """Short answer hit.chunk.text[start:end] first, then the sentences around it."""
    text = hit.chunk.text
    short_open, evidence_open = _openings(text, language)
    sep = " " if language == EN else ""
    short = _line(short_open + sep + _shown(text[start:end], language), 1, language)
    overhead = len(short) + 1 + len(_line(evidence_open + sep + EN_OPEN_QUOTE + EN_CLOSE_QUOTE, 1, language))
    a, b = evidence_window(text, start, end, max(MIN_EVIDENCE_CHARS, min(MAX_EVIDENCE_CHARS, MAX_ANSWER_CHARS - overhead)))
    lines = [short, _line(evidence_open + sep + _shown(text[a:b], language), 1, language)]
    if start <= a and b <= end:  # a long span leaves no room around it: do not repeat it
        lines = [short]
    citation = make_citation(hit, 1, a, b, language)
    return Composed("\n".join(lines), [citation], span_record(hit, citation, start, end, language))


def compose_list(items: list, language: str, ordinal_item=None) -> Composed:
    """`items`: [(hit, start, end)] list lines in reading order, each inside hit.chunk.text.
    With `ordinal_item` (one of them) only that item is the answer."""
    if ordinal_item is not None:
        hit, start, end = ordinal_item
        return compose_span(hit, start, end, language)
    numbers: dict[str, int] = {}
    ranges: dict[str, list] = {}
    for hit, start, end in items:
        cid = hit.chunk.chunk_id
        numbers.setdefault(cid, len(numbers) + 1)
        ranges.setdefault(cid, [hit, start, end])
        ranges[cid][1], ranges[cid][2] = min(ranges[cid][1], start), max(ranges[cid][2], end)
    _, evidence_open = _openings(items[0][0].chunk.text[items[0][1]:items[0][2]], language)
    sep = " " if language == EN else ""
    lines = [evidence_open + sep + message("list_count", language, k=len(items))]
    lines += [_line(_shown(hit.chunk.text[s:e], language), numbers[hit.chunk.chunk_id], language)
              for hit, s, e in items]
    citations = [make_citation(h, numbers[cid], s, e, language) for cid, (h, s, e) in ranges.items()]
    hit, s, e = items[0]
    return Composed("\n".join(lines), citations, span_record(hit, citations[0], s, e, language))


def compose_metadata(hit, field: str, value: str, language: str) -> Composed:
    """One line stating the document's date / publisher / title, citing its first passage."""
    title = render(hit.chunk.title, language) if language != EN else hit.chunk.title
    line = _line(message(f"metadata_{field}", language, title=title, value=value), 1, language)
    spans = split_sentences(hit.chunk.text) or [(0, len(hit.chunk.text))]
    citation = make_citation(hit, 1, spans[0][0], spans[0][1], language)
    return Composed(line, [citation], None)


def span_record(hit, citation: Citation, start: int, end: int, language: str) -> dict:
    """{"text", "citation", "start", "end"}: the span's offsets inside citation.text (the
    rendered passage) and its document offsets via citation.start + start."""
    _, shown = render_quote(hit.chunk.text, start, end, language)
    pos = citation.text.find(shown, max(0, start - 8))
    if pos < 0:
        pos = citation.text.find(shown)
    if pos < 0:
        pos, shown = start, citation.text[start:end]
    return {"text": shown, "citation": citation.n, "start": pos, "end": pos + len(shown)}


def make_citation(hit, n: int, quote_start: int, quote_end: int, language: str) -> Citation:
    """A citation of hit.chunk quoting chunk.text[quote_start:quote_end], in the asker's script."""
    chunk = hit.chunk
    text, quote = render_quote(chunk.text, quote_start, quote_end, language)
    title = render(chunk.title, language) if language == HANT else chunk.title  # titles in the asker's script
    return Citation(
        n=n, doc_id=chunk.doc_id, title=title, source=chunk.source, date=chunk.date,
        chunk_id=chunk.chunk_id, text=text, quote=quote, start=chunk.start, end=chunk.end,
        score=float(hit.score),
    )


def render_quote(text: str, start: int, end: int, language: str) -> tuple[str, str]:
    """(passage, quote) in the asker's script with the quote still a substring of the passage.

    OpenCC converts phrase by phrase, so a quote converted on its own can differ from the
    same words converted in context; then the quote is cut from the converted passage at the
    same offsets (conversion of this kind keeps lengths), and failing that the quote becomes
    the whole passage."""
    quote = text[start:end]
    if language != HANT:
        return text, quote
    rendered_text, rendered_quote = render(text, HANT), render(quote, HANT)
    if rendered_quote in rendered_text:
        return rendered_text, rendered_quote
    if len(rendered_text) == len(text):
        return rendered_text, rendered_text[start:end]
    return rendered_text, rendered_text


def nearest_citations(hits: list, language: str, limit: int = 3) -> list[Citation]:
    """For a refusal: the nearest passages, quoting their opening sentence."""
    out = []
    for n, hit in enumerate(hits[:limit], start=1):
        spans = split_sentences(hit.chunk.text) or [(0, len(hit.chunk.text))]
        out.append(make_citation(hit, n, spans[0][0], spans[0][1], language))
    return out
