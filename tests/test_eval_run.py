"""`eval run` plumbing, report, feedback and summary comparison on hand-made data (no model).

The engine here is a stand-in that returns fixed Answers, so every expected figure
below is worked out by hand from those answers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.compare import compare_runs
from eval.feedback import feedback_to_questions
from eval.questions import QuestionSetError, load_questions
from eval.runner import run_question_set
from settings import load_settings

QUESTIONS = [
    {"id": "q1", "question": "报告总结了几大趋势？", "answers": ["八大趋势"], "gold": ["八大趋势"]},
    {"id": "q2", "question": "報告在哪裡發布？", "answers": [["长沙", "長沙"]]},
    {"id": "q3", "question": "Where was the report released?", "answers": ["Changsha", "长沙"],
     "history": [{"role": "user", "content": "报告"}, {"role": "assistant", "content": "..."}]},
    {"id": "q4", "question": "火星上有几个集群？", "answerable": False},
]


def _cite(n, text, chunk="doc#0"):
    return {"n": n, "doc_id": chunk.split("#")[0], "title": "t", "source": "s", "date": "", "chunk_id": chunk,
            "text": text, "quote": text[:10], "start": 0, "end": len(text), "score": 0.5}


ANSWERS = {
    # hit at rank 2; answer right; 1 of 2 citations holds the evidence
    "报告总结了几大趋势？": {"answer": "报告总结了八大趋势 [2]", "answered": True,
                     "citations": [_cite(1, "无关段落", "a#0"), _cite(2, "报告总结全球先进制造业集群八大趋势", "a#1")]},
    # Simplified passage, Traditional question: hit at 1; answered in Traditional
    "報告在哪裡發布？": {"answer": "報告在長沙發布 [1]", "answered": True,
                  "citations": [_cite(1, "报告8日在湖南长沙发布", "a#2")]},
    # follow-up wrongly refused
    "Where was the report released?": {"answer": "The documents do not say.", "answered": False,
                                       "citations": [_cite(1, "no answer here", "b#0")]},
    # unanswerable, correctly refused
    "火星上有几个集群？": {"answer": "文档中没有相关信息。", "answered": False, "citations": []},
}


class FakeEngine:
    def __init__(self):
        self.calls = []

    def ask(self, question, history=None, top_k=None):
        self.calls.append((question, history, top_k))
        return {"question": question, **ANSWERS[question], "timings_ms": {"total": 1.0}}


@pytest.fixture
def qfile(tmp_path):
    p = tmp_path / "q.jsonl"
    p.write_text("\n".join(json.dumps(q, ensure_ascii=False) for q in QUESTIONS) + "\n", encoding="utf-8")
    return p


def test_run_question_set_in_process(tmp_path, qfile):
    engine = FakeEngine()
    out = tmp_path / "out"
    s = run_question_set(qfile, out, settings=load_settings(env={}), engine=engine, top_k=3, progress=False)
    # history is passed on, top_k too
    assert engine.calls[2][1] == QUESTIONS[2]["history"] and engine.calls[0][2] == 3
    assert s["n"] == 4
    # retrieval over the 3 answerable: ranks 2, 1, miss -> hit@1 1/3, hit@3 2/3, MRR (0.5+1+0)/3
    assert s["hit@1"] == pytest.approx(0.3333) and s["hit@3"] == pytest.approx(0.6667)
    assert s["mrr@10"] == pytest.approx(0.5)
    # recall: q1 yes, q2 yes (Traditional answer), q3 refused -> 0
    assert s["answer_recall"] == pytest.approx(0.6667)
    assert s["refusal_accuracy"] == 0.75  # q3 wrong
    assert s["citation_precision"] == pytest.approx(0.75)  # q1 0.5, q2 1.0
    assert set(s["by_kind"]) == {"single-turn", "follow-up", "unanswerable"}
    assert s["by_kind"]["unanswerable"]["refusal_accuracy"] == 1.0
    assert s["by_kind"]["follow-up"]["answer_recall"] == 0.0
    assert {"zh-Hans", "zh-Hant", "en"} <= set(s["by_language"])
    for key in ("n", "hit@1", "hit@3", "hit@5", "mrr@10", "answer_recall", "refusal_accuracy",
                "citation_precision", "latency_ms_p50", "latency_ms_p95", "config"):
        assert key in s
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["rank"] for r in rows] == [2, 1, None, None]
    assert rows[0]["retrieved"] == ["a#0", "a#1"] and rows[0]["answered"] is True
    assert json.loads((out / "summary.json").read_text(encoding="utf-8"))["n"] == 4
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "hits_by_language.png" in report and "latency_hist.png" in report and "Worst" in report
    for png in ("hits_by_language.png", "latency_hist.png", "quality_by_kind.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the worst question (wrongly refused follow-up) is listed first
    worst = report.split("## Worst")[1]
    assert worst.index("| q3 |") < worst.index("| q1 |")


def test_engine_errors_become_results(tmp_path, qfile):
    class Broken(FakeEngine):
        def ask(self, question, history=None, top_k=None):
            raise ValueError("boom")

    s = run_question_set(qfile, tmp_path / "o", settings=load_settings(env={}), engine=Broken(), progress=False)
    assert s["errors"] == 4 and s["answer_recall"] == 0.0


@pytest.mark.parametrize("line,msg", [
    ('{"id": 1}', "needs a non-empty 'question'"),
    ('not json', "not JSON"),
    ('{"question": "q", "history": [{"role": "bot", "content": "x"}]}', "history"),
    ('{"question": "q", "answers": "a"}', "'answers' must be a list"),
])
def test_question_set_errors(tmp_path, line, msg):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"id": "ok", "question": "fine"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(QuestionSetError, match=f"bad.jsonl:2: .*{msg[:12]}"):
        load_questions(p)


def test_feedback_to_questions(tmp_path):
    log = tmp_path / "feedback.jsonl"
    lines = [
        {"question": "报告在哪发布？", "answer": "长沙 [1]", "vote": "down", "citations": [], "time": "t1"},
        {"question": "报告在哪发布？ ", "answer": "长沙 [1]", "vote": "up", "time": "t2",
         "citations": [{"chunk_id": "a#2", "quote": "报告8日在湖南长沙发布"}]},
        {"question": "几大趋势？", "answer": "五大", "vote": -1, "citations": [{"chunk_id": "a#1", "quote": "八大趋势"}]},
        {"question": "no quotes", "answer": "x", "vote": True, "citations": []},
    ]
    log.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\nnot json\n", encoding="utf-8")
    info = feedback_to_questions(log, tmp_path / "fb.jsonl")
    assert info == {"questions": 1, "for_review": 2, "skipped_lines": 1, "out": str(tmp_path / "fb.jsonl"),
                    "review": str(tmp_path / "fb.review.jsonl")}
    qs = load_questions(tmp_path / "fb.jsonl")  # a valid question set
    assert qs[0]["answers"] == ["报告8日在湖南长沙发布"] and qs[0]["gold"] == qs[0]["answers"]
    review = [json.loads(x) for x in (tmp_path / "fb.review.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {r["why"] for r in review} == {"thumbs-down", "thumbs-up without cited quotes"}


def test_compare_two_saved_runs(tmp_path):
    a = {"n": 10, "hit@1": 0.5, "mrr@10": 0.6, "latency_ms_p50": 100.0, "modes": {"hybrid": {"hit@1": 0.5}},
         "config": {"x": 1}}
    b = {"n": 10, "hit@1": 0.75, "mrr@10": 0.6, "latency_ms_p50": 50.0, "modes": {"hybrid": {"hit@1": 0.25}}}
    pa, pb = tmp_path / "a" / "summary.json", tmp_path / "b" / "summary.json"
    for p, d in ((pa, a), (pb, b)):
        p.parent.mkdir()
        p.write_text(json.dumps(d))
    text = compare_runs(pa, pb, out_dir=tmp_path / "cmp")
    fig = json.loads((tmp_path / "cmp" / "compare.json").read_text())["figures"]
    assert fig["hit@1"] == {"a": 0.5, "b": 0.75, "ratio": 1.5, "diff": 0.25}
    assert fig["latency_ms_p50"]["ratio"] == 0.5
    assert fig["modes:hybrid/hit@1"]["diff"] == -0.25
    assert "| hit@1 | 0.500 | 0.750 | 1.500 | +0.25 |" in text
