"""On-disk layout of an index directory, written atomically.

    INDEX_DIR/
      current            name of the live version (one line), replaced with os.replace
      v<time>-<pid>/     one complete version:
        manifest.json    model, chunking, tokenizer, per-file hashes, counts, data-file checksums
        documents.jsonl  one Document per line
        chunks.jsonl     {"label": int, "tokens": [...], "chunk": {...}} per line (BM25 rebuilds from tokens)
        dense.faiss      FAISS IndexIDMap2 keyed by the chunk labels
      .lock              flock'd while a writer works

A writer fills `v….tmp/`, renames it to `v…/`, then atomically repoints `current`.
Readers only ever follow `current`, so a killed writer leaves the previous version
live and loadable; leftovers are swept by the next writer. The previous version is
kept one round so a reader that just read `current` can still open it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from .errors import IndexError_

FORMAT_VERSION = 1
POINTER = "current"
MANIFEST = "manifest.json"
DATA_FILES = ("documents.jsonl", "chunks.jsonl", "dense.faiss")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def writer_lock(index_dir: Path):
    """One writer per index directory at a time (across processes)."""
    index_dir.mkdir(parents=True, exist_ok=True)
    with open(index_dir / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def current_version(index_dir: Path) -> Path | None:
    """The live version directory, or None when there is no index here."""
    try:
        name = (index_dir / POINTER).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise IndexError_(f"cannot read {index_dir / POINTER}: {exc}", str(index_dir / POINTER)) from None
    version = index_dir / name
    if not name or "/" in name or not (version / MANIFEST).is_file():
        raise IndexError_(
            f"{index_dir / POINTER} points to {name!r}, which is not a complete index version",
            str(index_dir / POINTER),
        )
    return version


def write_version(index_dir: Path, write_files, manifest: dict) -> Path:
    """Write a new version with `write_files(tmp_dir)` and make it live atomically.

    `manifest` is completed with the data files' sizes and checksums and written last.
    """
    index_dir = Path(index_dir)
    with writer_lock(index_dir):
        name = f"v{time.time_ns()}-{os.getpid()}"
        tmp = index_dir / f"{name}.tmp"
        tmp.mkdir()
        write_files(tmp)
        manifest = dict(manifest, data_files={})
        for fname in DATA_FILES:
            path = tmp / fname
            with open(path, "rb+") as f:
                os.fsync(f.fileno())
            manifest["data_files"][fname] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
        with open(tmp / MANIFEST, "w", encoding="utf-8") as f:
            json.dump(manifest, f, ensure_ascii=False, indent=1)
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(tmp)
        os.rename(tmp, index_dir / name)
        pointer_tmp = index_dir / f"{POINTER}.tmp"
        with open(pointer_tmp, "w", encoding="utf-8") as f:
            f.write(name + "\n")
            f.flush()
            os.fsync(f.fileno())
        previous = current_version_name(index_dir)
        os.replace(pointer_tmp, index_dir / POINTER)
        _fsync_dir(index_dir)
        _sweep(index_dir, keep={name, previous})
        return index_dir / name


def current_version_name(index_dir: Path) -> str | None:
    try:
        return (index_dir / POINTER).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def _sweep(index_dir: Path, keep: set) -> None:
    """Delete versions other than `keep` and leftovers of killed writers (we hold the lock)."""
    for entry in index_dir.iterdir():
        if entry.is_dir() and entry.name.startswith("v") and entry.name not in keep:
            shutil.rmtree(entry, ignore_errors=True)


def read_manifest(version: Path) -> dict:
    path = version / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexError_(f"index file {path} is unreadable or corrupt: {exc}", str(path)) from None
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        found = manifest.get("format_version") if isinstance(manifest, dict) else None
        raise IndexError_(
            f"index file {path} has format version {found!r}, this program reads {FORMAT_VERSION}; rebuild the index",
            str(path),
        )
    return manifest


def verify_data_file(version: Path, name: str, manifest: dict) -> Path:
    """Check size and checksum against the manifest so truncation/corruption names the file."""
    path = version / name
    expected = manifest.get("data_files", {}).get(name)
    if not path.is_file():
        raise IndexError_(f"index file {path} is missing", str(path))
    if expected is None:
        raise IndexError_(f"index manifest {version / MANIFEST} does not list {name}", str(path))
    size = path.stat().st_size
    if size != expected["bytes"]:
        raise IndexError_(
            f"index file {path} is truncated or corrupt: {size} bytes, manifest says {expected['bytes']}",
            str(path),
        )
    if sha256_file(path) != expected["sha256"]:
        raise IndexError_(f"index file {path} is corrupt: checksum does not match the manifest", str(path))
    return path


def write_jsonl(path: Path, rows) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False))
            f.write("\n")


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            try:
                rows.append(json.loads(line))
            except ValueError as exc:
                raise IndexError_(f"index file {path} is corrupt at line {n}: {exc}", str(path)) from None
    return rows
