"""Question kinds: the router (chat/kinds.py), the refusal checks (chat/refusal.py) and each
kind's strategy on the real index of the bundled corpus (real model, real reader)."""

from __future__ import annotations

import re

import pytest

from chat import ChatEngine
from chat.kinds import compare_entities, route
from chat.metadata import subject_terms
from chat.refusal import (LOW_ANSWERABILITY, NO_SUPPORT, OFF_TOPIC, WRONG_TYPE, asked_type, content_terms, span_matches,
                          term_support)
from eval.bank import bank_part, central_hits, load_bank, product_figures

MARKER_RE = re.compile(r"\[(\d+)\]")


# --- the router (no model) ----------------------------------------------------------------

@pytest.mark.parametrize("question, kind", [
    ("沙特计划建设多少个医疗集群？", "factoid"),
    ("报告提出了哪六项关键建议？", "list"),
    ("What are the five keywords?", "list"),
    ("这篇文章主要讲了什么?", "overview"),
    ("What is this article about?", "overview"),
    ("總結一下這篇報告", "overview"),
    ("這篇文章的結論是什麼？", "overview"),
    ("文档里关于净零转型说了什么?", "overview"),
    ("韩国和沙特分别计划建设什么集群?", "compare"),
    ("How do the EU and the US differ in their cluster policies?", "compare"),
    ("这篇文章是哪天发布的？", "metadata"),
    ("What's the source URL of the Hamburg aviation page?", "metadata"),
    ("你好，你是谁?", "chitchat"),
    ("Thanks!", "chitchat"),
    ("澳大利亚的首都是哪里?", "factoid"),  # off-topic, but not chit-chat: the refusal checks decide
])
def test_router_kinds(question, kind):
    assert route(question).kind == kind


def test_router_finds_the_topic_the_entities_and_a_conclusion():
    assert route("文档里关于净零转型说了什么?").topic == "净零转型"
    assert route("What do the documents say about hydrogen?").topic == "hydrogen"
    assert route("这篇文章的结论是什么?").conclusion and not route("这篇文章主要讲了什么?").conclusion
    assert compare_entities("韩国和沙特分别计划建设什么集群?") == ("韩国", "沙特")
    assert compare_entities("How do the EU and the US differ?") == ("EU", "US")
    assert compare_entities("沙特计划建设多少个医疗集群？") == ()


# --- the refusal checks' inputs (no reader) ----------------------------------------------------

@pytest.mark.parametrize("question, asked", [
    ("新加坡计划投入多少资金发展人工智能集群?", "money"),
    ("What is the annual revenue of Lufthansa Technik?", "money"),
    ("汉堡航空集群协会是哪一年正式成立的?", "date"),
    ("How many medical clusters does Saudi Arabia plan to build?", "count"),
    ("四个重点区域的集群占了全部国家级集群的多大比例？", "percent"),
    ("美国31个区域技术和创新中心分别位于哪些城市?", "entity"),
    ("文章举了哪几个国家的例子？", "entity"),
    ("韩国打造了全球最大的什么集群？", None),
])
def test_asked_type(question, asked):
    assert asked_type(question) == asked


def test_span_type_agreement():
    assert not span_matches("money", "21个") and span_matches("money", "5.04亿美元")
    assert span_matches("money", "120 million euros") and span_matches("percent", "2/3")
    assert span_matches("date", "January 2011") and not span_matches("date", "300 suppliers")
    assert not span_matches("entity", "12个") and span_matches("entity", "纽约")
    assert span_matches(None, "anything")


def test_support_weighs_rare_words_over_question_words():
    passage = "◎尖端技术集群培育:韩国打造全球最大半导体集群,沙特计划建设21个医疗集群,新加坡聚焦人工智能与数字技术。"
    assert term_support("沙特计划建设多少个医疗集群？", passage) > 0.9
    assert term_support("澳门市划分为几个堂区?", passage) < 0.2
    terms = dict(content_terms("澳门市划分为几个堂区?"))
    assert "什么" not in terms and "几个" not in terms and terms
    assert term_support("Who won the 2018 World Cup?", "Hamburg is a centre of civil aviation.") < 0.2


# --- the bank and its split (no model) ----------------------------------------------------------

def test_bank_split_is_by_id_and_holds_every_kind():
    fit, report = load_bank("fit"), load_bank("report")
    assert len(fit) + len(report) == len(load_bank("all")) >= 300
    assert {bank_part(q["id"]) for q in fit} == {"fit"} and {bank_part(q["id"]) for q in report} == {"report"}
    assert 0.2 < len(fit) / (len(fit) + len(report)) < 0.4
    kinds = {q["kind"] for q in report}
    assert kinds >= {"factoid", "list", "overview", "compare", "metadata", "offtopic"}
    unanswerable = sum(1 for q in load_bank("all") if not q["answerable"])
    assert unanswerable / len(load_bank("all")) >= 0.3


