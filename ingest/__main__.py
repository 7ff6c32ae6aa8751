"""`python -m ingest PATH... --out chunks.jsonl [--docs docs.jsonl]`

Exit codes: 0 = every file ingested; 2 = some files were skipped (listed with the
reason; the others are still written); 1 = usage error (bad arguments, unwritable output).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would exit 2, which we use for "files skipped"
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(1)


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import settings as settings_module

    settings_module.apply_offline_defaults()
    parser = _Parser(prog="python -m ingest", description="Clean, normalise and chunk documents.")
    parser.add_argument("paths", nargs="+", type=Path, help="files or folders (walked recursively)")
    parser.add_argument("--out", required=True, type=Path, help="chunks, one JSON object a line")
    parser.add_argument("--docs", type=Path, help="also write the documents as JSONL")
    parser.add_argument("--chunk-size", type=int, help="max characters per chunk (default from settings)")
    parser.add_argument("--overlap", type=int, help="max characters of repeated sentences between chunks")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    try:
        settings = settings_module.load_settings()
    except settings_module.SettingsError as exc:
        parser.error(str(exc))
    if args.chunk_size is not None:
        if args.chunk_size <= 0:
            parser.error("--chunk-size must be positive")
        settings = settings.replace(chunk_size=args.chunk_size)
    if args.overlap is not None:
        settings = settings.replace(chunk_overlap=max(0, args.overlap))

    from ingest import ingest_paths

    result = ingest_paths(args.paths, settings, progress=not args.no_progress)
    try:
        _write_jsonl(args.out, (c.to_dict() for c in result.chunks))
        if args.docs:
            _write_jsonl(args.docs, (d.to_dict() for d in result.documents))
    except OSError as exc:
        print(f"error: cannot write output: {exc}", file=sys.stderr)
        return 1

    lengths = [len(c.text) for c in result.chunks]
    chars = sum(len(d.text) for d in result.documents)
    print(f"documents: {len(result.documents)}")
    print(f"chunks:    {len(result.chunks)}"
          + (f" (length min/median/max {min(lengths)}/{statistics.median(lengths):g}/{max(lengths)})" if lengths else ""))
    print(f"characters: {chars}")
    print(f"skipped:   {len(result.skipped)}")
    for path, reason in result.skipped:
        print(f"  {path}: {reason}")
    print(f"wrote {args.out}" + (f" and {args.docs}" if args.docs else ""))
    return 2 if result.skipped else 0


def _write_jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)


if __name__ == "__main__":
    sys.exit(main())
