"""Overview questions: "what is this about", "summarise", "main points", "conclusion" get
2-5 cited sentences of the document asked about, chosen for centrality and coverage; "what
do the documents say about X" gets the best sentence on X from each of several documents.

Centrality is a sentence's cosine with the document's mean sentence vector (the multilingual
sentence encoder of chat/refusal.py); the document's own structure adds to it: its opening,
sentences that announce key findings, keywords, recommendations or a conclusion, and its
closing paragraph. Sentences are then picked by maximal marginal relevance, so the summary
covers several points rather than repeating one, and shown in the document's order.
"""

from __future__ import annotations

import re

import numpy as np

from ingest.chunking import split_sentences
from ingest.script import to_simplified

from ..compose import Composed, make_citation, render_quote
from ..language import EN, is_chinese_text, message, render
from .factoid import locate
from .metadata import document_asked_about

MAX_SENTENCES = 5
MAX_SENTENCE_CHARS = 220  # a longer sentence is cut (with an ellipsis) in the answer line
TOPIC_DOCUMENTS = 4
STRUCTURE_BONUS = 0.15  # a sentence that announces findings, keywords, recommendations, a conclusion
OPENING_BONUS = 0.1  # the first two body sentences
CLOSING_BONUS = 0.08  # the last body paragraph
CONCLUSION_BONUS = 0.3  # the closing paragraph, when the conclusion is asked for
REDUNDANCY = 0.6  # MMR: weight of the similarity to sentences already picked

_STRUCTURE = re.compile(r"关键词|建议|结论|总之|总体|综上|总结|未来|趋势|核心|主要|提炼|指出|认为|旨在|目标|"
                        r"\b(?:key|conclusion|overall|in summary|aims?|goals?|recommend|findings?|strategy|mission)\b", re.I)
_JUNK = re.compile(r"当前位置|相关文章|点击|来源[:：]|^\s*[-–]\s|©|^source:|^title:|^\s*https?://|责任编辑|扫一扫|分享到", re.I)
_OVERVIEW_WORDS = re.compile(
    r"这篇|本篇|该篇|此篇|这份|本份|该份|那篇|文章|文档|文件|报道|报告|新闻|资料|材料|本文|该文|此文|全文|主要|大概|大致|究竟|讲|说|谈|写|"
    r"介绍|讨论|涉及|关于|了|的|些|什么|啥|哪些|内容|核心|观点|要点|重点|主旨|大意|结论|中心思想|主题|摘要|概要|总结|概括|归纳|概述|梳理|"
    r"综述|简述|一下|请|帮我|给我|是|有|吗|呢|\b(?:what|is|are|the|this|that|article|report|document|page|story|piece|text|about|"
    r"summari[sz]e|summary|gist|overview|tl;?dr|in|a|nutshell|main|key|central|core|points?|ideas?|messages?|findings?|"
    r"takeaways?|themes?|arguments?|conclusions?|does|do|conclude|please|give|me|of|on|for|its?)\b",
    re.I,
)


def answer(index, question: str, topic: str | None, language: str, conclusion: bool = False) -> Composed | None:
    if topic:
        return about_topic(index, topic, language)
    remainder = _OVERVIEW_WORDS.sub(" ", to_simplified(question))
    remainder = re.sub(r"[？?。.!！,，、:：\s'\"“”《》]+", " ", remainder).strip()
    doc = document_asked_about(index, remainder)
    if doc is None:
        return None
    return summarise(index, doc, language, conclusion)


def body_sentences(doc) -> list[tuple[int, int]]:
    """The document's sentences that carry content: navigation lines, bylines, headers and
    fragments left out."""
    out = []
    title = to_simplified(doc.title or "").strip()
    for a, b in split_sentences(doc.text):
        s = doc.text[a:b]
        han = len(re.findall(r"[\u4e00-\u9fff]", s))
        words = len(re.findall(r"[A-Za-z]+", s))
        if _JUNK.search(s) or s.strip() == title or (han < 12 and words < 8):
            continue
        if _is_heading(doc.text, a, b):
            continue
        out.append((a, b))
    return out


def _is_heading(text: str, a: int, b: int) -> bool:
    """A whole line without closing punctuation: a heading, not a sentence of the text."""
    line_start = text.rfind("\n", 0, a) + 1
    line_end = text.find("\n", b)
    whole_line = text[line_start:a].strip() == "" and text[b:line_end if line_end >= 0 else len(text)].strip() == ""
    return whole_line and not re.search(r"[.!?。！？;；:：\"”’)）]$", text[a:b].strip())


