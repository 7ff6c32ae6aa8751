"""ChatEngine on the real index of the bundled corpus (real model and reader, extractive mode)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from chat import ChatEngine, QuestionError

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
MARKER_RE = re.compile(r"\[(\d+)\]")


@pytest.fixture(scope="module")
def engine(corpus_index, test_settings):
    return ChatEngine(corpus_index, test_settings)


def assert_well_cited(answer):
    """Every answer line ends with [n] (but a list's count line); every n points at a
    citation; quotes are substrings; the span sits inside its citation's text."""
    assert answer.answered and answer.citations
    for line in answer.answer.splitlines():
        assert re.search(r"\[\d+\]$", line) or line.endswith(("：", ":")), line
    used = {int(n) for n in MARKER_RE.findall(answer.answer)}
    assert used == {c.n for c in answer.citations} == set(range(1, len(answer.citations) + 1))
    for c in answer.citations:
        assert c.quote and c.quote in c.text
    if answer.span is not None:
        cited = answer.citations[answer.span["citation"] - 1].text
        assert cited[answer.span["start"]:answer.span["end"]] == answer.span["text"]


def test_chinese_question_answered_with_citation(engine):
    a = engine.ask("沙特计划建设多少个医疗集群？")
    assert a.language == "zh-Hans" and a.mode == "extractive"
    assert a.answer.startswith("答：") and "21" in a.span["text"] and len(a.span["text"]) <= 10
    assert "\n根据文档：" in a.answer and "21个医疗集群" in a.answer and "[1]" in a.answer
    assert_well_cited(a)
    doc = engine.index.get_document(a.citations[0].doc_id)
    c = a.citations[0]
    assert doc.text[c.start:c.end] == c.text  # Simplified asker: text is the canonical chunk


def test_traditional_question_gets_traditional_answer_and_quotes(engine):
    a = engine.ask("韓國打造了全球最大的什麼集群？")
    assert a.language == "zh-Hant" and a.answer.startswith("答：") and "根據文件：" in a.answer
    assert "半導體" in a.answer and "半导体" not in a.answer
    assert_well_cited(a)
    assert all("導" in c.quote or "韓" in c.quote for c in a.citations)


def test_english_question_on_english_document(engine):
    a = engine.ask("How many members does it's OWL have?")
    assert a.language == "en" and a.answer.startswith("Answer:") and "According to the documents:" in a.answer
    assert "200" in a.span["text"] and "200 members" in a.answer
    assert_well_cited(a)


@pytest.mark.parametrize("question, language, phrase", [
    ("新加坡计划投入多少资金发展人工智能集群?", "zh-Hans", "没有找到"),
    ("新加坡計劃投入多少資金發展人工智能集群？", "zh-Hant", "沒有找到"),
    ("What is the annual revenue of Lufthansa Technik?", "en", "could not find"),
])
def test_unanswerable_question_is_refused_politely_in_askers_language(engine, question, language, phrase):
    """Near-domain questions (the topic is in the corpus, the fact is not) are refused, with
    the reason the refusal checks found (chat/refusal.py)."""
    a = engine.ask(question)
    assert a.answered is False and a.language == language and phrase in a.answer
    assert a.evidence["reason"] != "answered" and a.evidence["checks"]
    assert not MARKER_RE.search(a.answer)
    assert a.citations and all(c.quote in c.text for c in a.citations)  # nearest passages, for reference


def test_question_is_embedded_once_per_ask(engine):
    """Retrieval embeds the question once; the reader reads text, not vectors."""
    engine.warm_up()
    inner = engine.index.embedder
    calls = []
    original = inner.encode_queries

    def counting(texts, **kw):
        calls.append(list(texts))
        return original(texts, **kw)

    inner.encode_queries = counting
    try:
        a = engine.ask("欧盟计划在三年内培训多少名技术工人?")
    finally:
        del inner.encode_queries  # back to the class's method
    assert len(calls) == 1 and a.citations
    assert set(a.timings_ms) == {"retrieve", "read", "answer", "total"} and a.timings_ms["read"] > 0


def test_the_best_passage_in_the_other_language_is_read_too(engine, test_settings):
    """The dense model ranks every English report above the Chinese passage that answers an
    English question about the article; the reader reads the best Chinese passages as well."""
    question = "How many medical clusters does Saudi Arabia plan to build?"
    read = [r for r in engine.read_passages(question) if r.prediction is not None]
    n, extra = test_settings.reader_passages, test_settings.cross_language_passages
    assert len(read) == n + extra
    assert sorted(r.hit.chunk.language for r in read) == sorted(["en"] * n + ["zh"] * extra)
    from dataclasses import replace

    off = ChatEngine(engine.index, replace(test_settings, cross_language_passages=0), reader=engine.reader)
    read_off = [r for r in off.read_passages(question) if r.prediction is not None]
    assert len(read_off) == n and all(r.hit.chunk.language == "en" for r in read_off)


def test_english_question_about_the_chinese_article_is_answered_from_it(engine):
    a = engine.ask("In which city was the 2023 report on global advanced manufacturing clusters released?")
    assert a.answered and "长沙" in a.span["text"]
    assert "cluster-trends-report-2023" in a.citations[a.span["citation"] - 1].doc_id
    assert_well_cited(a)


def test_a_confident_top_passage_is_read_alone(corpus_index, test_settings):
    """With the top passage at or above the confident threshold only it is read; without a
    threshold every passage up to reader_passages is read (and the same answer is kept when
    the top passage wins anyway)."""
    from dataclasses import replace

    question = "欧盟计划在三年内培训多少名技术工人?"
    engine = ChatEngine(corpus_index, test_settings)
    read_sizes = []
    original = engine.reader.read

    read_texts = []

    class Counting:
        def read(self, q, passages):
            read_sizes.append(len(passages))
            read_texts.append(list(passages))
            return original(q, passages)

    engine.reader = Counting()
    engine.params = replace(engine.params, confident_threshold=None)
    everything = engine.ask(question)
    n_read = len([r for r in engine.read_passages(question) if r.prediction is not None])
    # every passage up to reader_passages is read but those the gate keeps out (they could not answer)
    assert n_read >= test_settings.reader_passages
    assert read_sizes[0] + len(everything.evidence.get("not_read", [])) == n_read
    read_sizes.clear()
    read_texts.clear()
    engine.params = replace(engine.params, confident_threshold=-1e9)
    alone = engine.ask(question)
    top = corpus_index.retrieve(question, top_k=1)[0].chunk
    assert read_sizes[0] == 1 and alone.citations[0].chunk_id == top.chunk_id
    # a count is asked: what else is read is only other documents' passages in the question's
    # language, for a value that disagrees (the article's 31 hubs, a report's 12)
    by_text = {c.text: c for d in corpus_index.documents() for c in corpus_index.chunks_of(d.doc_id)}
    later = [by_text[t] for batch in read_texts[1:] for t in batch]
    assert all(c.doc_id != top.doc_id and c.language == top.language for c in later)
    assert sum(read_sizes) < n_read
    # here the top passage wins either way: the same answer for a third of the reading
    assert everything.citations[0].chunk_id == alone.citations[0].chunk_id
    assert alone.span["text"] == everything.span["text"] and "10万" in alone.span["text"]


def test_list_question_gets_the_count_and_the_whole_list(engine):
    a = engine.ask("报告提出了哪六项关键建议？")
    assert a.answered and "共6项" in a.answer
    for item in ("深化跨区域开放协作", "助推中小企业培育提升", "推进尖端技术研究突破", "加速集群净零碳转型",
                 "重视集群品牌建设", "加快促进组织能力建设"):
        assert item in a.answer
    assert_well_cited(a)


@pytest.mark.parametrize("question, expected", [
    ("这篇文章是哪天发布的？", "2025-10-14"),
    ("When was this article published?", "2025-10-14"),
    ("Who published this page?", "achie.org"),
    ("韩国半导体集群的报道是哪天发布的？", "2023-03-16"),
])
def test_metadata_questions_are_answered_from_the_documents_metadata(engine, question, expected):
    a = engine.ask(question)
    assert a.answered and expected in a.answer and a.citations and a.span is None and a.kind == "metadata"
    assert_well_cited(a)


def test_chinese_question_over_an_english_document(engine):
    a = engine.ask("it's OWL有多少成员？")
    assert a.answered and "200" in a.span["text"] and "its-owl" in a.citations[0].doc_id
    assert a.answer.startswith("答（引自英文原文，未翻译）：")


def test_follow_up_entity_substitution(engine):
    history = [{"role": "user", "content": "韩国打造了全球最大的什么集群？"},
               {"role": "assistant", "content": "根据文档：韩国打造全球最大半导体集群。[1]"}]
    a = engine.ask("那沙特呢？", history=history)
    assert a.resolved_question == "沙特打造了全球最大的什么集群？"
    assert a.answered and "医疗集群" in a.answer


OWL_HISTORY = [{"role": "user", "content": "How many members does it's OWL have?"},
               {"role": "assistant", "content": "According to the documents: With over 200 members … [1]"}]


def test_follow_up_pronoun_english_is_resolved_and_retrieves_the_subject(engine):
    a = engine.ask("And which fields do they focus on?", history=OWL_HISTORY)
    assert a.resolved_question == "Which fields do it's OWL focus on?"
    assert a.citations and "its-owl" in a.citations[0].doc_id


def test_follow_up_ordinal_over_a_list(engine):
    history = [{"role": "user", "content": "报告提出了哪六项关键建议？"},
               {"role": "assistant", "content": "根据文档：报告提出六项关键建议……[1]"}]
    a = engine.ask("第三项是什么？", history=history)
    assert a.answered and "推进尖端技术研究突破" in a.answer
    assert "深化跨区域开放协作" not in a.answer  # the third item, not the list
    assert_well_cited(a)


def test_stream_yields_tokens_then_the_answer(engine):
    events = list(engine.stream("欧盟计划在3年内培训多少名技术工人？"))
    assert events[-1]["type"] == "answer" and all(e["type"] != "answer" for e in events[:-1])
    answer = events[-1]["answer"]
    tokens = "".join(e["text"] for e in events if e["type"] == "token")
    assert tokens == answer["answer"] and "10万" in tokens and answer["span"]
    json.dumps(answer)  # the event is JSON-ready


@pytest.mark.parametrize("question, status", [
    ("", 400), ("   ", 400), ("集" * 10_000, 413), ("😀😀😀", 400), ("<script>alert(1)</script>", 400),
])
def test_bad_input_raises_question_error_before_streaming(engine, question, status):
    with pytest.raises(QuestionError) as err:
        engine.stream(question)
    assert err.value.status == status and str(err.value)


def test_html_in_question_is_answered_as_text(engine):
    a = engine.ask("<b>沙特</b>计划建设多少个<i>医疗集群</i>？<script>alert(1)</script>")
    assert a.answered and "21个医疗集群" in a.answer and "<script>" in a.question


def test_bad_history_raises_question_error(engine):
    with pytest.raises(QuestionError):
        engine.ask("那沙特呢？", history=[{"role": "robot", "content": "hi"}])


def test_cli_json_prints_the_contract(corpus_index, test_settings):
    env = dict(os.environ, CLUSTERQA_INDEX_DIR=str(test_settings.index_dir))
    out = subprocess.run([sys.executable, "-m", "chat", "--json", "沙特计划建设多少个医疗集群？"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert set(data) >= {"question", "answer", "answered", "language", "mode", "citations", "timings_ms", "span"}
    assert data["answered"] and data["citations"][0]["quote"] in data["citations"][0]["text"]
    bad = subprocess.run([sys.executable, "-m", "chat", "--json", "   "], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=240)
    assert bad.returncode == 2 and json.loads(bad.stdout)["status"] == 400
