"""Uploads: typed by their bytes (never by extension), stored under names that stay inside
upload_dir, then indexed; and the document records the API, the page and MCP list."""

from __future__ import annotations

import io
import logging
import re
import unicodedata
import zipfile
from pathlib import Path

log = logging.getLogger("clusterqa.server")


class UploadError(Exception):
    def __init__(self, message: str, status: int = 415):
        super().__init__(message)
        self.status = status


def sniff_upload(data: bytes, filename: str) -> str:
    """The file's real type as an extension, judged from its bytes (the name only picks .md)."""
    if data.startswith(b"%PDF-"):
        return ".pdf"
    if data.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                if "word/document.xml" in zf.namelist():
                    return ".docx"
        except zipfile.BadZipFile:
            pass
        raise UploadError("unsupported file type: a zip archive that is not a .docx document")
    if not data.strip():
        raise UploadError("the file is empty", status=400)
    if b"\x00" in data and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise UploadError("unsupported file type: binary data (only txt, md, html, pdf, docx)")
    text = None
    for encoding in ("utf-8-sig", "utf-16", "gb18030"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    if text is None or sum(1 for ch in text[:4000] if unicodedata.category(ch) == "Cc" and ch not in "\r\n\t") > 8:
        raise UploadError("unsupported file type: not text, pdf or docx")
    head = text.lstrip()[:1000].lower()
    if head.startswith(("<!doctype html", "<html")) or "<body" in head:
        return ".html"
    if Path(filename).suffix.lower() in (".md", ".markdown"):
        return ".md"
    return ".txt"


def safe_filename(filename: str, ext: str) -> str:
    """A plain file name (no directories, no leading dots) with the sniffed extension."""
    stem = Path(filename.replace("\\", "/")).name
    stem = Path(stem).stem if Path(stem).suffix else stem
    stem = re.sub(r"[^\w.-]+", "_", unicodedata.normalize("NFKC", stem)).strip("._-")[:80]
    return (stem or "upload") + ext


def upload_target(upload_dir: Path, filename: str, ext: str) -> Path:
    upload_dir = Path(upload_dir).resolve()
    target = (upload_dir / safe_filename(filename, ext)).resolve()
    if target.parent != upload_dir:  # cannot happen after safe_filename; checked anyway
        raise UploadError("bad file name", status=400)
    return target


def ingest_upload(service, data: bytes, filename: str, progress=None) -> dict:
    """Check, store and index one uploaded file; returns the index's summary."""
    limit = service.settings.max_upload_mb * 1024 * 1024
    if len(data) > limit:
        raise UploadError(f"file too large (limit {service.settings.max_upload_mb:g} MB)", status=413)
    service.require_engine()
    ext = sniff_upload(data, filename)
    target = upload_target(service.settings.upload_dir, filename, ext)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(target)
    summary = service.index.add_paths([target], progress=progress)
    log.info("uploaded %s (%d bytes): %s", target.name, len(data), summary)
    return {"file": target.name, "type": ext.lstrip("."), "summary": summary}


def remove_document(service, doc_id: str) -> int:
    """Drop a document from the index and, if it was uploaded, its stored file."""
    service.require_engine()
    doc = service.index.get_document(doc_id)
    if doc is None:
        return 0
    removed = service.index.remove([doc_id])
    upload_dir = Path(service.settings.upload_dir).resolve()
    stored = Path(doc.path).resolve() if doc.path else None
    if removed and stored and stored.parent == upload_dir and stored.is_file():
        stored.unlink()
    log.info("removed %s", doc_id)
    return removed


def list_documents(index) -> list[dict]:
    return [document_record(index, d) for d in index.documents()]


def document_record(index, doc, with_text: bool = False) -> dict:
    """One document as the API and MCP return it (docs/CONTRACTS.md, Document)."""
    out = {"doc_id": doc.doc_id, "title": doc.title, "date": doc.date, "language": doc.language,
           "source": doc.source, "chunks": len(index.chunks_of(doc.doc_id))}
    if with_text:
        out["text"] = doc.text
    return out