def test_product_figures_count_what_they_name():
    qs = [{"id": "1", "kind": "overview", "answerable": True, "central": ["五大关键词", "六项关键建议"]},
          {"id": "2", "kind": "factoid", "answerable": False, "tags": ["near-domain"]},
          {"id": "3", "kind": "offtopic", "answerable": False},
          {"id": "4", "kind": "factoid", "answerable": True, "answers": ["21"], "language": "en", "tags": ["cross-language"]}]
    assert central_hits("报告提炼出“五大关键词”……报告提出六项关键建议", qs[0]["central"]) == 2
    results = [{"id": "1", "answerable": True, "answered": True, "answer_recall": None, "central_hits": 2,
                "citations": [{"n": 1}], "system_kind": "overview"},
               {"id": "2", "answerable": False, "answered": True, "answer_recall": None, "system_kind": "factoid"},
               {"id": "3", "answerable": False, "answered": False, "answer_recall": None, "system_kind": "factoid"},
               {"id": "4", "answerable": True, "answered": True, "answer_recall": 1.0, "system_kind": "factoid"}]
    f = product_figures(qs, results)
    assert f["overview_central"]["share"] == 1.0 and f["near_domain_refused"]["share"] == 0.0
    assert f["offtopic_refused"]["share"] == 1.0 and f["cross_language_recall_en>zh"]["share"] == 1.0
    assert f["answerable_refused"]["share"] == 0.0


# --- each kind on the real engine -------------------------------------------------------------

@pytest.fixture(scope="module")
def engine(corpus_index, test_settings):
    return ChatEngine(corpus_index, test_settings)


def assert_cited(answer):
    used = {int(n) for n in MARKER_RE.findall(answer.answer)}
    assert used and used == {c.n for c in answer.citations}
    assert all(c.quote and c.quote in c.text for c in answer.citations)


@pytest.mark.slow
@pytest.mark.parametrize("question, language, reasons", [
    ("澳门市划分为几个堂区?", "zh-Hans", {NO_SUPPORT, OFF_TOPIC, LOW_ANSWERABILITY}),
    ("怎么做红烧肉?", "zh-Hans", {NO_SUPPORT, OFF_TOPIC, LOW_ANSWERABILITY}),
    ("比特幣現在的價格是多少?", "zh-Hant", {NO_SUPPORT, OFF_TOPIC, WRONG_TYPE, LOW_ANSWERABILITY}),
    ("Who won the 2018 World Cup?", "en", {NO_SUPPORT, OFF_TOPIC, LOW_ANSWERABILITY}),
    ("新加坡计划投入多少资金发展人工智能集群?", "zh-Hans", {WRONG_TYPE, NO_SUPPORT}),
])
def test_questions_the_documents_do_not_answer_are_refused_with_a_reason(engine, question, language, reasons):
    a = engine.ask(question)
    assert a.answered is False and a.language == language and a.kind == "factoid"
    assert a.evidence["reason"] in reasons
    assert not MARKER_RE.search(a.answer)
    assert a.citations and all(c.quote in c.text for c in a.citations)  # the nearest passages, for reference
    assert a.to_dict()["kind"] == "factoid"


@pytest.mark.slow
def test_chit_chat_says_what_clusterqa_answers(engine):
    a = engine.ask("你好，你是谁?")
    assert a.kind == "chitchat" and not a.answered and "ClusterQA" in a.answer and not a.citations


@pytest.mark.slow
@pytest.mark.parametrize("question, language", [("这篇文章主要讲了什么?", "zh-Hans"),
                                                ("What is this article about?", "en"),
                                                ("總結一下這篇文章", "zh-Hant")])
def test_overview_quotes_central_sentences_of_the_article(engine, question, language):
    a = engine.ask(question)
    assert a.answered and a.kind == "overview" and a.language == language
    lines = [line for line in a.answer.splitlines() if MARKER_RE.search(line)]
    assert 2 <= len(lines) <= 5
    central = ["先进制造业集群不仅是制造业高质量发展的核心载体", "五大关键词", "六项关键建议", "具有全球竞争力的集群体系",
               "先进制造业集群已成为大国竞争的关键战场", "全球主要经济体纷纷加快"]
    assert central_hits(a.answer, central) >= 2
    assert all("global-advanced-manufacturing" in c.doc_id for c in a.citations)
    assert_cited(a)


@pytest.mark.slow
def test_comparison_answers_each_entity_on_its_own_line(engine):
    a = engine.ask("韩国和沙特分别计划建设什么集群?")
    assert a.answered and a.kind == "compare"
    korea = next(line for line in a.answer.splitlines() if line.startswith("韩国："))
    saudi = next(line for line in a.answer.splitlines() if line.startswith("沙特："))
    assert "半导体" in korea and "医疗集群" in saudi
    assert_cited(a)


