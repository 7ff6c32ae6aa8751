"""Metric definitions on tiny hand-made cases whose results are worked out by hand."""

from __future__ import annotations

import pytest

from eval.metrics import (
    answer_groups,
    answer_recall,
    breakdown,
    citation_precision,
    evidence_matcher,
    first_rank,
    percentile,
    rank_metrics,
    score_question,
    summarize,
)
from eval.normalize import contains, normalize


def test_normalize_script_case_space_punctuation():
    assert normalize("集群發展") == normalize("集群发展") == "集群发展"
    assert normalize("  Hello,  World! ") == "helloworld"
    assert normalize("「先進製造業」集群。") == "先进制造业集群"
    # full-width letters and digits fold to ASCII; thousands separators are punctuation
    assert normalize("ＡＢＣ１２３") == "abc123"
    assert normalize("1,500") == "1500"
    assert normalize("") == ""


def test_contains_crosses_scripts_and_rejects_empty_needles():
    assert contains("《战国无双3》是由光荣和ω-force开发的", "光榮和Ω-Force")
    assert not contains("光荣和ω-force", "光荣与ω-force")
    assert not contains("anything", "。。")  # pure punctuation never matches


def test_answer_groups_shapes():
    assert answer_groups(["a", "b"]) == [["a", "b"]]
    assert answer_groups([["a", "A"], ["b"]]) == [["a", "A"], ["b"]]
    assert answer_groups([]) == []
    assert answer_groups(None) == []


def test_first_rank_and_rank_metrics():
    assert first_rank([False, False, True, True]) == 3
    assert first_rank([False] * 4) is None
    assert rank_metrics(1) == {"hit@1": 1.0, "hit@3": 1.0, "hit@5": 1.0, "mrr@10": 1.0}
    assert rank_metrics(3) == {"hit@1": 0.0, "hit@3": 1.0, "hit@5": 1.0, "mrr@10": pytest.approx(1 / 3)}
    assert rank_metrics(7) == {"hit@1": 0.0, "hit@3": 0.0, "hit@5": 0.0, "mrr@10": pytest.approx(1 / 7)}
    assert rank_metrics(11)["mrr@10"] == 0.0  # beyond the cut-off
    assert rank_metrics(None) == {"hit@1": 0.0, "hit@3": 0.0, "hit@5": 0.0, "mrr@10": 0.0}


def test_evidence_matcher_prefers_gold_over_answers():
    m = evidence_matcher(gold=["五大趋势"], answers=["跨国合作"])
    assert m("报告总结了五大趨勢。")  # Traditional in the passage
    assert not m("跨国合作是其一")  # answers are ignored when gold evidence exists
    m2 = evidence_matcher(answers=[["A"], ["b"]])
    assert m2("only b here") and m2("only a here")  # any alternative of any group is evidence
    assert evidence_matcher() is None and evidence_matcher(gold=["  "]) is None


def test_answer_recall_alternatives_and_groups():
    assert answer_recall("答案是 1,500 个集群。", ["1500", "一千五百"]) == 1.0
    assert answer_recall("答案是 1,400 个集群。", ["1500", "一千五百"]) == 0.0
    both = [["美国", "美國"], ["欧盟", "EU"]]
    assert answer_recall("美國和eu都有法案", both) == 1.0
    assert answer_recall("美国有法案", both) == 0.0  # second group missing
    assert answer_recall("whatever", []) is None


def test_citation_precision():
    m = evidence_matcher(gold=["净零"])
    assert citation_precision(["关于淨零工业法案", "无关段落", "净零转型"], m) == pytest.approx(2 / 3)
    assert citation_precision([], m) is None
    assert citation_precision(["x"], None) is None


def test_percentile_linear_interpolation():
    vals = [10, 20, 30, 40, 50]
    assert percentile(vals, 50) == 30
    assert percentile(vals, 95) == pytest.approx(48.0)  # 40 + 0.8 * 10
    assert percentile([5.0], 95) == 5.0
    assert percentile([], 50) is None
    assert percentile([4, 1, 3, 2], 50) == 2.5  # unsorted input


