"""Files and folders -> documents and chunks, skipping (and reporting) what cannot be read."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from .chunking import chunk_document
from .errors import IngestError
from .readers import read_file
from .records import Chunk, Document


@dataclass
class IngestResult:
    documents: list[Document] = field(default_factory=list)
    chunks: list[Chunk] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def collect_files(paths: list[Path], corpus_dir: Path | None = None) -> list[tuple[Path, Path | None]]:
    """(file, root) pairs: folders are walked recursively in sorted order, hidden entries skipped.

    The root of a file found in a folder is that folder (doc_id = path relative to it).
    A file named directly keeps the doc_id it has in the corpus when it lies inside
    `corpus_dir`, so adding it again later replaces rather than duplicates it; any other
    file named directly is known by its name.
    """
    found: list[tuple[Path, Path | None]] = []
    for path in map(Path, paths):
        if path.is_dir():
            for file in sorted(path.rglob("*")):
                rel = file.relative_to(path)
                if file.is_file() and not any(part.startswith(".") for part in rel.parts):
                    found.append((file, path))
        else:
            inside = corpus_dir is not None and path.resolve().is_relative_to(Path(corpus_dir).resolve())
            found.append((path, Path(corpus_dir) if inside else None))
    return found


def ingest_paths(paths: list[Path], settings=None, progress: bool = True) -> IngestResult:
    """Read, clean and chunk every file under `paths`. Unreadable files land in `skipped`."""
    if settings is None:
        from settings import Settings

        settings = Settings()
    result = IngestResult()
    seen: dict[str, str] = {}
    files = collect_files(paths, settings.corpus_dir)
    bar = _progress(files, progress)
    for file, root in bar:
        if not file.exists():
            result.skipped.append((str(file), "no such file or directory"))
            continue
        try:
            doc = read_file(file, root=root, max_file_mb=settings.max_file_mb)
        except IngestError as exc:
            result.skipped.append((exc.path, exc.reason))
            continue
        if doc.doc_id in seen:
            result.skipped.append((str(file), f"duplicate doc_id {doc.doc_id!r} (already read from {seen[doc.doc_id]})"))
            continue
        seen[doc.doc_id] = str(file)
        result.documents.append(doc)
        result.chunks.extend(chunk_document(doc, settings.chunk_size, settings.chunk_overlap))
    return result


def _progress(files, enabled: bool):
    if not enabled:
        return files
    from tqdm import tqdm

    return tqdm(files, desc="ingest", unit="file", file=sys.stderr, leave=False)
