"""End-to-end eval runs with the real model, index and chat engine (slow).

- a 20-question CMRC 2018 dev sample (tests/data/bench) through `eval squad` (retrieval + answers), then its
  Traditional conversion and a slice of the English file, retrieval-only;
- `eval run --url` against a real server process agrees with the in-process run.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from eval.shared_bench import SAMPLES
from eval.squad import convert_file, load_squad, paragraph_of_doc
from eval.squad_bench import run_squad

REPO = Path(__file__).resolve().parent.parent
ENGLISH = REPO / "bench" / "data" / "english_squad.json"

pytestmark = pytest.mark.slow


def _check_ranks(out_dir: Path, squad, modes):
    """Every recorded rank points at a chunk of the question's own paragraph."""
    rows = [json.loads(x) for x in (out_dir / "questions.jsonl").read_text(encoding="utf-8").splitlines()]
    for row in rows:
        for mode in modes:
            r = row[mode]
            if r["rank"] is not None:
                assert paragraph_of_doc(r["retrieved"][r["rank"] - 1].split("#")[0]) == row["paragraph"]
    return rows


@pytest.fixture(scope="module")
def cmrc_sample():
    """20 CMRC 2018 dev questions (a stratified sample, seed 7) in a file of their own, so the
    Traditional conversion stays small; bundled in tests/data/bench (CC BY-SA 4.0)."""
    return SAMPLES / "cmrc2018_dev.json"


def test_squad_cmrc_sample_end_to_end(cmrc_sample, test_settings, tmp_path):
    s = run_squad(cmrc_sample, tmp_path / "a", settings=test_settings, retrieval_only=False, progress=False,
                  rebuild=True)
    assert s["n"] == 20 and s["config"]["paragraphs"] == 20 and not s["config"]["index_cached"]
    for key in ("hit@1", "hit@3", "hit@5", "mrr@10", "answer_recall", "refusal_accuracy", "citation_precision",
                "latency_ms_p50", "latency_ms_p95"):
        assert s[key] is not None, key
    for mode in ("dense", "bm25", "hybrid"):
        # CMRC paragraphs are distinct topics: real retrieval finds nearly all; a broken hit rule or
        # id mapping scores near zero.
        assert s["modes"][mode]["hit@5"] >= 0.8, (mode, s["modes"][mode])
    assert s["answer_recall"] >= 0.4 and s["answer_sentences_mean"] >= 1
    rows = _check_ranks(tmp_path / "a", load_squad(cmrc_sample), ("dense", "bm25", "hybrid"))
    assert all("clusterqa" in r and r["clusterqa"]["answer"] for r in rows)

    # Second run: the cached index is reused and gives the same ranks.
    s2 = run_squad(cmrc_sample, tmp_path / "b", settings=test_settings, retrieval_only=True, progress=False)
    assert s2["config"]["index_cached"]
    assert s2["modes"]["hybrid"]["mrr@10"] == s["modes"]["hybrid"]["mrr@10"]


