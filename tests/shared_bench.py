"""For tests that need the full public benchmark files (eval/shared_bench.py): skip with the
reason where they are absent (a user's clone), fail on CI, which has them and must run every test."""

from __future__ import annotations

import os

import pytest

from eval.shared_bench import SAMPLES, has, missing_reason

__all__ = ["SAMPLES", "require_full_files"]


def require_full_files(*names: str) -> None:
    if has(*names):
        return
    reason = missing_reason(*names)
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run every test")
    pytest.skip(reason)
