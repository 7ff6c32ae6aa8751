"""Copy the summary of an evaluation run into bench/results (the tracked record of measurements).

Every `eval` and `bench` command writes its whole output (per-question JSONL, charts) to an
untracked folder, by default under build/ (.gitignore). What is kept in the repository is
the run's summary: summary.json (or compare.json / figures.json) and its markdown table
(table.md, report.md or compare.md). Chart embeds in a report become a note, and paths are
written relative to the repository, the user's home or the cache, never as machine paths.

    .venv/bin/python bench/keep_summary.py build/eval/eval_dev bench/results/eval_dev
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KEPT = ("summary.json", "compare.json", "figures.json", "table.md", "report.md", "compare.md")
_IMAGE = re.compile(r"^!\[([^\]]*)\]\(([^)]+\.png)\)\s*$")


def portable(text: str) -> str:
    """Absolute paths of this machine rewritten: the repository -> relative, the cache ->
    $CLUSTERQA_CACHE_DIR, the home folder -> ~."""
    sys.path.insert(0, str(REPO))
    from settings import Settings

    cache = str(Path(Settings().cache_dir).expanduser().resolve())
    for prefix, name in ((str(REPO) + "/", ""), (cache, "$CLUSTERQA_CACHE_DIR"),
                         (str(REPO.parent / "shared"), "../shared"), (str(Path.home()), "~")):
        text = text.replace(prefix, name)
    return text


def keep(src: Path, dest: Path) -> list[Path]:
    """Copy the summary files of run folder `src` (and of its sub-runs) into `dest`."""
    written = []
    for path in sorted(src.rglob("*")):
        if not path.is_file() or path.name not in KEPT:
            continue
        target = dest / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".md":
            text = "\n".join(
                f"_{m.group(1)}: `{m.group(2)}` in the run's full output (untracked, not kept here)._"
                if (m := _IMAGE.match(line)) else line for line in text.splitlines()) + "\n"
        target.write_text(portable(text), encoding="utf-8")
        written.append(target)
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path, help="a run folder written by eval or bench")
    ap.add_argument("dest", type=Path, help="its place under bench/results")
    args = ap.parse_args(argv)
    written = keep(args.src, args.dest)
    if not written:
        print(f"keep_summary: no summary files in {args.src}", file=sys.stderr)
        return 1
    for w in written:
        print(f"kept {os.path.relpath(w, REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
