"""Questions about a document itself — its date, publisher/source or title — answered from
the document's metadata (ingest reads them from the file's header), citing the document.

The text of an article rarely says when it was published or by whom; those facts live in
the metadata, so the reader cannot find them in any passage. A question is a metadata
question when it asks for one of these fields *of a document* ("这篇文章是哪天发布的？",
"Who published the report?"); "报告在哪里发布" (where was the report launched: a city, in
the text) is not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ingest.script import to_simplified

_DOC_ZH = r"(?:这篇|本篇|该篇|此篇|这份|本份|该份|本|该|这)?(?:文章|文档|报道|报告|新闻|资料|文件|本文|该文|此文)"
_DOC_EN = r"(?:this|the|that)\s+(?:article|report|document|page|story|piece|text)"

_FIELDS = {
    "date": [
        rf"{_DOC_ZH}.{{0,12}}(?:哪天|哪一天|什么时候|何时|几号|哪年|什么日期|日期|时间)\S{{0,4}}(?:发布|发表|刊登|刊发|发出|出版|写)",
        rf"{_DOC_ZH}.{{0,12}}(?:发布|发表|刊登|刊发|出版)(?:于|的)?(?:哪天|哪一天|什么时候|何时|日期|时间|几号|哪年)",
        rf"{_DOC_ZH}.{{0,6}}的?(?:发布|发表|出版)(?:日期|时间)",
        rf"\bwhen\s+(?:was|were|did)\s+{_DOC_EN}\b.*\b(?:published|released|posted|written|issued|come out)",
        r"\b(?:publication|release|publishing)\s+date\b",
        rf"\bwhat\s+(?:date|day|year)\s+(?:was|is)\s+{_DOC_EN}\b",
    ],
    "publisher": [
        rf"{_DOC_ZH}.{{0,12}}(?:来自|出自|转载自|发布在|刊登在|发表在|从)(?:哪个|什么)(?:网站|网页|平台)",
        rf"{_DOC_ZH}.{{0,12}}(?:哪个|什么)(?:网站|网页|平台)(?:发|登|来|转载)",
        r"\bwhich\s+(?:website|site)\b.{0,60}\b(?:article|report|document|page|story|piece|item|post)\b",
        r"\b(?:article|report|document|page|story|piece|item|post)\b.{0,60}\b(?:on|from)\s+which\s+(?:website|site)\b",
        rf"{_DOC_ZH}.{{0,12}}(?:谁|哪个机构|哪家|哪个单位|哪个网站|什么机构|什么网站)\S{{0,4}}(?:发布|发表|刊登|出版|出品|撰写|写)",
        rf"(?:谁|哪个机构|哪家|哪个单位|哪个网站|什么机构|什么网站)(?:发布|发表|刊登|出版|撰写)了?{_DOC_ZH}",
        rf"{_DOC_ZH}.{{0,8}}的?(?:来源|出处|发布者|发布方|发布机构|出版方|作者|媒体)",
        rf"{_DOC_ZH}.{{0,8}}(?:来自|出自)(?:哪|什么|何)",
        rf"\bwho\s+(?:published|released|wrote|issued|posted|authored)\s+{_DOC_EN}",
        rf"\bwho\s+(?:is|was)\s+the\s+(?:publisher|author|source)\s+of\s+{_DOC_EN}",
        rf"\b(?:publisher|source)\s+of\s+{_DOC_EN}",
        rf"\bwhere\s+(?:was|is|does)\s+{_DOC_EN}\s+(?:published|from|come from)",
    ],
    "source": [
        rf"{_DOC_ZH}.{{0,12}}的?(?:网址|链接|原文链接|url|URL|出处网址)",
        r"\b(?:source\s+)?(?:url|link|web\s*address)\b.{0,60}\b(?:article|report|document|page|story|piece|item|post)\b",
        r"\b(?:article|report|document|page|story|piece|item|post)\b.{0,60}\b(?:url|link|web\s*address)\b",
    ],
    "title": [
        r"\b(?:full\s+)?(?:title|headline)\s+of\s+(?:the|this|that)\b.{0,60}\b(?:article|report|document|page|story|piece|item|post)\b",
        r"\bwhat\s+is\s+(?:the|this|that)\b.{0,60}\b(?:article|report|document|page|story|piece|item|post)\s+(?:called|titled)\b",
        rf"{_DOC_ZH}.{{0,12}}的?(?:标题|题目|全称)",
        rf"{_DOC_ZH}.{{0,6}}的?(?:标题|题目|名称|名字)",
        rf"{_DOC_ZH}.{{0,6}}(?:叫什么|题为|名为什么)",
        rf"\bwhat\s+is\s+the\s+(?:title|headline|name)\s+of\s+{_DOC_EN}",
        rf"\bwhat\s+is\s+{_DOC_EN}\s+(?:called|titled)",
    ],
}
_COMPILED = {f: [re.compile(p, re.IGNORECASE) for p in ps] for f, ps in _FIELDS.items()}


def metadata_field(question: str) -> str | None:
    """"date" | "publisher" | "source" | "title" when the question asks for that field of a document."""
    q = to_simplified(question)
    for name, patterns in _COMPILED.items():
        if any(p.search(q) for p in patterns):
            return name
    return None


@dataclass
class MetadataFact:
    field: str
    value: str
    doc_id: str


def publisher_of(doc) -> str:
    """The publisher recorded by ingest, else the source's host name."""
    publisher = (doc.meta or {}).get("publisher") or ""
    if publisher and not re.fullmatch(r"[a-z]{1,3}\d{6,}", publisher):  # ids like "sp20241122" are not names
        return publisher
    m = re.match(r"https?://([^/]+)", doc.source or "")
    return m.group(1) if m else (publisher or doc.source or "")