def test_score_question_answerable_answered():
    m = evidence_matcher(gold=["五大趋势"])
    rec = score_question(answerable=True, answered=True, answer_text="报告总结了五大趋势 [1]",
                         passages=["无关", "报告总结了五大趋势", "五大趋势"], cited=["报告总结了五大趋势", "无关"],
                         matcher=m, answers=["五大趋势"], latency_ms=12.0)
    assert rec["rank"] == 2 and rec["hit@1"] == 0.0 and rec["hit@3"] == 1.0 and rec["mrr@10"] == 0.5
    assert rec["answer_recall"] == 1.0 and rec["refusal_accuracy"] == 1.0 and rec["citation_precision"] == 0.5


def test_score_question_refusals():
    # wrongly refused: recall counts as 0, refusal wrong, no citation precision
    rec = score_question(answerable=True, answered=False, answer_text="文档中没有五大趋势的信息",
                         passages=["五大趋势"], cited=["五大趋势"], matcher=evidence_matcher(answers=["五大趋势"]),
                         answers=["五大趋势"])
    assert rec["answer_recall"] == 0.0 and rec["refusal_accuracy"] == 0.0 and rec["citation_precision"] is None
    assert rec["hit@1"] == 1.0  # retrieval still found it
    # correctly refused unanswerable: only refusal accuracy applies
    rec = score_question(answerable=False, answered=False, answer_text="没有相关信息", passages=["x"], cited=[],
                         matcher=None)
    assert rec["refusal_accuracy"] == 1.0
    assert rec["hit@1"] is None and rec["mrr@10"] is None and rec["answer_recall"] is None


def test_relevant_flags_override_matcher():
    # SQuAD rule: a passage with the answer from the wrong paragraph does not count
    rec = score_question(answerable=True, answered=True, answer_text="a", passages=["a", "a"], cited=[],
                         matcher=evidence_matcher(answers=["a"]), relevant_flags=[False, True], answers=["a"])
    assert rec["rank"] == 2


def test_summarize_means_over_applicable_questions():
    recs = [
        {"hit@1": 1.0, "hit@3": 1.0, "hit@5": 1.0, "mrr@10": 1.0, "answer_recall": 1.0, "refusal_accuracy": 1.0,
         "citation_precision": 0.5, "latency_ms": 10.0, "lang": "en"},
        {"hit@1": 0.0, "hit@3": 1.0, "hit@5": 1.0, "mrr@10": 0.5, "answer_recall": 0.0, "refusal_accuracy": 1.0,
         "citation_precision": 1.0, "latency_ms": 30.0, "lang": "zh-Hans"},
        {"hit@1": None, "hit@3": None, "hit@5": None, "mrr@10": None, "answer_recall": None,
         "refusal_accuracy": 0.0, "citation_precision": None, "latency_ms": 20.0, "lang": "zh-Hans"},
    ]
    s = summarize(recs)
    assert s["n"] == 3
    assert s["hit@1"] == 0.5 and s["hit@3"] == 1.0 and s["mrr@10"] == 0.75
    assert s["answer_recall"] == 0.5 and s["citation_precision"] == 0.75
    assert s["refusal_accuracy"] == pytest.approx(0.6667)
    assert s["latency_ms_p50"] == 20.0 and s["latency_ms_p95"] == 29.0
    assert s["counts"]["hit@1"] == 2 and s["counts"]["refusal_accuracy"] == 3
    b = breakdown(recs, "lang")
    assert set(b) == {"en", "zh-Hans"} and b["zh-Hans"]["n"] == 2 and b["zh-Hans"]["hit@1"] == 0.0
    assert summarize([])["hit@1"] is None



def test_em_f1_official_normalisations():
    from eval.em_f1 import em_f1

    assert em_f1("The Denver Broncos", ["Denver Broncos"]) == (1.0, 1.0)  # SQuAD drops articles
    assert em_f1("Broncos", ["Denver Broncos"])[1] == pytest.approx(2 / 3)
    assert em_f1("光荣和ω-force", ["光荣和ω-force"]) == (1.0, 1.0)
    em, f1 = em_f1("1995年", ["1995"])  # CMRC: each Han character a token, digit runs one token
    assert em == 0.0 and f1 == pytest.approx(2 / 3)
    assert em_f1("臺灣大學", ["台湾大学"])[0] == 1.0  # Traditional compared in Simplified
    assert em_f1("", ["x"]) == (0.0, 0.0)
