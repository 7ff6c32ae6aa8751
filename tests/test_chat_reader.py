"""The trained reader (chat/reader/) and its training command, with the real model."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from chat.reader import READER_DIR, Reader, ReaderModelError, read_card
from eval.shared_bench import SAMPLES
from index.embedding import base_model_path

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent

PASSAGE = ("先进制造业集群是产业分工深化和集聚发展的高级形式。沙特计划建设21个医疗集群，"
           "新加坡聚焦人工智能与数字技术，各国正全力抢占未来产业制高点。")


@pytest.fixture(scope="module")
def reader():
    return Reader(base_model_path())


def test_weights_file_is_small_and_card_says_what_it_was_trained_on():
    weights = READER_DIR / "reader.safetensors"
    assert weights.stat().st_size <= 25 * 1024 * 1024
    card = read_card()
    assert set(card["training_data_sha256"]) == {"cmrc2018_trial.json", "drcd_dev.json", "squad_dev_part_a.json",
                                                "xquad_part_a.en.json", "xquad_part_a.zh.json"}
    assert "cmrc2018_dev.json" not in json.dumps(card)  # evaluation-only data is not training data
    assert card["config"]["seed"] and card["held_out"]


def test_reader_finds_the_span_with_offsets_into_the_passage(reader):
    pred = reader.read("沙特计划建设多少个医疗集群？", [PASSAGE])[0]
    assert PASSAGE[pred.start:pred.end] == pred.text and "21" in pred.text
    assert len(pred.text) <= 12


def test_span_edges_drop_punctuation_and_a_trailing_de_but_keep_a_lone_character():
    from chat.reader import _strip

    text = "它由DC漫画公司的编辑出版。"
    start = text.index("DC")
    assert text[slice(*_strip(text, start, text.index("编辑")))] == "DC漫画公司"
    assert text[slice(*_strip(text, start - 1, start + 2))] == "由DC"  # only edges are dropped
    assert _strip("的", 0, 1) == (0, 1)
    assert _strip(" 42. ", 0, 5) == (1, 3)


def test_forwards_come_in_few_widths_and_padding_to_them_changes_no_answer(reader, monkeypatch):
    from chat.reader import batching

    assert [batching.rounded_width(n, 512) for n in (1, 64, 65, 500, 512)] == [64, 64, 128, 512, 512]
    assert batching.rounded_width(30, 40) == 40  # never past the windows' own padded length
    widths = []
    run = reader.net.forward
    monkeypatch.setattr(reader.net, "forward", lambda ids, mask: (widths.append(ids.shape[1]), run(ids, mask))[1])
    rounded = reader.read("沙特计划建设多少个医疗集群？", [PASSAGE])[0]
    monkeypatch.setattr(batching, "WIDTH_STEP", 1)
    exact = reader.read("沙特计划建设多少个医疗集群？", [PASSAGE])[0]
    assert widths[0] % 64 == 0 and widths[1] < widths[0]
    assert (rounded.start, rounded.end) == (exact.start, exact.end)
    assert abs(rounded.answerable - exact.answerable) < 0.2


def test_answerability_separates_a_passage_that_answers_from_one_that_does_not(reader):
    other = "汉堡是德国第二大城市，也是欧洲重要的航空制造中心，拥有空客的总装线。"
    yes, no = reader.read("沙特计划建设多少个医疗集群？", [PASSAGE, other])
    assert yes.answerable > no.answerable


def test_reader_reads_across_languages(reader):
    en = reader.read("How many medical clusters does Saudi Arabia plan to build?", [PASSAGE])[0]
    assert "21" in en.text
    passage = "With over 200 members and around 30 projects, it's OWL is one of Germany's leading-edge clusters."
    zh = reader.read("it's OWL有多少成员？", [passage])[0]
    assert "200" in zh.text


@pytest.mark.parametrize("select", [False, True])
def test_long_passages_are_read_in_windows(reader, monkeypatch, select):
    monkeypatch.setattr(reader, "select_sentences", select)
    long = "无关的句子。" * 300 + PASSAGE
    forwards = []
    monkeypatch.setattr(reader, "forward_observers", [lambda windows, tokens, seconds: forwards.append(windows)])
    pred = reader.read("沙特计划建设多少个医疗集群？", [long])[0]
    assert "21" in pred.text and long[pred.start:pred.end] == pred.text
    windows = sum(forwards)
    assert windows == 1 if select else windows > 5  # selected: the one window of the sentences that match


def test_a_long_passage_is_read_as_the_window_of_its_matching_sentences(reader, monkeypatch):
    from chat.reader.reading import SELECTED_WINDOW_TOKENS, select_window
    from settings import SettingsError, load_settings

    monkeypatch.setattr(reader, "select_sentences", True)  # Settings.reader_window = "sentences"
    assert load_settings(env={"CLUSTERQA_READER_WINDOW": "sentences"}).reader_window == "sentences"
    with pytest.raises(SettingsError, match="reader_window"):
        load_settings(env={}, reader_window="half")

    filler = "欧盟通过多项政策推进绿色与数字化转型，构建跨区域创新生态系统。" * 12
    long = filler + PASSAGE + filler
    start, end = select_window(reader.tokenizer, "沙特计划建设多少个医疗集群？", long, SELECTED_WINDOW_TOKENS)
    assert "沙特计划建设21个医疗集群" in long[start:end]
    assert len(reader.tokenizer("沙特计划建设多少个医疗集群？", long[start:end])["input_ids"]) <= SELECTED_WINDOW_TOKENS
    assert 0 < start and end < len(long)
    # nothing to choose by: a passage that fits, or a question in the other language -> the whole passage
    assert select_window(reader.tokenizer, "沙特计划建设多少个医疗集群？", PASSAGE, 192) == (0, len(PASSAGE))
    assert select_window(reader.tokenizer, "How many medical clusters does Saudi Arabia plan?", long, 192) == (0, len(long))
    pred = reader.read("沙特计划建设多少个医疗集群？", [long])[0]
    assert "21" in pred.text and long[pred.start:pred.end] == pred.text and pred.start > len(filler)


def _wait_for(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_concurrent_reads_share_one_forward_and_get_their_own_answers(reader):
    """Requests that wait for the reader are read together (micro-batching): same spans as
    reading each alone, each caller gets its own predictions back."""
    questions = [("沙特计划建设多少个医疗集群？", [PASSAGE]),
                 ("新加坡聚焦什么？", [PASSAGE, "汉堡是德国第二大城市。"]),
                 ("How many medical clusters does Saudi Arabia plan to build?", [PASSAGE]),
                 ("集群是什么形式？", ["无关的句子。" * 200 + PASSAGE])]
    alone = [reader.read(q, ps) for q, ps in questions]
    batches = []
    batcher = reader._batcher
    run = batcher._run
    batcher._run = lambda batch: (batches.append(len(batch)), run(batch))[1]
    try:
        results = [None] * len(questions)
        with batcher._lock:  # hold the network so that all four wait, then let them go
            threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, reader.read(*questions[i])))
                       for i in range(len(questions))]
            for t in threads:
                t.start()
            _wait_for(lambda: len(batcher._pending) == len(questions))
        for t in threads:
            t.join(60)
    finally:
        batcher._run = run
    assert batches[0] == len(questions)  # one forward read every waiting request
    for got, want in zip(results, alone):
        assert [(p.start, p.end) for p in got] == [(p.start, p.end) for p in want]
        assert [p.answerable for p in got] == pytest.approx([p.answerable for p in want], abs=0.1)


def test_two_lanes_run_a_second_forward_beside_the_first_on_one_thread():
    """Settings.reader_lanes = 2: a request arriving while a forward runs is read at once in the
    second lane, on one intra-op thread; the lone first forward keeps all threads; both get the
    answers they get alone. With one lane the second would wait and the gate below time out."""
    import torch

    lanes = Reader(base_model_path(), lanes=2)
    questions = [("沙特计划建设多少个医疗集群？", [PASSAGE]), ("新加坡聚焦什么？", [PASSAGE])]
    alone = [lanes.read(q, ps) for q, ps in questions]
    run, threads_seen, second_started = lanes._batcher._run, [], threading.Event()

    def recording(batch):
        threads_seen.append(torch.get_num_threads())
        if len(threads_seen) == 1:
            assert second_started.wait(30), "the second request waited for the first forward"
        else:
            second_started.set()
        run(batch)

    lanes._batcher._run = recording
    results = [None, None]
    workers = [threading.Thread(target=lambda i=i: results.__setitem__(i, lanes.read(*questions[i]))) for i in range(2)]
    workers[0].start()
    _wait_for(lambda: len(threads_seen) == 1)
    workers[1].start()
    for t in workers:
        t.join(60)
    lanes._batcher._run = run
    assert threads_seen == [torch.get_num_threads(), 1]
    for got, want in zip(results, alone):
        assert [(p.start, p.end) for p in got] == [(p.start, p.end) for p in want]


def test_a_failing_forward_fails_every_waiting_request_and_the_reader_recovers(reader):
    net = reader.net
    errors = []

    def broken(ids, mask):
        raise RuntimeError("out of memory")

    reader.net = broken
    try:
        with reader._batcher._lock:
            threads = [threading.Thread(target=lambda: _record_error(errors, reader))
                       for _ in range(3)]
            for t in threads:
                t.start()
            _wait_for(lambda: len(reader._batcher._pending) == 3)
        for t in threads:
            t.join(30)
            assert not t.is_alive()  # nobody hangs
    finally:
        reader.net = net
    assert errors == ["out of memory"] * 3
    assert "21" in reader.read("沙特计划建设多少个医疗集群？", [PASSAGE])[0].text


def _record_error(errors, reader):
    try:
        reader.read("沙特计划建设多少个医疗集群？", [PASSAGE])
    except RuntimeError as exc:
        errors.append(str(exc))


def test_weights_for_another_base_model_are_refused_with_what_to_run(tmp_path):
    shutil.copytree(READER_DIR, tmp_path / "reader")
    card = json.loads((tmp_path / "reader" / "reader.json").read_text())
    card["base_fingerprint"] = "0" * 16
    (tmp_path / "reader" / "reader.json").write_text(json.dumps(card))
    with pytest.raises(ReaderModelError, match="eval.train_reader"):
        Reader(base_model_path(), tmp_path / "reader")
    with pytest.raises(ReaderModelError, match="eval.train_reader"):
        Reader(base_model_path(), tmp_path / "missing")


def test_a_card_without_its_window_settings_is_refused(tmp_path):
    shutil.copytree(READER_DIR, tmp_path / "reader")
    card = json.loads((tmp_path / "reader" / "reader.json").read_text())
    del card["config"]["infer_max_len"]
    (tmp_path / "reader" / "reader.json").write_text(json.dumps(card))
    with pytest.raises(ReaderModelError, match="infer_max_len"):
        Reader(base_model_path(), tmp_path / "reader")


def test_training_command_is_seeded_and_resumes(tmp_path):
    """Two fresh probe runs give the same weights; a third run resumes from the checkpoint."""
    def run(out, work):
        cmd = [sys.executable, "-m", "eval.train_reader", "--max-steps", "3", "--batch-size", "4", "--limit-questions", "120",
               "--no-eval", "--threads", "1", "--out", str(out), "--work-dir", str(work)]
        # a probe on the bundled samples of the training files (tests/data/bench): same code path,
        # no need for the full files
        env = {**os.environ, "CLUSTERQA_SHARED_BENCH": str(SAMPLES)}
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-2000:]
        return done

    run(tmp_path / "a", tmp_path / "wa")
    run(tmp_path / "b", tmp_path / "wb")
    a = (tmp_path / "a" / "reader.safetensors").read_bytes()
    assert a == (tmp_path / "b" / "reader.safetensors").read_bytes()
    again = run(tmp_path / "c", tmp_path / "wa")
    assert "resuming at step 3/3" in again.stderr
    assert (tmp_path / "c" / "reader.safetensors").read_bytes() == a


def test_distillation_probe_gives_a_smaller_reader_that_loads_and_names_its_teacher(tmp_path):
    """`--distil 1,3,...,11`: a student of six of the committed reader's layers, trained on its
    outputs; the Reader builds it from its card (six layers) and it reads like any reader."""
    out = tmp_path / "student"
    cmd = [sys.executable, "-m", "eval.train_reader", "--distil", "1,3,5,7,9,11", "--max-steps", "2",
           "--batch-size", "4", "--limit-questions", "60", "--no-eval", "--threads", "1", "--out", str(out),
           "--work-dir", str(tmp_path / "work")]
    env = {**os.environ, "CLUSTERQA_SHARED_BENCH": str(SAMPLES)}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    card = read_card(out)
    assert card["config"]["layers"] == [1, 3, 5, 7, 9, 11] and card["config"]["distil_weight"] > 0
    assert card["teacher"]["directory"] == "chat/reader"
    assert card["teacher"]["weights_sha256"] == hashlib.sha256((READER_DIR / "reader.safetensors").read_bytes()).hexdigest()
    student = Reader(base_model_path(), out)
    assert len(student.net.bert.encoder.layer) == 6
    pred = student.read("沙特计划建设多少个医疗集群？", [PASSAGE])[0]
    assert PASSAGE[pred.start:pred.end] == pred.text
    refused = subprocess.run([*cmd[:3], "--distil", "1,3", "--out", str(READER_DIR)], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "elsewhere than its teacher" in refused.stderr


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_freed_memory_trapped_in_the_heap_goes_back_to_the_kernel():
    """What the reader calls after forwards: memory freed below a live allocation stays in
    glibc's heap (the soak's RSS growth) until malloc_trim returns it."""
    import numpy as np

    from chat.reader import batching

    assert batching._release is not None, "malloc_trim not found: the server's RSS would grow"
    blocks = [np.ones(64 * 1024 // 8) for _ in range(3000)]  # 192 MB of heap chunks (below mmap's threshold)
    pinned = blocks[-1]  # keeps the heap's top in use, so free() alone cannot shrink it
    del blocks
    before = _rss_mb()
    batching.return_freed_memory()
    assert before - _rss_mb() > 100, (before, _rss_mb())
    assert pinned.sum() == len(pinned)


def test_bfloat16_can_be_forced_either_way(monkeypatch):
    # the suite is run once with CLUSTERQA_READER_BF16=1 and once with 0 (docs/benchmarks.md):
    # no expectation may depend on whether the CPU has native bfloat16
    for forced, expected in (("1", True), ("0", False)):
        monkeypatch.setenv("CLUSTERQA_READER_BF16", forced)
        assert Reader(base_model_path()).bf16 is expected


def test_an_operator_can_point_at_another_reader_and_its_calibration_is_checked(tmp_path, corpus_index, test_settings):
    """Settings.reader_dir: the engine loads the reader found there; the calibration (fitted for
    the committed weights, by sha256) is refused for other weights, with the command to refit."""
    import dataclasses

    from chat import ChatEngine
    from index.fitted import FittedMismatchError

    same = tmp_path / "same"
    shutil.copytree(READER_DIR, same, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    engine = ChatEngine(corpus_index, dataclasses.replace(test_settings, reader_dir=same))
    assert Path(engine.reader.directory) == same
    assert engine.ask("沙特计划建设多少个医疗集群？").answered

    other = tmp_path / "other"
    shutil.copytree(same, other)
    with open(other / "reader.safetensors", "ab") as f:
        f.write(b"\0")  # other bytes: other weights as far as the calibration can tell
    with pytest.raises(FittedMismatchError, match=r"reader_weights_sha256.*python -m eval\.calibrate_reader"):
        ChatEngine(corpus_index, dataclasses.replace(test_settings, reader_dir=other))
