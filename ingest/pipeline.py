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

    doc_id = path relative to root. A file inside `corpus_dir` is rooted there however it
    arrives (the whole corpus, a subfolder, or the file alone), so it keeps one doc_id and
    adding it again replaces rather than duplicates it. Other files are rooted at the
    folder they were found in; a file named directly has no root (doc_id = its name).
    """
    corpus = Path(corpus_dir).resolve() if corpus_dir is not None else None
    found: list[tuple[Path, Path | None]] = []
    for path in map(Path, paths):
        if path.is_dir():
            pairs = [(file, path) for file in sorted(path.rglob("*"))
                     if file.is_file() and not any(p.startswith(".") for p in file.relative_to(path).parts)]
        else:
            pairs = [(path, None)]
        for file, root in pairs:
            if corpus is not None and file.resolve().is_relative_to(corpus):
                root = corpus
            found.append((file, root))
    return found


def ingest_paths(paths: list[Path], settings=None, progress=True) -> IngestResult:
    """Read, clean and chunk every file under `paths`. Unreadable files land in `skipped`.

    progress: True for a tqdm bar on stderr, False for none, or a callable
    progress("ingest", done, total) called before each file and once at the end.
    """
    if settings is None:
        from settings import Settings

        settings = Settings()
    result = IngestResult()
    seen: dict[str, str] = {}
    files = collect_files(paths, settings.corpus_dir)
    bar = _progress(files, progress)
    for n, (file, root) in enumerate(bar):
        if callable(progress):
            progress("ingest", n, len(files))
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
    if callable(progress):
        progress("ingest", len(files), len(files))
    return result


def _progress(files, progress):
    if not progress or callable(progress):
        return files
    from tqdm import tqdm

    return tqdm(files, desc="ingest", unit="file", file=sys.stderr, leave=False)
