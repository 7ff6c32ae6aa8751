"""Readers: one file -> one Document (cleaned, canonical Simplified text).

Each format reader returns raw text plus whatever metadata the format carries
(title, date, URL); `read_file` then applies the same cleaning, script normalisation
and metadata rules to all of them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from .cleaning import clean_page, parse_date
from .decoding import DecodeError, decode_bytes
from .errors import IngestError
from .records import Document
from .script import HAN, detect_script, to_simplified

DEFAULT_MAX_FILE_MB = 20.0


@dataclass
class RawText:
    text: str
    encoding: str = ""
    title: str = ""
    source: str = ""
    date: str = ""
    meta: dict = field(default_factory=dict)
    original: str = ""  # the decoded file when it differs from `text` (HTML source)


def _decode(path: Path, data: bytes, declared: str | None = None) -> tuple[str, str]:
    try:
        return decode_bytes(data, declared)
    except DecodeError as exc:
        raise IngestError(path, str(exc)) from None


def read_text(path: Path, data: bytes) -> RawText:
    text, encoding = _decode(path, data)
    return RawText(text, encoding)


MD_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
MD_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
MD_EMPHASIS = re.compile(r"(\*\*|__|`)")


def read_markdown(path: Path, data: bytes) -> RawText:
    text, encoding = _decode(path, data)
    # Keep headings (`#`) for chunk headings; drop link targets, images and emphasis markers.
    text = MD_EMPHASIS.sub("", MD_LINK.sub(r"\1", MD_IMAGE.sub("", text)))
    title = ""
    if not re.match(r"^\s*(source|title)\s*:", text, re.I):
        first_heading = re.search(r"^#\s+(.+)$", text, re.M)
        title = first_heading.group(1).strip() if first_heading else ""
    return RawText(text, encoding, title=title)


META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_-]+)""", re.I)


def read_html(path: Path, data: bytes) -> RawText:
    import trafilatura

    declared = META_CHARSET.search(data[:4096])
    html, encoding = _decode(path, data, declared.group(1).decode("ascii") if declared else None)
    # Main text only: trafilatura drops navigation, headers, footers and comments.
    text = trafilatura.extract(html, include_comments=False, include_tables=True, favor_precision=True)
    if not text:  # very short pages fall under trafilatura's size thresholds
        text = trafilatura.extract(html, include_comments=False, include_tables=True, favor_recall=True)
    if not text:
        raise IngestError(path, "no main text found in the HTML page")
    meta = trafilatura.extract_metadata(html)
    return RawText(
        text,
        encoding,
        title=(meta.title or "") if meta else "",
        source=(meta.url or "") if meta else "",
        date=parse_date(meta.date or "") if meta and meta.date else "",
        original=html,
    )


def read_pdf(path: Path, data: bytes) -> RawText:
    import io

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise IngestError(path, "PDF is encrypted")
        # Some CID fonts come out with NULs between Latin letters; they carry no text.
        pages = [(page.extract_text() or "").replace("\x00", "") for page in reader.pages]
        info = reader.metadata
    except IngestError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise IngestError(path, f"unreadable PDF ({exc})") from None
    text = "\n\n".join(_unwrap_lines(page) for page in pages)
    if not text.strip():
        raise IngestError(path, "PDF has no extractable text (scanned images?)")
    title = (info.title or "") if info else ""
    created = ""
    if info and info.get("/CreationDate"):
        raw = str(info.get("/CreationDate"))  # D:YYYYMMDDHHmmSS
        match = re.match(r"D:(\d{4})(\d{2})(\d{2})", raw)
        created = f"{match[1]}-{match[2]}-{match[3]}" if match else ""
    return RawText(text, "pdf", title=title, date=created, meta={"pages": len(pages)})


SENTENCE_END = re.compile(r"[。！？!?；;:：.…”’」』)）]$")


