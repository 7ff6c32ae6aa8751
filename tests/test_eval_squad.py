"""SQuAD-format loader, sampling, script conversion and the hit rule, on tiny hand-made files."""

from __future__ import annotations

import json
import time
from collections import Counter
from types import SimpleNamespace

import pytest

from eval.squad import (
    SquadFormatError,
    convert_file,
    load_squad,
    paragraph_of_doc,
    stratified_sample,
    write_corpus,
)
from eval.squad_bench import retrieval_pass

HANS = {"version": "v1.0", "data": [
    {"id": "DEV_0", "title": "集群", "paragraphs": [{"id": "DEV_0", "context": "先进制造业集群是软件和数据产业的重要载体。全球共有四十五个国家级集群。",
     "qas": [{"id": "Q0", "question": "全球有多少个国家级集群？", "answers": [
         {"text": "四十五个", "answer_start": 27}, {"text": "四十五个", "answer_start": 27},
         {"text": "四十五", "answer_start": -1}]}]}]},
    {"id": "DEV_1", "title": "网络", "paragraphs": [{"context": "网络安全产业集群位于长沙。",
     "qas": [{"id": "Q1", "question": "网络安全产业集群在哪里？", "answers": [{"text": "长沙", "answer_start": 10}]}]}]},
]}
HANT = {"data": [{"title": "叢集", "paragraphs": [
    {"context": "半導體叢集位於新竹，軟體產業則在臺北。", "qas": [
        {"id": "T0", "question": "半導體叢集在哪裡？", "answers": [{"text": "新竹", "answer_start": 5}]},
        {"id": "T1", "question": "軟體產業在哪裡？", "answers": [{"text": "臺北", "answer_start": 15}]}]},
    {"context": "該計畫於2022年啟動。", "qas": [
        {"id": "T2", "question": "計畫何時啟動？", "answers": [{"text": "2022年", "answer_start": 4}]}]}]}]}
EN = {"version": "1.1", "data": [{"title": "Hamburg", "paragraphs": [
    {"context": "Hamburg is one of the largest civil aviation sites in the world, with over 40,000 employees.",
     "qas": [{"id": "E0", "question": "How many people work in Hamburg's aviation industry?",
              "answers": [{"text": "over 40,000", "answer_start": 66}]},
             {"id": "E1", "question": "What kind of site is Hamburg?", "answers": [],
              "is_impossible": True}]}]}]}


def _write(tmp_path, name, obj):
    p = tmp_path / name
    p.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return p


@pytest.mark.parametrize("obj,n_q,n_p", [(HANS, 2, 2), (HANT, 3, 2), (EN, 2, 1)])
def test_loader_reads_all_three_scripts(tmp_path, obj, n_q, n_p):
    s = load_squad(_write(tmp_path, "f.json", obj))
    assert len(s.questions) == n_q and len(s.paragraphs) == n_p
    for q in s.questions:
        assert q.paragraph in s.paragraphs


def test_loader_details(tmp_path):
    s = load_squad(_write(tmp_path, "hans.json", HANS))
    q0 = s.questions[0]
    assert q0.id == "Q0" and q0.answers == ["四十五个", "四十五"]  # duplicates dropped, order kept
    assert q0.paragraph == "a0p0" and s.paragraphs["a0p0"].title == "集群"
    en = load_squad(_write(tmp_path, "en.json", EN))
    assert [q.answerable for q in en.questions] == [True, False]
    assert len(s.sha256) == 64


@pytest.mark.parametrize("obj,msg", [
    ({"foo": 1}, "'data' list"),
    ({"data": [{"paragraphs": [{"qas": []}]}]}, "data[0].paragraphs[0]: missing or empty 'context'"),
    ({"data": [{"paragraphs": [{"context": "c", "qas": [{"id": "x"}]}]}]}, "qas[0]: missing 'question'"),
    ({"data": [{"paragraphs": [{"context": "c", "qas": [{"id": "x", "question": "q"}, {"id": "x", "question": "r"}]}]}]},
     "duplicate id"),
    ({"data": []}, "no questions"),
])
def test_loader_errors_name_the_place(tmp_path, obj, msg):
    with pytest.raises(SquadFormatError, match=msg.replace("[", r"\[").replace("]", r"\]")):
        load_squad(_write(tmp_path, "bad.json", obj))


def test_loader_rejects_non_json(tmp_path):
    p = tmp_path / "x.json"
    p.write_bytes(b"\xff\xfe not json")
    with pytest.raises(SquadFormatError, match="x.json"):
        load_squad(p)


