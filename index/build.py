"""Building, opening and keeping an index directory in step with the corpus."""

from __future__ import annotations

import logging
from pathlib import Path

from . import store
from .corpus import (CorpusIndex, config_mismatches, embed_passages, ingest_files,
                     load_state, new_manifest, scan_files, tokenize_chunks)
from .errors import IndexError_
from .text import TOKENIZER_VERSION, titled_text

BACKENDS = ("faiss", "qdrant")


def backend_of(settings) -> str:
    backend = (getattr(settings, "index_backend", "") or "faiss").strip().lower()
    if backend not in BACKENDS:
        raise IndexError_(f"unknown index_backend {backend!r} (one of {', '.join(BACKENDS)})")
    return backend

log = logging.getLogger("clusterqa.index")


def build_index(paths, settings, index_dir=None, progress=None, embedder=None) -> CorpusIndex:
    """Ingest `paths`, embed and index every chunk, and write the index atomically."""
    paths = [Path(p) for p in paths]
    result = ingest_files(paths, settings, progress)
    for path, reason in result.skipped:
        log.warning("skipped %s: %s", path, reason)
    files = scan_files(paths, settings.corpus_dir)
    if backend_of(settings) == "qdrant":
        from .qdrant_store import QdrantStore

        embedder = embedder or _embedder(settings)
        vectors = embed_passages(embedder, [titled_text(c) for c in result.chunks], progress)
        tokens = tokenize_chunks(result.chunks, progress)
        # a new collection, filled and then made live by one alias switch: serving never sees it half-built
        store, manifest = QdrantStore.create(settings, index_dir, result.documents, result.chunks, tokens,
                                             vectors, files, new_manifest(settings, embedder), progress)
        return CorpusIndex(settings, embedder, store, Path(index_dir or settings.index_dir), manifest)
    index = CorpusIndex.from_documents(result.documents, result.chunks, settings, embedder=embedder,
                                       files=files, progress=progress)
    if progress is not None:
        progress("save", 0, 1)
    index.save(Path(index_dir or settings.index_dir))
    if progress is not None:
        progress("save", 1, 1)
    return index


def open_index(index_dir, settings, embedder=None) -> CorpusIndex:
    """Load an index; IndexError_ (naming the file) if it is missing, damaged or built differently."""
    index_dir = Path(index_dir)
    if backend_of(settings) == "qdrant":
        return _open_qdrant(index_dir, settings, embedder)
    version = store.current_version(index_dir)
    if version is None:
        raise IndexError_(f"no index in {index_dir} (build one with `python -m index build`)", str(index_dir))
    manifest = store.read_manifest(version)
    embedder = embedder or _embedder(settings)
    mismatches = config_mismatches(manifest, settings, embedder)
    if mismatches:
        raise IndexError_(
            f"index in {index_dir} was built with a different configuration ({'; '.join(mismatches)}); "
            "rebuild it with `python -m index build`",
            str(version / store.MANIFEST),
        )
    state = load_state(version, manifest, settings, embedder)
    return CorpusIndex(settings, embedder, state, index_dir, manifest)


def _open_qdrant(index_dir: Path, settings, embedder=None) -> CorpusIndex:
    from .qdrant_store import QdrantStore

    qstore, manifest = QdrantStore.open(settings, index_dir)
    embedder = embedder or _embedder(settings)
    mismatches = config_mismatches(manifest, settings, embedder)
    if manifest.get("tokenizer") != TOKENIZER_VERSION:  # its sparse vectors hold the old tokens: rebuild
        mismatches.append(f"tokenizer: index has {manifest.get('tokenizer')!r}, configuration wants {TOKENIZER_VERSION!r}")
    if mismatches:
        raise IndexError_(
            f"Qdrant collection {settings.qdrant_collection!r} was built with a different configuration "
            f"({'; '.join(mismatches)}); rebuild it with `python -m index build`", qstore.location)
    return CorpusIndex(settings, embedder, qstore, index_dir, manifest)


def _embedder(settings):
    from .embedding import get_embedder  # lazily: `import index` stays cheap

    return get_embedder(settings)


def load_or_build(settings, progress=None, embedder=None) -> CorpusIndex:
    """The index of settings.corpus_dir in settings.index_dir, built or brought up to date as needed.

    Missing, damaged or differently-configured index -> full rebuild (with a warning
    saying why). Same configuration but changed corpus files (compared by path relative
    to the corpus root and sha256) -> only those files are re-indexed, deleted ones
    removed. Files added from outside the corpus (absolute keys) are left alone.
    `embedder`: the model to use instead of settings' (shared process-wide by default).
    """
    index_dir, corpus_dir = Path(settings.index_dir), Path(settings.corpus_dir)
    embedder = embedder or _embedder(settings)
    try:
        index = open_index(index_dir, settings, embedder=embedder)
    except IndexError_ as exc:
        if backend_of(settings) == "qdrant" or _has_pointer(index_dir):
            log.warning("%s -- rebuilding from %s", exc, corpus_dir)
        else:
            log.info("no index in %s yet -- building it from %s", index_dir, corpus_dir)
        return build_index([corpus_dir], settings, index_dir=index_dir, progress=progress, embedder=embedder)

    current = scan_files([corpus_dir], corpus_dir)
    indexed = {k: v for k, v in index.manifest.get("files", {}).items() if not k.startswith("/")}
    changed = [k for k, h in current.items() if indexed.get(k) != h]
    deleted = [k for k in indexed if k not in current]
    if changed or deleted:
        log.warning("corpus changed since the index was built (%d new/changed, %d deleted file(s)) -- updating",
                    len(changed), len(deleted))
        if deleted:
            index.remove(deleted)
        if changed:
            index.add_paths([corpus_dir / k for k in changed], progress=progress)
    return index


def _has_pointer(index_dir: Path) -> bool:
    return (index_dir / store.POINTER).exists()
