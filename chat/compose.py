"""Turning chosen sentences into the answer text and its numbered citations.

The opening ("根据文档：" / "According to the documents:") starts the first line; each answer
sentence sits on its own line and ends with [n], n pointing at citations[n-1];
citations are numbered in the order the answer uses them. A citation's `quote` is the
stretch of its passage from the first to the last sentence relied on — always a substring
of `text`, checked after rendering into the asker's script.
"""

from __future__ import annotations

from .language import EN, HANT, is_chinese_text, message, render
from .records import Citation

EN_OPEN_QUOTE, EN_CLOSE_QUOTE = "“", "”"


def compose_extractive(selected: list, language: str) -> tuple[str, list[Citation]]:
    """Answer text and citations for sentences already in reading order."""
    numbers: dict[str, int] = {}
    groups: dict[str, list] = {}
    for s in selected:
        cid = s.hit.chunk.chunk_id
        if cid not in numbers:
            numbers[cid] = len(numbers) + 1
            groups[cid] = []
        groups[cid].append(s)

    chinese_evidence = any(is_chinese_text(s.text) for s in selected)
    english_evidence = any(not is_chinese_text(s.text) for s in selected)
    if language == EN:
        key = ("opening_mixed_zh" if english_evidence else "opening_quoted_zh") if chinese_evidence else "opening"
    else:
        key = ("opening_mixed_en" if chinese_evidence else "opening_quoted_en") if english_evidence else "opening"
    opening = message(key, language)

    lines = []
    for s in selected:
        n = numbers[s.hit.chunk.chunk_id]
        text = render(s.text, language) if is_chinese_text(s.text) else s.text
        if language == EN and is_chinese_text(s.text):
            lines.append(f"{EN_OPEN_QUOTE}{text}{EN_CLOSE_QUOTE} [{n}]")  # a quote, not a translation
        elif language == EN:
            lines.append(f"{text} [{n}]")
        else:
            lines.append(f"{text}[{n}]")

    # the opening shares the first line, so it is not counted as a sentence of its own
    lines[0] = opening + (" " if language == EN else "") + lines[0]

    citations = []
    for cid, sentences in groups.items():
        start = min(s.start for s in sentences)
        end = max(s.end for s in sentences)
        citations.append(make_citation(sentences[0].hit, numbers[cid], start, end, language))
    return "\n".join(lines), citations


def make_citation(hit, n: int, quote_start: int, quote_end: int, language: str) -> Citation:
    """A citation of hit.chunk quoting chunk.text[quote_start:quote_end], in the asker's script."""
    chunk = hit.chunk
    text, quote = render_quote(chunk.text, quote_start, quote_end, language)
    return Citation(
        n=n, doc_id=chunk.doc_id, title=chunk.title, source=chunk.source, date=chunk.date,
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
    from ingest.chunking import split_sentences

    out = []
    for n, hit in enumerate(hits[:limit], start=1):
        spans = split_sentences(hit.chunk.text) or [(0, len(hit.chunk.text))]
        out.append(make_citation(hit, n, spans[0][0], spans[0][1], language))
    return out