def _fake_questions(n_paras, per_para):
    return [SimpleNamespace(id=f"p{p}q{i}", paragraph=f"a{p}p0") for p in range(n_paras) for i in range(per_para)]


def test_stratified_sample_spreads_and_reproduces():
    qs = _fake_questions(10, 4)
    a = stratified_sample(qs, 7, seed=1)
    assert len(a) == 7 and len({q.paragraph for q in a}) == 7  # one per paragraph first
    assert [q.id for q in a] == [q.id for q in stratified_sample(qs, 7, seed=1)]
    assert [q.id for q in a] != [q.id for q in stratified_sample(qs, 7, seed=2)]
    b = stratified_sample(qs, 25, seed=3)
    per = Counter(q.paragraph for q in b)
    assert len(b) == 25 and max(per.values()) - min(per.values()) <= 1  # balanced beyond one round
    assert stratified_sample(qs, None) == qs and stratified_sample(qs, 1000) == qs


def test_convert_to_traditional_and_back(tmp_path):
    src = _write(tmp_path, "hans.json", HANS)
    info = convert_file(src, tmp_path / "hant.json", to="zh-Hant")
    assert info["questions"] == 2
    hant = json.loads((tmp_path / "hant.json").read_text(encoding="utf-8"))
    ctx = hant["data"][0]["paragraphs"][0]["context"]
    assert "軟體" in ctx and "資料" in ctx  # Taiwanese phrasing, as DRCD reads
    for article in hant["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                for ans in qa["answers"]:
                    if ans["answer_start"] >= 0:
                        s = ans["answer_start"]
                        assert para["context"][s:s + len(ans["text"])] == ans["text"]
    s = load_squad(tmp_path / "hant.json")
    assert s.questions[1].question == "網路安全產業叢集在哪裡？"


def test_write_corpus_and_doc_mapping(tmp_path):
    s = load_squad(_write(tmp_path, "hans.json", HANS))
    paths = write_corpus(s, sorted(s.paragraphs), tmp_path / "corpus")
    assert [p.name for p in paths] == ["a0p0.txt", "a1p0.txt"]
    text = paths[1].read_text(encoding="utf-8")
    assert text.startswith("source: hans.json#a1p0\ntitle: 网络\n\n") and "长沙" in text
    assert paragraph_of_doc("a1p0.txt") == paragraph_of_doc("sub/a1p0.txt") == "a1p0"


class _FakeIndex:
    """Returns fixed hit lists: exercises the hit rule without a model. Each call takes
    `delay_s`, so the measured latency is known."""

    delay_s = 0.03

    def __init__(self, lists):
        self.lists = lists

    def retrieve_many(self, queries, top_k, mode):
        time.sleep(self.delay_s)
        out = []
        for q in queries:
            hits = []
            for n, (doc, text) in enumerate(self.lists[q][:top_k]):
                chunk = SimpleNamespace(doc_id=doc, chunk_id=f"{doc}#{n}", text=text)
                hits.append(SimpleNamespace(chunk=chunk))
            out.append(hits)
        return out


def test_hit_rule_needs_right_paragraph_and_answer(tmp_path):
    s = load_squad(_write(tmp_path, "hant.json", HANT))
    q_t0, q_t1, q_t2 = s.questions
    idx = _FakeIndex({
        # answer text present but in another paragraph first, then the right one (Simplified, as indexed)
        q_t0.question: [("a0p1.txt", "新竹"), ("a0p0.txt", "半导体丛集位于新竹")],
        # right paragraph, but the chunk lacks the answer; then a chunk with it
        q_t1.question: [("a0p0.txt", "半导体丛集位于新竹，"), ("a0p1.txt", "台北"), ("a0p0.txt", "软体产业则在台北。")],
        q_t2.question: [("a0p0.txt", "无关")],
    })
    recs, ms = retrieval_pass(idx, s.questions, "hybrid", top_k=10, batch_size=2, progress=False)
    assert [r["rank"] for r in recs] == [2, 3, None]
    assert recs[0]["mrr@10"] == 0.5 and recs[2]["hit@5"] == 0.0
    assert recs[1]["retrieved"][0] == "a0p0.txt#0"
    # milliseconds per question: two batches of 30 ms over three questions (not the total, 60,
    # not per batch, 30, not seconds)
    assert 20.0 <= ms < 30.0, ms
    # paragraph level ignores the answer: q_t1's first chunk is from its paragraph
    assert [r["paragraph_hit@1"] for r in recs] == [0.0, 1.0, 0.0]
    assert recs[0]["paragraph_mrr@10"] == 0.5
