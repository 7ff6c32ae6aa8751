"""HTML for the chat page's answers and the document view. Everything taken from documents,
answers and users goes through html.escape; only http(s) sources become links.

An answer's `span` (docs/CONTRACTS.md: the exact answer inside citations[n-1].text, by
character offsets) is marked `<mark class="cqa-span">` inside the quote's `<mark>`.
"""

from __future__ import annotations

import html
import re
from urllib.parse import quote as urlquote


def esc(text) -> str:
    return html.escape(str(text if text is not None else ""), quote=True)


def br(escaped_html: str) -> str:
    """Newlines as <br>: a blank line would end the HTML block inside the chat's Markdown."""
    return escaped_html.replace("\r\n", "\n").replace("\n", "<br>")


def safe_href(url: str) -> str | None:
    """Only http(s) URLs become links: a source like "javascript:…" stays plain text."""
    return url if re.match(r"^https?://", url or "", re.I) else None


def span_range(text: str, span: dict | None, n: int) -> tuple[int, int] | None:
    """The answer span's offsets in citation n's text, if the span belongs to it and fits."""
    if not isinstance(span, dict) or span.get("citation") != n:
        return None
    start, end = span.get("start"), span.get("end")
    if isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text):
        return start, end
    pos = text.find(span.get("text") or "\0")  # offsets missing or stale: find the text itself
    return (pos, pos + len(span["text"])) if span.get("text") and pos >= 0 else None


def quote_range(text: str, quote: str) -> tuple[int, int] | None:
    pos = text.find(quote) if quote else -1
    return (pos, pos + len(quote)) if pos >= 0 else None


def marked(text: str, quote: tuple[int, int] | None, span: tuple[int, int] | None, convert=lambda s: s) -> str:
    """`text` escaped, the quote in <mark>, the span in <mark class="cqa-span"> (inside the
    quote's <mark> where they overlap, so the tags always nest)."""
    cuts = sorted({0, len(text), *(quote or ()), *(span or ())})
    out, in_q, in_s = [], False, False
    for a, b in zip(cuts, cuts[1:]):
        want_q = bool(quote and quote[0] <= a < quote[1])
        want_s = bool(span and span[0] <= a < span[1])
        if in_s and (not want_s or want_q != in_q):
            out.append("</mark>")
            in_s = False
        if want_q != in_q:
            out.append("<mark>" if want_q else "</mark>")
            in_q = want_q
        if want_s and not in_s:
            out.append('<mark class="cqa-span">')
            in_s = True
        out.append(esc(convert(text[a:b])))
    out += ["</mark>"] * (in_s + in_q)
    return "".join(out)


def doc_url(c: dict, language: str, prefix: str = "", span: dict | None = None) -> str:
    """Shareable link to the cited document, scrolled to the passage, quote (and span) marked.
    qs/qe and ss/se index the passage as shown (document offset = citation start + qs)."""
    text = c.get("text", "")
    params = f"script={urlquote(language)}&start={int(c.get('start', 0))}&end={int(c.get('end', 0))}"
    q = quote_range(text, c.get("quote", ""))
    if q:
        params += f"&qs={q[0]}&qe={q[1]}"
    s = span_range(text, span, int(c.get("n", 0)))
    if s:
        params += f"&ss={s[0]}&se={s[1]}"
    return f"{prefix}doc/{urlquote(c.get('doc_id', ''), safe='/')}?{params}#passage"


def citation_card(c: dict, turn: int, language: str, span: dict | None = None) -> str:
    n = int(c.get("n", 0))
    text = c.get("text", "")
    source = c.get("source", "")
    href = safe_href(source)
    source_html = (f'<a href="{esc(href)}" target="_blank" rel="noopener noreferrer">{esc(source)}</a>'
                   if href else f"<span>{esc(source)}</span>")
    date = f" · {esc(c['date'])}" if c.get("date") else ""
    passage = marked(text, quote_range(text, c.get("quote", "")), span_range(text, span, n))
    return (
        f'<details class="cqa-card" id="cite-{turn}-{n}">'
        f'<summary><b>[{n}]</b> {esc(c.get("title", ""))}{date}</summary>'
        f'<div class="cqa-source">来源 Source: {source_html} · '
        f'<a href="{esc(doc_url(c, language, span=span))}" target="_blank" rel="noopener">全文 Full document ↗</a></div>'
        f'<div class="cqa-passage">{br(passage)}</div>'
        f"</details>"
    )


