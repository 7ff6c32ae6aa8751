"""Cleaning of scraped pages: pinyin annotations, menus, headers and trailers.

Rules (each a small function below; ingest/README.md lists them with examples):
- characters: U+FFFD, control and zero-width characters removed; CRLF -> LF; lines stripped.
- pinyin: `當(dāng)` -> `當`. An annotation is lowercase Latin with at least one tone mark,
  in parentheses, right after a Han character — so (EIE), (附全文), (2024-2025年) stay.
  A garbled `?xún)` (a lost character with its annotation) is restored from the page's
  own annotations when that reading belongs to exactly one character elsewhere on the
  page (`?yōu)` -> 優, since the page writes 優(yōu)), and dropped otherwise.
- header: leading `source:` / `title:` / `date:` lines are parsed and removed.
- head of the page (lines before the first prose line): breadcrumbs (`a > b > c`,
  `當前位置:`), short `- item` menu entries, Latin-only lines in a Chinese page
  (`Network`), the dateline (`來源:… 日期:…`, `环球时报 2023-03-16 07:25`) and a
  repeat of the title are parsed/removed.
- anywhere: editor credits (`(責編:…)`), short `來源:` lines, short `©` photo credits.
- trailer: `相關文章推薦:` (and similar) and everything after it.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date as _date

from .script import HAN

TONED = "āáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜńňǹḿ"
_PY = f"a-zü{TONED}"
_HAN_CLASS = HAN.pattern[1:-1]
# 字(pīnyīn): the annotation must carry a tone mark, so real parentheses survive.
ANNOTATION = re.compile(rf"(?<=[{_HAN_CLASS}])\((?=[{_PY}]*[{TONED}])([{_PY}]{{1,7}})\)")
# ?xún) — a character lost to encoding damage, with the tail of its annotation.
ORPHAN = re.compile(rf"[?？\ufffd]\(?(?=[{_PY}]*[{TONED}])([{_PY}]{{1,7}})\)")
ANNOTATED_CHAR = re.compile(rf"([{_HAN_CLASS}])\(([{_PY}]{{1,7}})\)")

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff\ufffd]")
HEADER_LINE = re.compile(r"^(source|url|title|date|author|language)\s*:\s*(.*)$", re.I)
BREADCRUMB = re.compile(r"^(當前位置|当前位置|您的位置|您現在的位置|您现在的位置|位置)\s*[:：]|\S\s*>\s*\S.*>")
MENU_ITEM = re.compile(r"^[-*•·]\s*[^\s，,。：:；;！？!?]{1,16}$")
_LABELS = (
    "來源|来源|日期|發布時間|发布时间|發佈時間|發表時間|发表时间|更新時間|更新时间|時間|时间|點擊|点击|作者"
    "|Source|Date|Published|Posted"
)
DATE_LABEL = re.compile(rf"({_LABELS})\s*[:：]", re.I)
# "來源:高新院 achie.org 日期:…" -> "高新院 achie.org"
SOURCE_FIELD = re.compile(rf"(?:來源|来源|Source)\s*[:：]\s*(.*?)(?=\s*(?:{_LABELS})\s*[:：]|$)", re.I)
RELATED = re.compile(
    r"^(相關文章推薦|相关文章推荐|相關閱讀|相关阅读|相關新聞|相关新闻|延伸閱讀|延伸阅读|推薦閱讀|推荐阅读"
    r"|Related (articles|posts|news|stories))\s*[:：]?",
    re.I,
)
CREDIT = re.compile(r"^[(（]?\s*(責編|责编|責任編輯|责任编辑|編輯|编辑|校對|校对)\s*[:：/]")
SOURCE_LINE = re.compile(r"^(來源|来源)\s*[:：]")
PROSE_PUNCT = re.compile(r"[。，,；;！？!?]")
DOMAIN = re.compile(r"(https?://\S+|\b[a-z0-9-]+(\.[a-z0-9-]+)*\.(org|com|net|cn|gov|edu|eu|de|io|info)\b)", re.I)

MONTHS = {m: i + 1 for i, m in enumerate(
    "january february march april may june july august september october november december".split())}
MONTHS.update({m[:3]: i for m, i in list(MONTHS.items())})
_MONTH_RE = "|".join(sorted(MONTHS, key=len, reverse=True))
DATE_PATTERNS = [
    (re.compile(r"(?<!\d)(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})(?!\d)"), (1, 2, 3)),
    (re.compile(rf"\b(\d{{1,2}})\s+({_MONTH_RE})\.?,?\s+(\d{{4}})\b", re.I), (3, 2, 1)),
    (re.compile(rf"\b({_MONTH_RE})\.?\s+(\d{{1,2}}),?\s+(\d{{4}})\b", re.I), (3, 1, 2)),
]
URL_DATE_PATTERNS = [
    re.compile(r"/(\d{4})[/-](\d{1,2})[/-](\d{1,2})(?:/|$)"),
    re.compile(r"/(\d{4})/(\d{2})-?(\d{2})/"),
    re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})(?!\d)"),
]


@dataclass
class Cleaned:
    text: str  # cleaned, still in the original script
    title: str = ""
    source: str = ""
    date: str = ""
    meta: dict = field(default_factory=dict)


def remove_control_chars(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    return CONTROL.sub("", text)


def strip_pinyin(text: str) -> tuple[str, int, int]:
    """Remove pinyin annotations; repair or drop orphan fragments.

    Returns (text, annotations removed, orphans repaired or dropped).
    """
    readings: dict[str, Counter] = defaultdict(Counter)
    for char, reading in ANNOTATED_CHAR.findall(text):
        readings[reading][char] += 1

    def restore(match: re.Match) -> str:
        chars = readings.get(match.group(1))
        return next(iter(chars)) if chars and len(chars) == 1 else ""

    text, orphans = ORPHAN.subn(restore, text)
    text, annotations = ANNOTATION.subn("", text)
    return text, annotations, orphans


def parse_date(text: str) -> str:
    """First date in `text` as ISO YYYY-MM-DD, or ""."""
    found = []
    for pattern, (y, m, d) in DATE_PATTERNS:
        for match in pattern.finditer(text):
            month = match.group(m)
            month = MONTHS.get(month.lower()[:3] if not month.isdigit() else "", None) or (
                int(month) if month.isdigit() else None)
            iso = _iso(match.group(y), month, match.group(d))
            if iso:
                found.append((match.start(), iso))
    return min(found)[1] if found else ""


def date_from_url(url: str) -> str:
    for pattern in URL_DATE_PATTERNS:
        for match in pattern.finditer(url):
            iso = _iso(*match.groups())
            if iso:
                return iso
    return ""


def _iso(year, month, day) -> str:
    try:
        value = _date(int(year), int(month), int(day))
    except (TypeError, ValueError):
        return ""
    return value.isoformat() if 1990 <= value.year <= 2100 else ""


def _is_prose(line: str) -> bool:
    return len(line) >= 30 and bool(PROSE_PUNCT.search(line))


def clean_page(text: str, title: str = "", source: str = "", date: str = "") -> Cleaned:
    """Clean a page's text and pick up title/source/date from its header and dateline.

    The hints (from file metadata, e.g. HTML <title>) are used unless the page says better.
    """
    text = remove_control_chars(text)
    text, n_pinyin, n_orphans = strip_pinyin(text)
    lines = [line.strip() for line in text.split("\n")]
    meta: dict = {"pinyin_removed": n_pinyin, "garbled_fragments": n_orphans}
    dropped: list[str] = []

    # Leading "key: value" header lines (the related reports start with source:/title:).
    header: dict[str, str] = {}
    while lines and (not lines[0] or HEADER_LINE.match(lines[0])):
        match = HEADER_LINE.match(lines.pop(0))
        if match:
            header[match.group(1).lower()] = match.group(2).strip()
    title = header.get("title") or title
    source = header.get("source") or header.get("url") or source
    date = parse_date(header.get("date", "")) or date

    # Trailer: "related articles" and everything after.
    for i, line in enumerate(lines):
        if RELATED.match(line):
            dropped.extend(l for l in lines[i:] if l)
            lines = lines[:i]
            break

    # Latin-only lines at the head of a clearly Chinese page are menu residue ("Network").
    chinese = len(HAN.findall(text)) >= 5 * len(re.findall(r"[A-Za-z]+", text))
    head_end = next((i for i, line in enumerate(lines) if _is_prose(line)), len(lines))
    kept: list[str] = []
    title_candidates: list[tuple[int, str]] = []  # (line number, line)
    labelled_date = head_date = ""
    dateline_at = None
    for i, line in enumerate(lines):
        in_head = i < head_end
        drop = False
        if not line:
            kept.append(line)
            continue
        if in_head:
            if BREADCRUMB.search(line) or MENU_ITEM.match(line) or (chinese and not HAN.search(line) and len(line) < 40):
                drop = True
            elif DATE_LABEL.search(line) and len(line) < 80:  # the dateline
                dateline_at = i if dateline_at is None else dateline_at
                labelled_date = labelled_date or parse_date(line)
                src = SOURCE_FIELD.search(line)
                if src and src.group(1):
                    meta.setdefault("publisher", src.group(1).strip())
                drop = True
            elif len(line) < 40 and parse_date(line):  # "环球时报 2023-03-16 07:25"
                head_date = head_date or parse_date(line)
                drop = True
            elif title and _same_title(line, title):
                head_date = head_date or parse_date(line)
                drop = True
            elif len(line) <= 80:
                title_candidates.append((i, line))
        if not drop and (CREDIT.match(line) or (SOURCE_LINE.match(line) and len(line) < 40)
                         or (line.startswith("©") and len(line) < 80)):
            drop = True
        if drop:
            dropped.append(line)
        else:
            kept.append(line)

    above_dateline = [line for i, line in title_candidates if dateline_at is not None and i < dateline_at]
    if not title and above_dateline:
        # A scraped page's title sits right above its dateline: it is header, not text.
        title = above_dateline[-1]
        kept.remove(title)
        dropped.append(title)
    elif not title and title_candidates:
        # Otherwise the first short line names the document and stays in the text.
        title = title_candidates[0][1]
    publisher = meta.get("publisher", "")
    if not source and DOMAIN.search(publisher):  # "高新院 achie.org": the page names its site
        source = publisher
    date = date or labelled_date or head_date or date_from_url(source)

    body = re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()
    meta["lines_dropped"] = dropped
    return Cleaned(text=body, title=title, source=source, date=date, meta=meta)


def _same_title(line: str, title: str) -> bool:
    return re.sub(r"\s+", "", line) == re.sub(r"\s+", "", title)
