"""Fitted parameters: the typed file, language-aware fusion, the reader calibration, the split."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from index.fitted import (DEFAULT_READER_DIR, FITTED_PATH, FITTED_VERSION, READER_CALIBRATION, Fitted,
                          FittedMismatchError, check_embedding, embedding_fingerprint, load_fitted, save_fitted)
from index.hybrid import Candidates, Fusion


def _pool(dense, bm25, cross):
    n = len(dense)
    return Candidates(rows=np.arange(n), dense_scores=np.array(dense, float), bm25_scores=np.array(bm25, float),
                      dense_ranks=np.arange(1, n + 1), bm25_ranks=np.arange(1, n + 1),
                      cross_language=np.array(cross, bool))


def test_other_language_candidates_are_scored_by_dense_alone():
    # candidate 2 is English under a Chinese question: its stray BM25 match (a number) must not count
    pool = _pool(dense=[0.80, 0.70, 0.90], bm25=[5.0, 0.0, 9.0], cross=[False, False, True])
    fused = Fusion("weighted", dense_weight=0.55, cross_weight=0.8).fuse(pool)
    assert fused[2] == pytest.approx(0.8 * 1.0)  # dense min-max 1.0, BM25 ignored
    assert fused[0] == pytest.approx(0.55 * 0.5 + 0.45 * 1.0)  # BM25 normalised over same-language only
    no_flags = Candidates(pool.rows, pool.dense_scores, pool.bm25_scores, pool.dense_ranks, pool.bm25_ranks)
    assert Fusion("weighted").fuse(no_flags)[2] == pytest.approx(1.0)  # unflagged pools: the old fusion


def test_fitted_files_round_trip_and_version_check(tmp_path):
    """fitted.json holds BM25 and fusion; a reader's calibration is written beside its weights,
    and each file only when its own section changed."""
    path, reader_dir = tmp_path / "fitted.json", tmp_path / "reader"
    reader_dir.mkdir()
    save_fitted(lambda f: setattr(f.reader, "answer_threshold", 1.5), path, reader_dir)
    assert not path.exists()  # only the reader's section changed
    save_fitted(lambda f: setattr(f.fusion, "dense_weight", 0.6), path, reader_dir)
    fitted = load_fitted(path, reader_dir)
    assert (fitted.reader.answer_threshold, fitted.fusion.dense_weight) == (1.5, 0.6)
    data = json.loads(path.read_text())
    assert data["version"] == FITTED_VERSION and "fusion" in data and "reader" not in data
    calibration = json.loads((reader_dir / READER_CALIBRATION).read_text())
    assert calibration["version"] == FITTED_VERSION and calibration["answer_threshold"] == 1.5
    data["version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="version"):
        Fitted.from_dict(json.loads(path.read_text()))
    with pytest.raises(ValueError, match="version"):
        Fitted.from_dict({"version": FITTED_VERSION}, {**calibration, "version": 99})


def test_committed_fitted_file_says_what_it_was_fitted_on():
    fitted = load_fitted()
    for section in (fitted.fusion, fitted.reader):
        assert "training files" in section.fitted_on and section.figures
        assert "cmrc2018_dev" not in section.fitted_on and "dev.jsonl" not in section.fitted_on


def test_committed_fitted_file_records_what_its_numbers_depend_on(test_settings):
    fitted = load_fitted()  # refuses a mismatch: the committed file agrees with the code and weights
    check_embedding(fitted, test_settings)
    for section in (fitted.fusion, fitted.reader):
        deps = section.depends_on
        assert deps["embedding"] == embedding_fingerprint(test_settings)
        assert deps["bm25"] == {"k1": fitted.bm25.k1, "b": fitted.bm25.b} and deps["tokenizer"]
    assert len(fitted.reader.depends_on["reader_weights_sha256"]) == 64
    from index.keyword import B, K1

    assert (K1, B) == (fitted.bm25.k1, fitted.bm25.b)  # BM25 takes its parameters from the file


def _changed_copy(tmp_path, change):
    data = json.loads(FITTED_PATH.read_text(encoding="utf-8"))
    change(data)
    path = tmp_path / "fitted.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_fitted_numbers_are_refused_when_bm25_changed_with_the_command_to_refit(tmp_path):
    path = _changed_copy(tmp_path, lambda d: d["bm25"].update(k1=1.2))
    with pytest.raises(FittedMismatchError, match=r"fusion parameters were fitted for bm25.*python -m eval\.fit_fusion"):
        load_fitted(path)


def _reader_copy(tmp_path, change=None):
    """A reader folder: the committed weights (linked) and card, its calibration changed."""
    folder = tmp_path / "reader"
    folder.mkdir()
    for name in ("reader.safetensors", "reader.json"):
        (folder / name).symlink_to(DEFAULT_READER_DIR / name)
    data = json.loads((DEFAULT_READER_DIR / READER_CALIBRATION).read_text(encoding="utf-8"))
    if change:
        change(data)
        (folder / READER_CALIBRATION).write_text(json.dumps(data), encoding="utf-8")
    return folder


def test_reader_calibration_is_refused_for_other_reader_weights(tmp_path):
    folder = _reader_copy(tmp_path, lambda d: d["depends_on"].update(reader_weights_sha256="0" * 64))
    with pytest.raises(FittedMismatchError, match=r"reader parameters .*python -m eval\.calibrate_reader "
                                                  r"--reader-dir") as err:
        load_fitted(reader_dir=folder)
    assert "fusion parameters" not in str(err.value)  # the fusion does not depend on the reader
    assert str(folder / READER_CALIBRATION) in str(err.value)  # names the file to refit


def test_a_reader_without_calibration_is_refused_with_the_command_that_fits_one(tmp_path):
    folder = _reader_copy(tmp_path)
    with pytest.raises(FittedMismatchError, match=rf"no calibration.*eval\.calibrate_reader --reader-dir {folder}"):
        load_fitted(reader_dir=folder)


def test_fitted_numbers_are_refused_for_another_embedding_model(tmp_path, test_settings):
    model = tmp_path / "other-model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"other weights")
    other = dataclasses.replace(test_settings, embed_model=str(model))
    with pytest.raises(FittedMismatchError, match="embedding.*eval.fit_fusion"):
        check_embedding(load_fitted(), other)


def test_reader_calibration_learns_which_signal_marks_the_answer_and_keeps_the_answer_floor():
    from eval.calibrate_reader import ANSWER_FLOOR, fit

    rng = np.random.default_rng(0)
    records = []
    for _ in range(300):  # answerable: the span score marks the right passage, retrieval misleads
        records.append({"source": "s", "answerable": True, "passages": [
            {"answerable": rng.normal(), "span": 8 + rng.normal(), "retrieval": 0.2, "relevant": True},
            {"answerable": rng.normal(), "span": 5 + rng.normal(), "retrieval": 1.0, "relevant": False}]})
    for _ in range(300):  # unindexed: nothing answers, spans are weak
        records.append({"source": "s", "answerable": False, "passages": [
            {"answerable": rng.normal(), "span": 4 + rng.normal(), "retrieval": 1.0, "relevant": False}]})
    out = fit(records)
    w = out["weights"]
    assert w["span"] > 0 and w["retrieval"] < 0 and abs(w["answerable"]) < w["span"]
    f = out["figures"]
    assert f["hit@1"] > 0.95 > f["hit@1_retrieval_order"]
    assert f["answerable_answered"] >= ANSWER_FLOOR and f["unindexed_refused"] > 0.9


def test_reader_calibration_weighs_other_language_passages_apart():
    """In a corpus of both languages the other-language passage that answers ranks below
    same-language ones by retrieval, while in a one-language corpus retrieval is right: the
    fit must serve both (the other-language passages' retrieval signals weigh apart)."""
    from eval.calibrate_reader import fit

    rng = np.random.default_rng(2)
    records = []
    for _ in range(300):  # same-language corpus: the top retrieved passage is the right one
        records.append({"source": "one", "answerable": True, "passages": [
            {"answerable": rng.normal(), "span": 5.0, "retrieval": 1.0, "cosine": 0.85, "cross": 0.0, "relevant": True},
            {"answerable": rng.normal(), "span": 5.0, "retrieval": 0.4, "cosine": 0.80, "cross": 0.0, "relevant": False}]})
    for _ in range(300):  # mixed corpus: same-language passages lead retrieval; the answer is across
        records.append({"source": "mixed", "answerable": True, "passages": [
            {"answerable": -3 + rng.normal(), "span": 5.0, "retrieval": 1.0, "cosine": 0.82, "cross": 0.0,
             "relevant": False},
            {"answerable": 3 + rng.normal(), "span": 5.0, "retrieval": 0.3 + 0.1 * rng.normal(), "cosine": 0.76,
             "cross": 1.0, "relevant": True}]})
    out = fit(records)
    f = out["figures"]
    assert {"cross_retrieval", "cross_cosine"} <= set(out["weights"])
    assert f["by_source"]["one"]["hit@1"] > 0.95 and f["by_source"]["mixed"]["hit@1"] > 0.95


def test_split_is_by_article_and_never_uses_evaluation_files(monkeypatch):
    from eval import shared_bench, splits

    if not shared_bench.has(*splits.TRAINING_FILES.values()):  # a clone alone: the bundled samples
        monkeypatch.setenv(shared_bench.ENV, str(shared_bench.SAMPLES))
    assert "cmrc2018_dev.json" not in splits.TRAINING_FILES.values()
    rows = splits.load("cmrc_trial")
    train, held = splits.split("cmrc_trial", rows, "train"), splits.split("cmrc_trial", rows, "held_out")
    assert len(train) + len(held) == len(rows) and held
    assert not {r.article for r in train} & {r.article for r in held}
    en_held = {r.article for r in splits.split("xquad_en", splits.load("xquad_en"), "held_out")}
    squad_train = {r.article for r in splits.split("squad", splits.load("squad"), "train")}
    assert en_held and not en_held & squad_train  # XQuAD and SQuAD are split together


def test_confident_threshold_reads_one_passage_only_where_that_loses_no_hit():
    from eval.calibrate_reader import fit

    rng = np.random.default_rng(1)
    records = []
    for i in range(400):  # strong top passages are right; weak ones are beaten by the second
        strong = i % 2 == 0
        records.append({"source": "s", "answerable": True, "passages": [
            {"answerable": (4.0 if strong else -1.0) + rng.normal(0, 0.3), "span": 6.0, "retrieval": 1.0,
             "relevant": strong},
            {"answerable": (-3.0 if strong else 2.0) + rng.normal(0, 0.3), "span": 6.0, "retrieval": 0.5,
             "relevant": not strong}]})
    out = fit(records)
    f = out["figures"]
    assert out["confident_threshold"] is not None and out["confident_threshold"] >= out["answer_threshold"]
    assert f["hit@1_early_exit"] >= f["hit@1_reading_all"] > 0.95
    assert 0.3 < f["share_reading_one_passage"] < 0.7  # the strong half, not the weak one