def answer_html(answer: dict, turn: int) -> str:
    """One assistant message: the answer with [n] linked to its card, then the cards.

    Kept on one line: an HTML block in the chat's Markdown ends at a blank line.
    """
    cited = {int(c.get("n", 0)) for c in answer.get("citations", [])}

    def link(m: re.Match) -> str:
        n = int(m.group(1))
        return f'<a class="cqa-ref" href="#cite-{turn}-{n}">[{n}]</a>' if n in cited else esc(m.group(0))

    parts = re.split(r"(\[\d+\])", answer.get("answer", ""))
    body = "".join(link(re.match(r"\[(\d+)\]", p)) if re.fullmatch(r"\[\d+\]", p) else esc(p) for p in parts)
    body = br(body)
    note = f'<div class="cqa-note">{esc(answer["note"])}</div>' if answer.get("note") else ""
    language, span = answer.get("language", "zh-Hans"), answer.get("span")
    cards = "".join(citation_card(c, turn, language, span) for c in answer.get("citations", []))
    label = "" if answer.get("answered", True) else '<div class="cqa-source">最接近的段落 Nearest passages:</div>'
    sources = f'<div class="cqa-cards">{label}{cards}</div>' if cards else ""
    return (f'<div class="cqa-answer" data-turn="{turn}">{note}<div class="cqa-text">{body}</div>'
            f'<div class="cqa-tools"><a href="#" class="cqa-copy" role="button">复制 Copy</a></div>'
            f"{sources}</div>")


def plain_html(text: str, css_class: str = "cqa-text") -> str:
    return f'<div class="{css_class}">{br(esc(text))}</div>'


DOC_PAGE = """<!doctype html><html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><link rel="stylesheet" href="{prefix}web/doc.css"></head>
<body><header><h1>{title}</h1><p class="meta">{date}{source}</p>
<nav>{scripts}</nav></header><main><article class="doc">{body}</article></main></body></html>"""


def _valid(a: int | None, b: int | None, length: int) -> tuple[int, int] | None:
    return (a, b) if a is not None and b is not None and 0 <= a < b <= length else None


def render_document(doc, script: str, start: int, end: int, qs: int | None, qe: int | None, prefix: str,
                    ss: int | None = None, se: int | None = None) -> str:
    """The whole document in the reader's script; the passage has id="passage", the quote
    and the answer span are marked (their offsets index the passage; both scripts have the
    same length)."""
    convert = (lambda s: s)
    if script == "zh-Hant":
        from ingest.script import to_traditional

        convert = to_traditional
    text = doc.text
    start, end = max(0, min(start, len(text))), max(0, min(end, len(text)))
    if end > start:
        passage = text[start:end]
        inner = marked(passage, _valid(qs, qe, len(passage)), _valid(ss, se, len(passage)), convert)
        pieces = [esc(convert(text[:start])), f'<span id="passage" class="passage">{inner}</span>',
                  esc(convert(text[end:]))]
    else:
        pieces = [esc(convert(text))]
    href = safe_href(doc.source)
    source = (f' · <a href="{esc(href)}" rel="noopener noreferrer">{esc(doc.source)}</a>' if href
              else f" · {esc(doc.source)}")
    here = f"{prefix}doc/{urlquote(doc.doc_id, safe='/')}?start={start}&end={end}"
    for a, b, (na, nb) in ((qs, qe, ("qs", "qe")), (ss, se, ("ss", "se"))):
        if a is not None and b is not None:
            here += f"&{na}={a}&{nb}={b}"
    scripts = " · ".join(
        f'<a href="{esc(here)}&script={code}#passage">{label}</a>'
        for code, label in (("zh-Hans", "简体"), ("zh-Hant", "繁體"))
    )
    return DOC_PAGE.format(
        lang="en" if doc.language == "en" else ("zh-Hant" if script == "zh-Hant" else "zh-Hans"),
        title=esc(convert(doc.title)),
        date=esc(doc.date), source=source, scripts=scripts, body="".join(pieces), prefix=esc(prefix),
    )
