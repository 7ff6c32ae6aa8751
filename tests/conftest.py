"""Test-wide setup: offline environment and the network guard, for this process and children."""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NETGUARD_DIR = Path(__file__).resolve().parent / "netguard"

# Before anything imports torch/transformers/gradio: offline, guarded, for us and our subprocesses.
os.environ["CLUSTERQA_NETGUARD"] = "1"
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(NETGUARD_DIR), str(REPO), os.environ.get("PYTHONPATH", "")) if p
)
sys.path[:0] = [str(REPO)]
import settings as _settings  # noqa: E402

_settings.apply_offline_defaults()
runpy.run_path(str(NETGUARD_DIR / "sitecustomize.py"))  # installs the guard in this process

ARTIFACTS = REPO / "tests" / "artifacts"


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def test_settings(tmp_path_factory):
    """Settings for tests: the bundled corpus, a private index dir, the shared model cache."""
    return _settings.load_settings(
        env={}, index_dir=tmp_path_factory.mktemp("index") / "corpus-index"
    )


@pytest.fixture(scope="session")
def corpus_index(test_settings):
    """The real index (real model, FAISS, BM25) of the bundled corpus, built once per session."""
    from index import load_or_build

    return load_or_build(test_settings)
