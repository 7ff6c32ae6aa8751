"""Bad input: each bad file is named with a reason, the others are still ingested; CLI exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ingest import IngestError, ingest_paths, read_file
from settings import REPO_ROOT, Settings

CORPUS = REPO_ROOT / "data" / "corpus"
GOOD = CORPUS / "related" / "02-national-clusters-45-zh-hant.txt"


@pytest.fixture()
def mixed_folder(tmp_path):
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "good.txt").write_bytes(GOOD.read_bytes())
    (folder / "sub" / "english.md").write_text("# Note\n\nClusters matter. They employ many people.\n")
    (folder / "empty.txt").write_bytes(b"")
    (folder / "blank.txt").write_text(" \n\n\t\n")
    (folder / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (folder / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    text = GOOD.read_text(encoding="utf-8")
    (folder / "mixed.txt").write_bytes(text[:200].encode("utf-8") + text[200:].encode("big5"))
    with open(folder / "huge.txt", "wb") as big:  # 50 MB, sparse: nothing is written
        big.truncate(50 * 1024 * 1024)
    (folder / ".hidden.txt").write_text("not ingested")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4\nthis is not a pdf")
    (folder / "broken.docx").write_bytes(b"PK\x03\x04 not a zip")
    return folder


EXPECTED_REASONS = {
    "empty.txt": "empty file",
    "blank.txt": "no text left",
    "binary.txt": "binary file",
    "picture.png": "unsupported file type '.png'",
    "mixed.txt": "cannot determine the text encoding",
    "huge.txt": "file too large (50.0 MB > 20 MB limit)",
    "broken.pdf": "PDF",
    "broken.docx": ".docx",
}


def test_bad_files_are_skipped_with_reasons_and_the_rest_ingested(mixed_folder):
    result = ingest_paths([mixed_folder], Settings(), progress=False)
    assert [d.doc_id for d in result.documents] == ["good.txt", "sub/english.md"]
    assert {c.doc_id for c in result.chunks} == {"good.txt", "sub/english.md"}
    reasons = {os.path.basename(path): reason for path, reason in result.skipped}
    assert set(reasons) == set(EXPECTED_REASONS)
    for name, expected in EXPECTED_REASONS.items():
        assert expected in reasons[name], (name, reasons[name])


@pytest.mark.parametrize("name", sorted(EXPECTED_REASONS))
def test_ingest_error_names_the_file(mixed_folder, name):
    with pytest.raises(IngestError) as info:
        read_file(mixed_folder / name)
    assert str(info.value).startswith(str(mixed_folder / name) + ": ")
    assert info.value.path == str(mixed_folder / name)


def test_size_limit_follows_settings(mixed_folder):
    result = ingest_paths([mixed_folder / "good.txt"], Settings(max_file_mb=0.001), progress=False)
    assert result.documents == [] and "file too large" in result.skipped[0][1]


def test_missing_path_is_reported(tmp_path):
    result = ingest_paths([tmp_path / "nope.txt"], Settings(), progress=False)
    assert result.skipped == [(str(tmp_path / "nope.txt"), "no such file or directory")]


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "ingest", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])})


def test_cli_on_the_bundled_corpus_exits_0(tmp_path):
    out, docs = tmp_path / "chunks.jsonl", tmp_path / "docs.jsonl"
    run = _cli(CORPUS, "--out", out, "--docs", docs, cwd=REPO_ROOT)
    assert run.returncode == 0, run.stderr
    chunks = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    documents = {d["doc_id"]: d for d in map(json.loads, docs.read_text(encoding="utf-8").splitlines())}
    assert len(documents) == 9 and f"documents: 9" in run.stdout and f"chunks:    {len(chunks)}" in run.stdout
    for chunk in chunks:
        assert documents[chunk["doc_id"]]["text"][chunk["start"]:chunk["end"]] == chunk["text"]
    assert "ingest" in run.stderr  # the progress bar


def test_cli_with_bad_files_exits_2_and_names_them(mixed_folder, tmp_path):
    out = tmp_path / "chunks.jsonl"
    run = _cli(mixed_folder, "--out", out, "--no-progress", cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    assert "documents: 2" in run.stdout and f"skipped:   {len(EXPECTED_REASONS)}" in run.stdout
    for name in EXPECTED_REASONS:
        assert name in run.stdout
    assert out.exists() and out.read_text(encoding="utf-8").strip()


def test_cli_usage_errors_exit_1(tmp_path):
    assert _cli(tmp_path, cwd=tmp_path).returncode == 1  # --out missing
    run = _cli(tmp_path, "--out", tmp_path / "x.jsonl", "--chunk-size", "0", cwd=tmp_path)
    assert run.returncode == 1 and "chunk-size" in run.stderr
