"""The repository holds no machine paths: a clone works wherever it is checked out.

Every tracked file is read (binary files, those with NUL bytes, too: their text parts are
searched); nothing is excluded. A machine path is an absolute path into a home or work folder
(`/home/<name>/`, `/root/…`, `/work/<name>/`, `/Users/<name>/`) that is not part of a URL:
the leading slash must not follow a host name, a word character or another slash.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MACHINE_PATH = re.compile(rb"(?<![\w.:/-])/(?:home|root|work|Users)/[\w.-]+/")


def _tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"not a git checkout ({exc})")
    return [REPO / name.decode() for name in out.split(b"\0") if name]


def test_the_pattern_finds_machine_paths_and_leaves_urls_alone():
    # written with "|" for "/", so this file holds no machine path itself
    for text in (b'CMRC = Path("|work|shared|bench|x.json")', b"cache: |root|.cache|clusterqa|eval",
                 b"'|home|alice|src'", b"(|Users|bob|Desktop|a)"):
        assert MACHINE_PATH.search(text.replace(b"|", b"/")), text
    for text in (b"https://example.org/work/papers/1", b"http://host/home/index/", b"../shared/bench/x.json",
                 b"~/.cache/clusterqa/wheels", b"docs/work/notes/x"):
        assert not MACHINE_PATH.search(text), text


def test_no_tracked_file_holds_a_machine_path():
    found = []
    for path in _tracked_files():
        if not path.is_file():  # deleted in the working tree, not yet committed
            continue
        data = path.read_bytes()
        for m in MACHINE_PATH.finditer(data):
            line = data.count(b"\n", 0, m.start()) + 1
            found.append(f"{path.relative_to(REPO)}:{line}: {m.group().decode('utf-8', 'replace')}")
    assert not found, "machine paths in tracked files:\n" + "\n".join(found)
