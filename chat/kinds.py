"""Question → kind: the router's decision of which strategy answers (chat/strategies/).

    chitchat   greetings, thanks, "who are you": no document is asked about
    metadata   a field *of a document*: its date, publisher/source or title
    overview   "what is this about", "summarise", "main points", "conclusion",
               "what do the documents say about X"
    compare    "X 和 Y 分别…", "How do X and Y differ": one answer per entity
    list       "哪些", "which ones", "第三项": the whole list (or one item)
    factoid    everything else: one span read by the reader

Rules, in this order (the first that matches wins); eval/ measures them by kind on the
question bank (data/questions/bank_*.jsonl). A question that is off-topic without being
chit-chat ("澳大利亚的首都是哪里?") is a factoid here: chat/refusal.py refuses it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ingest.script import to_simplified

from .lists import is_list_question
from .metadata import metadata_field

KINDS = ("factoid", "list", "overview", "compare", "metadata", "chitchat")

_CHITCHAT_ZH = re.compile(
    r"^(?:你好|您好|嗨|哈喽|哈啰|早上好|晚上好|下午好|早安|晚安|谢谢你?|多谢|感谢|再见|拜拜|好的|好吧|嗯|哦|ok|你是谁|你叫什么|"
    r"你是什么|你能做什么|你会什么|你可以做什么|你好吗|在吗|在不在|(?:给我|跟我)?(?:讲|说)(?:个|一个)笑话|你几岁|你是机器人吗|你是人吗)"
    r"[\s，,。！!？?~～呀啊呢吧哈]*(?:你是谁|你能做什么|你是什么|请问)?[\s，,。！!？?~～呀啊呢吧]*$")
_CHITCHAT_EN = re.compile(
    r"^(?:(?:hi|hello|hey)(?: there)?|good (?:morning|afternoon|evening|night)|thanks?(?: you)?(?: very much| so much| a lot)?|"
    r"thank you|bye|goodbye|ok(?:ay)?|who are you|what are you|what can you do|how are you(?: doing)?|"
    r"tell me a joke|are you (?:a )?(?:robot|bot|human|ai)|what(?:'s| is) your name)"
    r"[\s,.!?]*(?:(?:who are you|what can you do|how are you|that's all(?: for (?:now|today))?)[\s,.!?]*)?$", re.IGNORECASE)

_DOC_ZH = r"(?:这篇|本篇|该篇|此篇|这份|本份|该份|那篇|本|该|这|此)?(?:文章|文档|文件|报道|报告|新闻|资料|材料|本文|该文|此文|全文)"
_OVERVIEW_ZH = re.compile(
    rf"{_DOC_ZH}.{{0,12}}(?:主要|大概|大致|都|究竟)?(?:讲|说|谈|写|介绍|讨论|涉及|关于)(?:了|的)?(?:些)?(?:什么|啥|哪些)"
    rf"|{_DOC_ZH}.{{0,10}}(?:的)?(?:主要内容|核心内容|主要观点|核心观点|要点|重点|主旨|大意|结论|中心思想|主题|摘要|概要)"
    r"|(?:总结|概括|归纳|概述|梳理|综述|简述|摘要)(?:一下|下)?|^(?:请)?介绍一下(?:这篇|那篇|这份)?(?:文章|报告|报道)"
    r"|(?:主要内容|主要观点|核心观点|要点|主旨|大意|结论|中心思想)(?:是什么|有哪些|是啥|为何|？|\?|$)"
)
_OVERVIEW_EN = re.compile(
    r"\bwhat(?:'s| is| are)\s+(?:this|the|that)\s+(?:[\w'’\-]+\s+){0,4}?(?:article|report|document|page|story|piece|text)s?\s+(?:\w+\s+){0,6}?about\b"
    r"|\bwhat\s+(?:is|are)\s+(?:\w+\s+){0,6}?(?:article|report|document|story|piece)s?\s+about\b"
    r"|\bsummari[sz]e|\bsummary\b|\bgist\b|\boverview\b|\btl;?dr\b|\bin a nutshell\b"
    r"|\b(?:main|key|central|core)\s+(?:points?|ideas?|messages?|findings?|takeaways?|themes?|arguments?|conclusions?)\b"
    r"|\bwhat\s+(?:is|are)\s+(?:the\s+)?(?:\w+\s+){0,4}?conclusions?\b|\bwhat\s+does\s+(?:\w+\s+){0,6}?conclude\b"
    r"|\bwhat\s+do(?:es)?\s+the\s+(?:documents?|reports?|articles?|sources?|texts?)\s+say\b",
    re.IGNORECASE,
)
_CONCLUSION = re.compile(r"结论|结语|总结了什么|最后.{0,4}(?:说|提|讲)|\bconclu", re.IGNORECASE)
# "what do the documents say about X": each document's best sentence on X
_TOPIC_ZH = re.compile(r"(?:文档|文件|资料|材料|文章|报告|报道)(?:们)?(?:里|中|里面|当中)?.{0,3}(?:关于|对于|对|就)(?P<topic>.{1,20}?)"
                       r"(?:都|分别)?(?:说了|讲了|提到了|提到|谈了|写了|有|是怎么说的|怎么说)(?:什么|哪些|些什么)?")
_TOPIC_EN = re.compile(r"\bwhat\s+do(?:es)?\s+the\s+(?:documents?|reports?|articles?|sources?|texts?)\s+say\s+(?:about|on)\s+"
                       r"(?P<topic>.+?)[?.!]*$", re.IGNORECASE)

_COMPARE_ZH = re.compile(r"分别|区别|差别|差异|异同|不同之处|有何不同|有什么不同|相比|比较|对比|各自|各有|各拿|各是|哪个更|谁更")
_COMPARE_EN = re.compile(r"\bcompare|\bcomparison\b|\bdiffer|\bdifference|\bversus\b|\bvs\.?\s|\brespectively\b|\beach\b.*\band\b|\bboth\b",
                         re.IGNORECASE)
# "X 和 Y", "X与Y", "X and Y": the two entities of a comparison
_PAIR_ZH = re.compile(r"([\u4e00-\u9fffA-Za-z0-9'’‘·\-]{2,16}?(?: [A-Za-z'’][A-Za-z'’\-]*)?)\s*(?:和|与|跟|同|及|以及|、|还是)\s*"
                      r"([\u4e00-\u9fffA-Za-z0-9'’‘·\-]{2,16}?(?: [A-Za-z'’][A-Za-z'’\-]*)?)"
                      r"\s*(?=分别|各自|各有|各拿|各是|的|在|有|之间|相比|哪|谁|对|是|如何|怎么|，|,|\?|？|$)")
_PAIR_EN = re.compile(r"\b(?:between\s+)?((?:the\s+)?[A-Z][\w'’\-]*(?:\s+[A-Z][\w'’\-]*){0,3})\s+(?:and|vs\.?|versus)\s+"
                      r"((?:the\s+)?[A-Z][\w'’\-]*(?:\s+[A-Z][\w'’\-]*){0,3})")


@dataclass
class Routed:
    kind: str
    metadata_field: str | None = None  # "date" | "publisher" | "title" for metadata questions
    topic: str | None = None  # overview: what the documents are asked about ("净零转型"), if named
    entities: tuple[str, ...] = ()  # compare: the compared entities
    conclusion: bool = False  # overview: the question asks for the conclusion, not the whole


def route(question: str) -> Routed:
    """The kind of a (resolved) question and what its strategy needs from the wording."""
    q = to_simplified(question).strip()
    if _CHITCHAT_ZH.match(q) or _CHITCHAT_EN.match(q):
        return Routed("chitchat")
    field = metadata_field(q)
    if field is not None:
        return Routed("metadata", metadata_field=field)
    m = _TOPIC_ZH.search(q) or _TOPIC_EN.search(q)
    if m:
        return Routed("overview", topic=m.group("topic").strip())
    if _OVERVIEW_ZH.search(q) or _OVERVIEW_EN.search(q):
        return Routed("overview", conclusion=bool(_CONCLUSION.search(q)))
    if _COMPARE_ZH.search(q) or _COMPARE_EN.search(q):
        pair = compare_entities(q)
        if pair:
            return Routed("compare", entities=pair)
    if is_list_question(q):
        return Routed("list")
    return Routed("factoid")


_LEADING = re.compile(r"^(?:请问|请|那么|那|我想知道|想知道|告诉我|说说|谈谈|介绍一下|比较一下|对比一下|比较|对比)")


def compare_entities(question: str) -> tuple[str, ...]:
    """("韩国", "沙特") from "韩国和沙特分别计划建设什么集群?"; () when no pair is found."""
    m = _PAIR_ZH.search(question)
    if m:
        a, b = (_LEADING.sub("", x).strip() for x in m.groups())
        if a and b and a != b:
            return (a, b)
    m = _PAIR_EN.search(question)
    if m:
        a, b = (re.sub(r"^(?:the|The)\s+", "", x).strip() for x in m.groups())
        if a and b and a.lower() != b.lower() and a.lower() not in ("how", "what", "which", "do", "does"):
            return (a, b)
    return ()