def summarise(index, doc, language: str, conclusion: bool = False) -> Composed | None:
    """2-5 central sentences in the document's order; for a conclusion, its closing ones first."""
    from ..refusal import sentence_vectors

    spans = body_sentences(doc)
    if len(spans) < 2:
        return None
    texts = [doc.text[a:b] for a, b in spans]
    vectors = sentence_vectors(texts)
    centroid = vectors.mean(axis=0)
    centroid /= np.linalg.norm(centroid) or 1.0
    score = vectors @ centroid
    last_paragraph = doc.text.rstrip().rfind("\n")
    for i, (a, b) in enumerate(spans):
        if _STRUCTURE.search(texts[i]):
            score[i] += STRUCTURE_BONUS
        if i < 2:
            score[i] += OPENING_BONUS
        if a > last_paragraph or i == len(spans) - 1:
            score[i] += CONCLUSION_BONUS if conclusion else CLOSING_BONUS
        if conclusion:
            score[i] += CONCLUSION_BONUS * i / len(spans)  # the later, the more concluding
    k = min(MAX_SENTENCES, max(3, len(spans) // 3), len(spans))
    picked: list[int] = []
    while len(picked) < k:
        def mmr(i):
            redundancy = max((float(vectors[i] @ vectors[j]) for j in picked), default=0.0)
            return score[i] - REDUNDANCY * redundancy
        candidates = [i for i in range(len(spans)) if i not in picked]
        if not candidates:
            break
        picked.append(max(candidates, key=mmr))
    picked.sort()
    title = doc.title if language == EN else render(doc.title, language)
    chunks = index.chunks_of(doc.doc_id)
    located = [locate(chunks, None, *spans[i]) for i in picked]
    return _compose(message("overview_intro", language, title=title), [x for x in located if x], language)


def about_topic(index, topic: str, language: str) -> Composed | None:
    """The best sentence on `topic` from each of up to TOPIC_DOCUMENTS documents."""
    from ..refusal import term_support, topical_similarity

    hits = index.retrieve(topic, top_k=12)
    best_of_doc: dict[str, tuple] = {}
    for hit in hits:
        doc_id = hit.chunk.doc_id
        if doc_id in best_of_doc or len(best_of_doc) >= TOPIC_DOCUMENTS:
            continue
        text = hit.chunk.text
        spans = [(a, b) for a, b in split_sentences(text) if not _JUNK.search(text[a:b])]
        if not spans:
            continue
        same = is_chinese_text(text) == is_chinese_text(topic)
        scored = [((term_support(topic, text[a:b]) if same else 0.0) + topical_similarity(topic, text[a:b]), a, b)
                  for a, b in spans]
        s, a, b = max(scored)
        if s < 0.35:
            continue
        best_of_doc[doc_id] = (hit, a, b)
    if not best_of_doc:
        return None
    shown_topic = topic if language == EN else render(topic, language)
    return _compose(message("topic_intro", language, topic=shown_topic), list(best_of_doc.values()), language,
                    with_title=True)


def _compose(intro: str, located: list, language: str, with_title: bool = False) -> Composed | None:
    """One line per sentence, each with its [n] (one citation per passage)."""
    if len(located) < 1:
        return None
    numbers: dict[str, int] = {}
    ranges: dict[str, list] = {}
    lines = [intro]
    for hit, a, b in located:
        cid = hit.chunk.chunk_id
        numbers.setdefault(cid, len(numbers) + 1)
        r = ranges.setdefault(cid, [hit, a, b])
        r[1], r[2] = min(r[1], a), max(r[2], b)
        _, shown = render_quote(hit.chunk.text, a, b, language)
        shown = " ".join(shown.split())
        if len(shown) > MAX_SENTENCE_CHARS:
            shown = shown[:MAX_SENTENCE_CHARS] + "…"
        if language == EN and is_chinese_text(shown):
            shown = f"“{shown}”"
        if with_title:
            title = hit.chunk.title if language == EN else render(hit.chunk.title, language)
            shown = f"《{title}》：{shown}" if language != EN else f"“{title}”: {shown}"
        n = numbers[cid]
        lines.append(f"- {shown} [{n}]" if language == EN else f"- {shown}[{n}]")
    citations = [make_citation(h, numbers[cid], a, b, language) for cid, (h, a, b) in ranges.items()]
    return Composed("\n".join(lines), citations, None)