def test_squad_traditional_and_english(cmrc_sample, test_settings, tmp_path):
    hant = tmp_path / "cmrc20_hant.json"
    convert_file(cmrc_sample, hant, to="zh-Hant")
    s = run_squad(hant, tmp_path / "hant", settings=test_settings, retrieval_only=True, progress=False, rebuild=True)
    assert s["language"] == "zh-Hant"
    for mode in ("dense", "bm25", "hybrid"):
        assert s["modes"][mode]["hit@5"] >= 0.7, (mode, s["modes"][mode])
    _check_ranks(tmp_path / "hant", load_squad(hant), ("hybrid",))

    e = run_squad(ENGLISH, tmp_path / "en", settings=test_settings, retrieval_only=True, limit=12, seed=1,
                  corpus="sample", progress=False, rebuild=True)
    assert e["language"] == "en" and e["n"] == 12
    assert e["modes"]["hybrid"]["hit@5"] >= 0.7


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(test_settings, corpus_index):
    """app.py on a free port, serving the same index directory as the in-process run."""
    port = _free_port()
    env = {**os.environ, "CLUSTERQA_INDEX_DIR": str(test_settings.index_dir), "CLUSTERQA_API_KEYS": "eval-key"}
    proc = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--port", str(port)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 240
        while True:
            if proc.poll() is not None:
                pytest.fail(f"app.py exited early: {proc.stderr.read()[-2000:]}")
            try:
                if httpx.get(f"{url}/api/health", timeout=2, trust_env=False).json().get("status") == "ready":
                    break
            except (httpx.HTTPError, ValueError):
                pass
            if time.time() > deadline:
                pytest.fail("app.py did not become ready in 240 s")
            time.sleep(1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_url_mode_agrees_with_in_process(server, corpus_index, test_settings, artifacts_dir):
    from chat import ChatEngine

    from eval.runner import run_question_set

    dev = [json.loads(x) for x in (REPO / "data" / "questions" / "dev.jsonl").read_text(encoding="utf-8").splitlines()
           if x.strip()]
    # A slice with every kind: single-turn, follow-up (history), unanswerable.
    chosen = [q for q in dev if q.get("history")][:3] + [q for q in dev if q.get("answerable") is False][:3]
    chosen += [q for q in dev if not q.get("history") and q.get("answerable", True)][:8]
    out = artifacts_dir / "eval_url_vs_in_process"
    out.mkdir(parents=True, exist_ok=True)
    qfile = out / "slice.jsonl"
    qfile.write_text("\n".join(json.dumps(q, ensure_ascii=False) for q in chosen) + "\n", encoding="utf-8")

    local = run_question_set(qfile, out / "local", settings=test_settings, progress=False,
                             engine=ChatEngine(corpus_index, test_settings))
    remote = run_question_set(qfile, out / "remote", settings=test_settings, url=server, api_key="eval-key",
                              progress=False)
    assert remote["errors"] == 0 and local["errors"] == 0
    rows_l = [json.loads(x) for x in (out / "local" / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    rows_r = [json.loads(x) for x in (out / "remote" / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    diffs = [(a["id"], a["answer"], b["answer"], a["retrieved"], b["retrieved"]) for a, b in zip(rows_l, rows_r)
             if (a["answer"], a["answered"], a["retrieved"]) != (b["answer"], b["answered"], b["retrieved"])]
    assert not diffs, json.dumps(diffs, ensure_ascii=False, indent=1)
    for key in ("n", "hit@1", "hit@3", "hit@5", "mrr@10", "answer_recall", "refusal_accuracy", "citation_precision"):
        assert remote[key] == local[key], key

    # Without the key the server refuses, and every question is recorded as an error.
    denied = run_question_set(qfile, out / "denied", settings=test_settings, url=server, progress=False)
    assert denied["errors"] == len(chosen)


def test_compare_clusterqa_with_the_llama_index_baseline(cmrc_sample, test_settings, tmp_path):
    from eval.compare import compare_systems

    text = compare_systems(cmrc_sample, tmp_path / "cmp", settings=test_settings, top_k=5, progress=False)
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text(encoding="utf-8"))
    rows = [json.loads(x) for x in (tmp_path / "cmp" / "compare.jsonl").read_text(encoding="utf-8").splitlines()]
    assert result["n"] == 20 and len(rows) == 20
    cqa, base = result["clusterqa"], result["baseline"]
    for s in (cqa, base):
        for key in ("hit@1", "hit@5", "mrr@10", "answer_recall", "retrieve_ms_p50", "latency_ms_p95"):
            assert s[key] is not None, key
        assert s["hit@5"] >= 0.8  # 20 distinct Wikipedia topics: both retrievers find nearly all
    # the baseline's answer is its top passage: whole paragraphs, far longer than ClusterQA's sentences
    assert base["answer_chars_mean"] > 2 * cqa["answer_chars_mean"]
    assert all(r["baseline"]["answer"] for r in rows)
    # cut to ClusterQA's answer length, the baseline's passage can only hold fewer answers
    assert base["answer_recall_same_length"] <= base["answer_recall"]
    assert cqa["answer_recall_same_length"] == cqa["answer_recall"]
    assert result["ratios_clusterqa_over_baseline"]["hit@1"] == pytest.approx(cqa["hit@1"] / base["hit@1"], rel=1e-3)
    assert "answer_recall_same_length" in text and "ClusterQA ahead on every quality figure" in text