@pytest.mark.slow
def test_report_publisher_comes_from_the_text_and_page_date_from_metadata(engine):
    a = engine.ask("《全球先进制造业集群发展趋势(2024-2025年)》报告是由哪个机构发布的?")
    assert a.answered and "工业和信息化部工业文化发展中心" in a.answer and a.kind == "metadata"
    b = engine.ask("On what date was this article published?")
    assert b.answered and "2025-10-14" in b.answer


@pytest.mark.slow
def test_traditional_asker_sees_traditional_citation_titles(engine):
    a = engine.ask("沙特計劃建設多少個醫療集群？")
    assert a.answered and a.citations
    assert "發展趨勢" in a.citations[0].title and "发展趋势" not in a.citations[0].title


@pytest.mark.slow
def test_sources_that_disagree_are_both_cited(engine):
    # the article's 31 hubs (under the CHIPS Act) and a report's 12 funded ones: the early exit
    # reads the top passage alone, so the other document's passage must still be read
    for question in ("美国布局了多少个区域技术和创新中心?", "美国的区域技术和创新中心一共有几个？"):
        a = engine.ask(question)
        assert a.answered and "31个" in a.answer and "12个" in a.answer, a.answer
        assert len({c.doc_id for c in a.citations}) == 2
        assert a.evidence["conflict"]
        assert_cited(a)
    first = engine.ask("美国布局了多少个区域技术和创新中心?")
    assert first.answer.index("31个") < first.answer.index("12个")  # the passage that says 布局 first


def test_metadata_subject_is_the_topic_left_after_the_metadata_words():
    assert subject_terms("What is the title of the it's OWL news item?") == "it's OWL"
    assert subject_terms("What's the source URL of the Hamburg aviation page?") == "Hamburg aviation"
    assert subject_terms("韩国半导体集群的报道是哪天发布的？") == "韩国半导体集群"
    assert subject_terms("這篇文章是哪天發布的？") == ""


@pytest.mark.slow
def test_metadata_of_a_named_document_comes_from_that_document(engine):
    a = engine.ask("What is the title of the it's OWL news item?")
    assert a.answered and a.kind == "metadata" and "New horizons for it's OWL" in a.answer
    b = engine.ask("What's the source URL of the Hamburg aviation page?")
    assert b.answered and "vae.ahk.de" in b.answer and "hamburg" in b.citations[0].doc_id


def test_numbers_the_question_states_must_be_in_the_passage():
    from chat.refusal import numbers_stated

    assert not numbers_stated("國家級集群2022年的主導產業產值是多少？", "45個國家級集群2021年主導產業產值達19萬億元")
    assert numbers_stated("《发展趋势(2024-2025年)》报告是谁发布的", "全球先进制造业集群发展趋势(2024-2025年)")
    assert numbers_stated("over 1,500 clusters?", "With over 1500 clusters")
    assert numbers_stated("沙特计划建设多少个医疗集群？", "沙特计划建设21个医疗集群")  # no number asked


@pytest.mark.slow
def test_passages_that_cannot_pass_the_checks_are_not_read_and_no_answer_changes(engine, monkeypatch):
    import chat.refusal as refusal_module

    read_counts = []
    original = engine.reader.read

    class Counting:
        def __getattr__(self, name):
            return getattr(original.__self__, name)

        def read(self, q, passages):
            read_counts.append(len(passages))
            return original(q, passages)

    questions = ["澳门市划分为几个堂区?", "What is the annual revenue of Lufthansa Technik?", "沙特计划建设多少个医疗集群？",
                 "美国布局了多少个区域技术和创新中心?", "How many members does it's OWL have?", "漢堡航空集群有多少從業人員？"]
    monkeypatch.setattr(engine, "reader", Counting())
    gated = []
    for q in questions:
        read_counts.clear()
        gated.append((engine.ask(q), sum(read_counts)))
    assert gated[0][1] == 0 and gated[0][0].evidence["not_read"]  # off-topic: nothing is read
    assert gated[0][0].evidence["reason"] in {NO_SUPPORT, OFF_TOPIC}
    monkeypatch.setattr(refusal_module, "passage_gate", lambda *a, **k: None)  # every passage read
    for q, (a, n_gated) in zip(questions, gated):
        read_counts.clear()
        b = engine.ask(q)
        # the same answers; a refusal may give another reason (the gate's, not the reader's)
        assert a.answered == b.answered
        if a.answered:
            assert (a.answer, [c.chunk_id for c in a.citations]) == (b.answer, [c.chunk_id for c in b.citations])
        assert n_gated <= sum(read_counts)
