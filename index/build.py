"""Building, opening and keeping an index directory in step with the corpus."""

from __future__ import annotations

import logging
from pathlib import Path

from . import store
from .corpus import CorpusIndex, _configure_llama_index, ingest_files, _get_embedder, config_mismatches, load_state, scan_files
from .errors import IndexError_

log = logging.getLogger("clusterqa.index")


def build_index(paths, settings, index_dir=None, progress=None, embedder=None) -> CorpusIndex:
    """Ingest `paths`, embed and index every chunk, and write the index atomically."""
    paths = [Path(p) for p in paths]
    result = ingest_files(paths, settings, progress)
    for path, reason in result.skipped:
        log.warning("skipped %s: %s", path, reason)
    index = CorpusIndex.from_documents(result.documents, result.chunks, settings, embedder=embedder,
                                       files=scan_files(paths, settings.corpus_dir), progress=progress)
    if progress is not None:
        progress("save", 0, 1)
    index.save(Path(index_dir or settings.index_dir))
    if progress is not None:
        progress("save", 1, 1)
    return index


def open_index(index_dir, settings, embedder=None) -> CorpusIndex:
    """Load an index; IndexError_ (naming the file) if it is missing, damaged or built differently."""
    index_dir = Path(index_dir)
    version = store.current_version(index_dir)
    if version is None:
        raise IndexError_(f"no index in {index_dir} (build one with `python -m index build`)", str(index_dir))
    manifest = store.read_manifest(version)
    embedder = embedder or _get_embedder(settings)
    mismatches = config_mismatches(manifest, settings, embedder)
    if mismatches:
        raise IndexError_(
            f"index in {index_dir} was built with a different configuration ({'; '.join(mismatches)}); "
            "rebuild it with `python -m index build`",
            str(version / store.MANIFEST),
        )
    _configure_llama_index(embedder)
    state = load_state(version, manifest, settings, embedder)
    return CorpusIndex(settings, embedder, state, index_dir, manifest)


def load_or_build(settings, progress=None) -> CorpusIndex:
    """The index of settings.corpus_dir in settings.index_dir, built or brought up to date as needed.

    Missing, damaged or differently-configured index -> full rebuild (with a warning
    saying why). Same configuration but changed corpus files (compared by path relative
    to the corpus root and sha256) -> only those files are re-indexed, deleted ones
    removed. Files added from outside the corpus (absolute keys) are left alone.
    """
    index_dir, corpus_dir = Path(settings.index_dir), Path(settings.corpus_dir)
    embedder = _get_embedder(settings)
    try:
        index = open_index(index_dir, settings, embedder=embedder)
    except IndexError_ as exc:
        if _has_pointer(index_dir):
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
