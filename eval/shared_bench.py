"""Where the public benchmark files are: the one place eval, bench and the tests ask.

The files (CMRC 2018, DRCD, SQuAD / XQuAD part A; sources and licences in
../shared/bench/README.md) are not in the repository. They are found in the folder named by
the environment variable CLUSTERQA_SHARED_BENCH, else in `shared/bench` beside the
repository (`../shared/bench`). Small samples of them, for the tests, are in tests/data/bench.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ENV = "CLUSTERQA_SHARED_BENCH"
SAMPLES = REPO / "tests" / "data" / "bench"


def bench_dir() -> Path:
    """The shared benchmark folder (it may not exist: check with `has`)."""
    env = os.environ.get(ENV)
    return Path(env).expanduser() if env else REPO.parent / "shared" / "bench"


def bench_file(name: str) -> Path:
    return bench_dir() / name


def has(*names: str) -> bool:
    """Whether the shared folder holds all of these files."""
    return all(bench_file(n).is_file() for n in names)


def missing_reason(*names: str) -> str:
    """Why a caller that needs these files cannot run (for errors and test skips)."""
    gone = [n for n in names if not bench_file(n).is_file()]
    return (f"public benchmark file(s) {', '.join(gone)} not found in {bench_dir()} "
            f"(put them in ../shared/bench beside the repository, or set {ENV})")
