"""`python -m index`: build, add, remove, stats, search."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


class _Bars:
    """progress(stage, done, total) -> one tqdm bar per stage on stderr."""

    def __init__(self):
        self.bars = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm import tqdm

        bar = self.bars.get(stage)
        if bar is None:
            unit = {"embed": "chunk", "tokenize": "chunk", "ingest": "file"}.get(stage, "step")
            bar = self.bars[stage] = tqdm(total=total, desc=stage, unit=unit, file=sys.stderr, leave=False)
        bar.total = total
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()


def _qdrant_stats(index_dir: Path, settings) -> dict:
    from .qdrant_store import QdrantStore

    qstore, m = QdrantStore.open(settings, index_dir)
    return {
        "documents": len(qstore.documents()),
        "chunks": qstore.count(),
        "model": m["model"]["id"],
        "dim": m["model"]["dim"],
        "index_type": "qdrant",
        "chunk_size": m["chunking"]["chunk_size"],
        "chunk_overlap": m["chunking"]["chunk_overlap"],
        "tokenizer": m["tokenizer"],
        "files": len(m.get("files", {})),
        "created": m["created"],
        "updated": m["updated"],
        "backend": "qdrant",
        "qdrant": qstore.location,
        "collection": f"{qstore.alias} -> {m.get('qdrant', {}).get('collection')}",
    }


def _manifest_stats(index_dir: Path, settings=None) -> dict:
    from . import store
    from .build import backend_of
    from .errors import IndexError_

    if settings is not None and backend_of(settings) == "qdrant":
        return _qdrant_stats(index_dir, settings)

    version = store.current_version(index_dir)
    if version is None:
        raise IndexError_(f"no index in {index_dir} (build one with `python -m index build`)", str(index_dir))
    m = store.read_manifest(version)
    return {
        "documents": m["counts"]["documents"],
        "chunks": m["counts"]["chunks"],
        "model": m["model"]["id"],
        "dim": m["model"]["dim"],
        "index_type": m["dense"]["index_type"],
        "chunk_size": m["chunking"]["chunk_size"],
        "chunk_overlap": m["chunking"]["chunk_overlap"],
        "tokenizer": m["tokenizer"],
        "files": len(m["files"]),
        "created": m["created"],
        "updated": m["updated"],
        "index_dir": str(index_dir),
        "version": version.name,
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m index", description="Build, update and query the ClusterQA index.")
    p.add_argument("--index-dir", type=Path, help="index directory (default: settings.index_dir)")
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="(re)build the index from files/folders (default: the corpus folder)")
    b.add_argument("paths", nargs="*", type=Path)
    a = sub.add_parser("add", help="add new files, re-index changed ones")
    a.add_argument("paths", nargs="+", type=Path)
    r = sub.add_parser("remove", help="remove documents by path or doc_id")
    r.add_argument("paths", nargs="+")
    s = sub.add_parser("stats", help="counts, model, index type")
    s.add_argument("--json", action="store_true")
    q = sub.add_parser("search", help="retrieve passages for a query")
    q.add_argument("query")
    q.add_argument("-k", type=int, default=None, help="number of hits (default: settings.top_k)")
    q.add_argument("--mode", choices=["hybrid", "dense", "bm25"], default="hybrid")
    q.add_argument("--json", action="store_true")
    for sp in (b, a, r, s, q):  # also accept --index-dir after the command
        sp.add_argument("--index-dir", type=Path, default=argparse.SUPPRESS)
    return p


def main(argv=None) -> int:
    import settings as settings_mod

    settings_mod.apply_offline_defaults()
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    args = _parser().parse_args(argv)

    from ingest import IngestError

    from .build import build_index, open_index
    from .errors import IndexError_, StoreUnavailable

    try:
        settings = settings_mod.load_settings()
    except settings_mod.SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    index_dir = Path(args.index_dir) if args.index_dir else Path(settings.index_dir)
    bars = _Bars()
    try:
        if args.command == "build":
            paths = args.paths or [Path(settings.corpus_dir)]
            missing = [str(p) for p in paths if not p.exists()]
            if missing:
                print(f"error: no such file or directory: {', '.join(missing)}", file=sys.stderr)
                return 1
            if len(paths) == 1 and paths[0].is_dir():
                settings = settings.replace(corpus_dir=paths[0])  # that folder is the corpus root
            index = build_index(paths, settings, index_dir=index_dir, progress=bars)
            bars.close()
            st = index.stats()
            where = f"Qdrant collection {st['collection']} at {st['qdrant']}" if st["backend"] == "qdrant" else index_dir
            print(f"built {where}: {st['documents']} documents, {st['chunks']} chunks "
                  f"({st['index_type']}, {st['model']})")
            return 0 if st["documents"] else 1

        if args.command == "stats":  # from the manifest alone: no model load
            st = _manifest_stats(index_dir, settings)
            if args.json:
                print(json.dumps(st, ensure_ascii=False, indent=1))
            else:
                for key, value in st.items():
                    print(f"{key:12} {value}")
            return 0

        index = open_index(index_dir, settings)
        if args.command == "add":
            summary = index.add_paths(args.paths, progress=bars)
            bars.close()
            for path, reason in summary["skipped"]:
                print(f"skipped {path}: {reason}", file=sys.stderr)
            print(f"added {len(summary['added'])}, updated {len(summary['updated'])}, "
                  f"unchanged {len(summary['unchanged'])} document(s); embedded {summary['chunks_embedded']} chunk(s); "
                  f"index now {summary['documents']} documents, {summary['chunks']} chunks")
            return 0 if (summary["added"] or summary["updated"] or summary["unchanged"]) else 1
        if args.command == "remove":
            n = index.remove(args.paths)
            print(f"removed {n} document(s)")
            return 0 if n else 1
        if args.command == "search":
            hits = index.retrieve(args.query, top_k=args.k or settings.top_k, mode=args.mode)
            if args.json:
                print(json.dumps([h.to_dict() for h in hits], ensure_ascii=False, indent=1))
            else:
                for n, h in enumerate(hits, 1):
                    ranks = f"dense #{h.dense_rank or '-'} bm25 #{h.bm25_rank or '-'}"
                    print(f"[{n}] {h.score:.4f} ({ranks})  {h.chunk.chunk_id}  {h.chunk.title}")
                    print("    " + h.chunk.text.replace("\n", " ")[:200])
                if not hits:
                    print("no hits")
            return 0
    except (IndexError_, IngestError, StoreUnavailable) as exc:
        bars.close()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        bars.close()
        print("interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