def fact_of(doc, field: str) -> MetadataFact | None:
    value = {"date": doc.date, "publisher": publisher_of(doc), "title": doc.title, "source": doc.source}[field]
    return MetadataFact(field, value, doc.doc_id) if value else None


# the words a metadata question is made of besides its topic
_META_WORDS_ZH = re.compile(
    r"这篇|本篇|该篇|此篇|这份|本份|该份|文章|文档|报道|报告|新闻|资料|文件|本文|该文|此文|网页|网站|页面|网址|"
    r"原文链接|链接|标题|题目|全称|名称|名字|来源|出处|发布者|发布方|发布机构|出版方|作者|媒体|发布|发表|刊登|刊发|"
    r"出版|转载|日期|时间|哪一天|哪天|什么时候|何时|几号|哪年|什么|哪个|哪家|哪|谁|平台|机构|单位|来自|出自|"
    r"叫|题为|名为|是|的|了|在|由|从|这|该|本")
_META_WORDS_EN = re.compile(
    r"\b(?:full|title|headline|name|called|titled|source|url|link|web|address|page|site|website|article|report|"
    r"document|story|piece|text|item|post|news|publisher|author|published|released|posted|written|issued|publish|"
    r"publication|release|date|day|year|when|what|who|which|where|whose|is|was|were|does|did|come|the|a|an|of|on|"
    r"in|by|from|about|this|that)\b", re.IGNORECASE)


def subject_terms(question: str) -> str:
    """What is left of the question once the metadata wording is removed: the topic that
    picks the document ("韩国半导体集群的报道是哪天发布的" → 韩国半导体集群, "What is the title
    of the it's OWL news item?" → it's OWL)."""
    q = re.sub(r"\b(what|who|where|when|which)['’]s\b", r"\1 is", to_simplified(question), flags=re.IGNORECASE)
    q = _META_WORDS_EN.sub(" ", _META_WORDS_ZH.sub(" ", q))
    return re.sub(r"[？?。.!！,，、:：\s]+", " ", q).strip()
