"""The CI regression gate, as CI runs it (slow), and its threshold check on hand-made figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from eval.gate import THRESHOLDS, check
from shared_bench import require_full_files

REPO = Path(__file__).resolve().parent.parent


def test_check_flags_figures_below_threshold_and_missing_ones():
    figures = {"dev": {"hit@5": 0.9, "answer_recall": 0.7}, "cmrc300": {"modes:hybrid/hit@1": 0.95}}
    thresholds = {"dev": {"hit@5": 0.88, "answer_recall": 0.75}, "cmrc300": {"modes:hybrid/hit@1": 0.95,
                                                                         "modes:hybrid/hit@5": 0.9}}
    rows = {(g, k): ok for g, k, _, _, ok in check(figures, thresholds)}
    assert rows == {("dev", "hit@5"): True, ("dev", "answer_recall"): False,
                    ("cmrc300", "modes:hybrid/hit@1"): True,  # equal to the threshold passes
                    ("cmrc300", "modes:hybrid/hit@5"): False}  # missing figure fails


def test_thresholds_file_is_complete():
    t = json.loads(THRESHOLDS.read_text(encoding="utf-8"))
    assert 0 < t["margin"] < 0.1
    assert set(t["dev"]) >= {"hit@5", "mrr@10", "answer_recall", "refusal_accuracy", "citation_precision"}
    assert set(t["cmrc300"]) >= {"modes:hybrid/hit@1", "modes:hybrid/mrr@10", "answer_recall"}
    for group in ("dev", "cmrc300"):
        for key, value in t[group].items():
            # each threshold sits below the figure measured when it was set
            assert 0 < value < t["measured"][group][key], (group, key)


@pytest.mark.slow
def test_gate_passes_on_current_code(tmp_path, test_settings, capsys):
    require_full_files("cmrc2018_dev.json")  # the gate's 300 questions come from the full file
    env = {**os.environ, "CLUSTERQA_INDEX_DIR": str(test_settings.index_dir)}
    proc = subprocess.run([sys.executable, "-m", "eval", "gate", "--quiet", "--out", str(tmp_path / "gate")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)
    with capsys.disabled():  # the figures go to the CI log whatever the outcome
        print("\n" + proc.stdout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "eval gate: passed" in proc.stdout
    figures = json.loads((tmp_path / "gate" / "figures.json").read_text())
    assert figures["info"]["cmrc_n"] == 300
    assert (tmp_path / "gate" / "dev" / "report.md").is_file()
