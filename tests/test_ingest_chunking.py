"""Sentence splitting, packing, oversized sentences, overlap and headings."""

from __future__ import annotations

from ingest import Document, chunk_document, split_sentences
from ingest.chunking import find_headings


def _sentences(text):
    return [text[s:e] for s, e in split_sentences(text)]


def _doc(text, doc_id="t.txt"):
    return Document(doc_id=doc_id, title="T", source="s", date="", language="zh", text=text, original_text=text)


def test_chinese_sentence_marks():
    text = "雄心勃勃!韩媒:韩将打造集群。真的吗？是的；马上……“速度将是关键。”完"
    assert _sentences(text) == ["雄心勃勃!", "韩媒:韩将打造集群。", "真的吗？", "是的；", "马上……",
                                "“速度将是关键。”", "完"]


def test_english_full_stops_numbers_and_abbreviations():
    text = "The U.S. plan costs 1.58 trillion won. Dr. Breit took over from Prof. Gausemeier! Why? Because."
    assert _sentences(text) == ["The U.S. plan costs 1.58 trillion won.",
                                "Dr. Breit took over from Prof. Gausemeier!", "Why?", "Because."]


def test_ascii_marks_inside_urls_and_entities_are_not_boundaries():
    text = "见 http://sm.example.com/meeting/?93m=1Uu.html 原文!真的?是的;研发(R&amp;D)投入。"
    assert _sentences(text) == ["见 http://sm.example.com/meeting/?93m=1Uu.html 原文!", "真的?", "是的;",
                                "研发(R&amp;D)投入。"]


def test_lines_list_items_and_headings_are_boundaries():
    text = "报告提出建议:\n1. 深化协作,构建能力;\n2. 助推培育\n- 一项\n◎跨国合作:集群网络正在形成。法国集群"
    assert _sentences(text) == ["报告提出建议:", "1. 深化协作,构建能力;", "2. 助推培育", "- 一项",
                                "◎跨国合作:集群网络正在形成。", "法国集群"]


def test_spans_exclude_surrounding_whitespace():
    text = "  第一句。  第二句。 \n\n  Third one. "
    for s, e in split_sentences(text):
        assert text[s:e] == text[s:e].strip() and text[s:e]


def test_chunks_pack_whole_sentences_with_overlap():
    sentences = [f"这是第{i}个句子，内容大约二十个汉字长短。" for i in range(20)]
    doc = _doc("".join(sentences))
    chunks = chunk_document(doc, chunk_size=100, overlap=30)
    assert len(chunks) > 3
    for c in chunks:
        assert len(c.text) <= 100 and c.text.endswith("。")
        assert doc.text[c.start:c.end] == c.text
    for a, b in zip(chunks, chunks[1:]):
        repeated = a.end - b.start
        assert 0 < repeated <= 30  # one whole sentence (21 chars) repeated
        assert doc.text[b.start:a.end] in sentences


def test_single_long_sentence_is_cut_at_clauses_only():
    long = "，".join(f"第{i}项措施落实到位" for i in range(40)) + "。"
    doc = _doc("短句一。" + long + "短句二。")
    chunks = chunk_document(doc, chunk_size=80, overlap=0)
    assert chunks[0].text == "短句一。"
    assert chunks[-1].text.endswith("短句二。")
    middle = chunks[1:-1]
    assert len(middle) >= 5
    for c in middle[:-1]:
        assert c.text.endswith("，") and len(c.text) <= 80
    assert "".join(c.text for c in chunks) == doc.text  # nothing lost, nothing repeated


def test_hard_cut_when_there_is_no_clause_mark():
    doc = _doc("甲" * 250)
    chunks = chunk_document(doc, chunk_size=100, overlap=20)
    assert [len(c.text) for c in chunks] == [100, 100, 50]


def test_headings():
    text = ("全球趋势\n\n先进制造业集群是核心载体。\n◎跨国合作:集群网络正在形成。\n法国集群联盟成为重要力量。\n"
            "报告提出六项关键建议:\n1. 深化跨区域开放协作;\n# Markdown Title\n正文。")
    assert [h for _, h in find_headings(text)] == ["全球趋势", "跨国合作", "报告提出六项关键建议", "Markdown Title"]
    doc = _doc(text)
    chunks = chunk_document(doc, chunk_size=20, overlap=0)

    def heading_of(sentence):
        return next(c.heading for c in chunks if c.text.endswith(sentence))

    assert heading_of("先进制造业集群是核心载体。") == "全球趋势"
    assert heading_of("法国集群联盟成为重要力量。") == "跨国合作"
    assert heading_of("1. 深化跨区域开放协作;") == "报告提出六项关键建议"
    assert heading_of("正文。") == "Markdown Title"
    assert not any(c.text.endswith("Markdown Title") for c in chunks)  # a heading opens a chunk


def test_empty_and_whitespace_documents_have_no_chunks():
    assert chunk_document(_doc("")) == []
    assert chunk_document(_doc(" \n\n ")) == []