def _unwrap_lines(page: str) -> str:
    """Join a PDF's visual lines back into paragraphs.

    A line that does not end a sentence continues on the next one: joined with a
    space between Latin words, directly between Chinese characters.
    """
    out: list[str] = []
    for line in (re.sub(r"[ \t]{2,}", " ", l).strip() for l in page.splitlines()):
        if not line:
            if out and out[-1] != "":
                out.append("")
            continue
        if out and out[-1] and not SENTENCE_END.search(out[-1]) and not re.match(r"^([-•*]|\d+[.)、])\s", line):
            joiner = "" if HAN.search(out[-1][-1]) or HAN.search(line[0]) else " "
            out[-1] = out[-1] + joiner + line
        else:
            out.append(line)
    return "\n".join(out)


def read_docx(path: Path, data: bytes) -> RawText:
    import io
    import zipfile

    import docx

    try:
        document = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise IngestError(path, f"unreadable .docx ({exc})") from None
    lines: list[str] = []
    for paragraph in document.paragraphs:
        text = paragraph.text.strip()
        if not text:
            continue
        if paragraph.style is not None and paragraph.style.name.lower().startswith(("heading", "title")):
            lines += ["", text, ""]  # a standalone line: chunking treats it as a heading
        else:
            lines.append(text)
    for table in document.tables:
        for row in table.rows:
            cells = [cell.text.strip() for cell in row.cells]
            if any(cells):
                lines.append(" | ".join(cells))
    props = document.core_properties
    return RawText(
        "\n".join(lines),
        "docx",
        title=props.title or "",
        date=props.created.date().isoformat() if props.created else "",
    )


READERS = {
    ".txt": read_text,
    ".text": read_text,
    ".md": read_markdown,
    ".markdown": read_markdown,
    ".html": read_html,
    ".htm": read_html,
    ".pdf": read_pdf,
    ".docx": read_docx,
}


def supported(path: Path) -> bool:
    return path.suffix.lower() in READERS


def doc_id_for(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            pass
    return path.name


def read_file(path: Path, root: Path | None = None, max_file_mb: float = DEFAULT_MAX_FILE_MB) -> Document:
    """Read, clean and normalise one file. Raises IngestError naming the file."""
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise IngestError(path, f"unsupported file type {path.suffix or '(no extension)'!r}"
                                f" (supported: {', '.join(sorted(READERS))})")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise IngestError(path, f"cannot read file ({exc.strerror or exc})") from None
    if size > max_file_mb * 1024 * 1024:
        raise IngestError(path, f"file too large ({size / 1024 / 1024:.1f} MB > {max_file_mb:g} MB limit)")
    if size == 0:
        raise IngestError(path, "empty file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IngestError(path, f"cannot read file ({exc.strerror or exc})") from None

    raw = reader(path, data)
    cleaned = clean_page(raw.text, title=raw.title, source=raw.source, date=raw.date)
    if not cleaned.text.strip():
        raise IngestError(path, "no text left after cleaning")

    original_script = detect_script(cleaned.text)
    text = to_simplified(cleaned.text)
    han = len(HAN.findall(text))
    latin_words = len(re.findall(r"[A-Za-z]+", text))
    title = to_simplified(cleaned.title.strip()) or path.stem
    if "publisher" in cleaned.meta:
        cleaned.meta["publisher"] = to_simplified(cleaned.meta["publisher"])
    meta = {
        "encoding": raw.encoding,
        "format": path.suffix.lower().lstrip("."),
        "original_script": original_script,
        **raw.meta,
        **{k: v for k, v in cleaned.meta.items() if k != "lines_dropped"},
        "lines_dropped": len(cleaned.meta.get("lines_dropped", [])),
    }
    return Document(
        doc_id=doc_id_for(path, root),
        title=title,
        source=to_simplified(cleaned.source) if cleaned.source and "://" not in cleaned.source
        else cleaned.source or str(path),
        date=cleaned.date,
        language="zh" if han >= latin_words else "en",
        text=text,
        original_text=raw.original or raw.text,
        path=str(path),
        content_hash=hashlib.sha256(data).hexdigest(),
        meta=meta,
    )
