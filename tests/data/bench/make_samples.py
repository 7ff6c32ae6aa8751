"""Writes the small samples in this folder from the full public files (eval/shared_bench.py).

    .venv/bin/python tests/data/bench/make_samples.py

Deterministic: the same full files give byte-identical samples. Each sample keeps the full
file's format and its records unchanged, only fewer of them (see README.md for what each holds).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from eval.shared_bench import bench_file  # noqa: E402
from eval.squad import load_squad, stratified_sample  # noqa: E402


def _load(name: str) -> dict:
    return json.loads(bench_file(name).read_text(encoding="utf-8"))


def _keep(data: dict, ids: set[str]) -> dict:
    """The file with only the questions in `ids` (and the paragraphs and articles holding them)."""
    out = {k: v for k, v in data.items() if k != "data"}
    out["data"] = []
    for art in data["data"]:
        paras = []
        for para in art["paragraphs"]:
            qas = [qa for qa in para["qas"] if qa["id"] in ids]
            if qas:
                paras.append({**para, "qas": qas})
        if paras:
            out["data"].append({**art, "paragraphs": paras})
    return out


def _first_question_of_articles(data: dict, n: int) -> set[str]:
    """The first question of the first paragraph of every k-th article: n questions, n articles."""
    arts = data["data"]
    step = max(1, len(arts) // n)
    return {a["paragraphs"][0]["qas"][0]["id"] for a in arts[::step][:n]}


def _write(name: str, data: dict) -> None:
    (HERE / name).write_text(json.dumps(data, ensure_ascii=False) + "\n", encoding="utf-8")


def main() -> None:
    # CMRC 2018 dev: the 20 questions the eval integration tests ask (stratified, seed 7).
    picked = {q.id for q in stratified_sample(load_squad(bench_file("cmrc2018_dev.json")).questions, 20, seed=7)}
    _write("cmrc2018_dev.json", _keep(_load("cmrc2018_dev.json"), picked))
    # Training files: 30 questions from 30 articles each (the split is by article).
    for name in ("cmrc2018_trial.json", "drcd_dev.json"):
        data = _load(name)
        _write(name, _keep(data, _first_question_of_articles(data, 30)))
    # SQuAD part A and XQuAD: one question from each of the 24 articles, the same ids in all
    # three files, so the held-out split (6 of the 24 articles) is the full files' split.
    en = _load("xquad_part_a.en.json")
    ids = {a["paragraphs"][0]["qas"][0]["id"] for a in en["data"]}
    for name in ("squad_dev_part_a.json", "xquad_part_a.en.json", "xquad_part_a.zh.json"):
        _write(name, _keep(_load(name), ids))


if __name__ == "__main__":
    main()
