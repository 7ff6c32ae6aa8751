"""Rewriting an elliptical follow-up into a self-contained question, by rules, before retrieval.

Four rules, tried in order, each in Chinese and English (the history may mix both):

1. ordinal   — "第三项是什么?" / "What is the third one?": the previous question plus
               "item k"; the answerer is told k so it picks the k-th item of a numbered list.
2. entity    — "那沙特呢?" / "What about Saudi Arabia?": the previous question with its
               first named entity (place, organisation, person, acronym) replaced by the new one.
3. pronoun   — "它们覆盖哪些领域?" / "And which fields do they focus on?": the pronoun is
               replaced by the subject (first entity, else first noun phrase) of the previous question.
4. context   — "为什么?" / "How much?": a question too bare to stand alone gets the previous
               question prepended.

A question that matches none of these is left as it is. "Previous question"
is the previous *resolved* user turn, so chains of follow-ups keep their subject.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import lru_cache

from .language import HAN_RE, HANT, detect_chinese_script

ZH_NUMERALS = {"一": 1, "二": 2, "两": 2, "兩": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8,
               "九": 9, "十": 10}
ZH_DIGITS = {v: k for k, v in ZH_NUMERALS.items() if k not in "两兩"}
EN_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
               "eighth": 8, "ninth": 9, "tenth": 10, "last": -1}

ZH_ORDINAL_RE = re.compile(r"第\s*([一二两兩三四五六七八九十]|\d{1,2})\s*(项|項|条|條|点|點|个|個|大|类|類|种|種)?")
EN_ORDINAL_RE = re.compile(r"\b(first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|last|"
                           r"(\d{1,2})(?:st|nd|rd|th))\b(?:\s+(one|item|point|recommendation|suggestion|"
                           r"trend|keyword|measure|step|entry))?", re.I)
ZH_ENTITY_FOLLOWUP_RE = re.compile(r"^(?:那|那么|那麼|而|还有|還有)?\s*(?P<x>[^?？,，。]{1,20}?)\s*"
                                   r"(?:呢|怎么样|怎麼樣|又如何|如何|又怎样|又怎樣)\s*[?？。!！]*$")
EN_ENTITY_FOLLOWUP_RE = re.compile(r"^(?:and\s+)?(?:what|how)\s+about\s+(?P<x>.{1,60}?)\s*[?.!]*$"
                                   r"|^and\s+(?P<y>(?:the\s+)?[A-Z][\w'’.-]*(?:\s+[A-Z][\w'’.-]*){0,3})\s*[?.!]*$", re.I)
ZH_PRONOUN_RE = re.compile(r"它们|它們|他们|他們|她们|她們|它|其|该|該|这些|這些|那些|此")
ZH_DEMONSTRATIVES = ("该", "該", "这些", "這些", "那些", "此")
EN_PRONOUN_RE = re.compile(r"\b(they|them|their|it|its|these|those|this one|that one)\b", re.I)
ZH_QUESTION_FILLER = re.compile(r"[那呢吗嗎吧啊的了是什么麼有多少哪些几幾个個谁誰如何怎样樣为為何么么?？。，,!！\s]")
EN_STOP = set("""a an the and or of to in on for by with about what which who whom whose when where why how
is are was were be been do does did can could will would should has have had it its they them their this that
these those there any some one ones much many more most tell me please also then so""".split())
EN_QUESTION_WORDS = set("what which who whom whose when where why how is are was were do does did can could "
                        "will would should has have had tell list name give and but so".split())
ENTITY_FLAGS = ("ns", "nr", "nt", "nz", "j", "nrt", "nrfg")


@dataclass
class Resolution:
    question: str  # what retrieval and answering use
    rule: str | None = None  # "ordinal" | "entity" | "pronoun" | "context" | None (unchanged)
    ordinal: int | None = None  # k for "the k-th item", -1 for "the last"

    @property
    def changed(self) -> bool:
        return self.rule is not None


@lru_cache(maxsize=1)
def _posseg():
    import jieba
    import jieba.posseg

    jieba.setLogLevel(logging.WARNING)
    return jieba.posseg


def warm_up() -> None:
    """Load jieba's part-of-speech tagger before the first follow-up needs it."""
    _posseg().lcut("沙特")


def resolve_followup(question: str, history: list[dict]) -> Resolution:
    """Resolve `question` against the user turns in `history` (oldest first)."""
    previous = None
    for turn in history:
        if turn["role"] == "user":
            previous = _resolve_one(turn["content"], previous).question if previous else turn["content"]
    if not previous:
        return Resolution(question)
    return _resolve_one(question, previous)


def _resolve_one(question: str, previous: str) -> Resolution:
    for rule in (_ordinal, _entity, _pronoun, _context):
        resolved = rule(question, previous)
        if resolved:
            return resolved
    return Resolution(question)


def _is_chinese(text: str) -> bool:
    return len(HAN_RE.findall(text)) >= len(re.findall(r"[A-Za-z]+", text))


def _strip_question_mark(text: str) -> str:
    return text.strip().rstrip("?？。.!！ ")


# --- rule 1: ordinal -----------------------------------------------------------------
def ordinal_of(question: str) -> int | None:
    m = ZH_ORDINAL_RE.search(question)
    if m:
        token = m.group(1)
        return int(token) if token.isdigit() else ZH_NUMERALS.get(token)
    m = EN_ORDINAL_RE.search(question)
    if m:
        return int(m.group(2)) if m.group(2) else EN_ORDINALS[m.group(1).lower()]
    return None


def _ordinal(question: str, previous: str) -> Resolution | None:
    k = ordinal_of(question)
    if k is None:
        return None
    rest = ZH_ORDINAL_RE.sub("", EN_ORDINAL_RE.sub("", question))
    if _content_size(rest) > 2:  # "第三项建议提到了哪个国家?" names its own topic: not elliptical
        return None
    base = _strip_question_mark(previous)
    if _is_chinese(question):
        label = f"第{ZH_DIGITS.get(k, k)}项是什么？" if k > 0 else "最后一项是什么？"
        if detect_chinese_script(question) == HANT:
            label = label.replace("项", "項").replace("什么", "什麼").replace("后", "後")
        return Resolution(f"{base}——{label}", "ordinal", k)
    label = f"item {k}" if k > 0 else "the last item"
    return Resolution(f"{base} — what is {label}?", "ordinal", k)


# --- rule 2: entity substitution ---------------------------------------------------------
def _entity(question: str, previous: str) -> Resolution | None:
    m = ZH_ENTITY_FOLLOWUP_RE.match(question.strip()) or EN_ENTITY_FOLLOWUP_RE.match(question.strip())
    if not m:
        return None
    new = (m.groupdict().get("x") or m.groupdict().get("y") or "").strip()
    new = re.sub(r"^the\s+", "the ", new, flags=re.I)
    if not new or _content_size(new) == 0:
        return None
    old = first_entity(previous)
    if old and old in previous:
        return Resolution(previous.replace(old, new, 1), "entity")
    return Resolution(f"{new} {previous}", "entity")


def first_entity(text: str) -> str | None:
    """The first named entity: a Chinese place/organisation/person name, or an English proper noun."""
    if _is_chinese(text):
        for word in _posseg().cut(text):
            if word.flag in ENTITY_FLAGS or (word.flag == "eng" and any(c.isupper() for c in word.word)):
                return word.word
        return None
    tokens = re.findall(r"[\w'’.-]+", text)
    span: list[str] = []
    for i, tok in enumerate(tokens):
        is_name = any(c.isupper() for c in tok) and not (i == 0 and tok.lower() in EN_QUESTION_WORDS) and tok != "I"
        if is_name:
            span.append(tok)
        elif span and tok.lower() in ("of", "and") and i + 1 < len(tokens) and tokens[i + 1][:1].isupper():
            span.append(tok)
        elif span:
            break
    if span:
        # keep "it's OWL" whole: the lower-case head belongs to the name
        start = text.find(span[0])
        head = re.search(r"it['’]s\s*$", text[:start])
        name = " ".join(span)
        return (head.group(0) if head else "") + name if start >= 0 else name
    return None


# --- rule 3: pronoun -> previous subject ------------------------------------------------
def subject_of(text: str) -> str:
    """What a pronoun in the next question most likely points at: the previous question's
    first entity together with its longest noun phrase ("中国" + "国家先进制造业集群"),
    else whichever of the two exists, else its content words."""
    entity = first_entity(text)
    if _is_chinese(text):
        phrase = _longest_noun_phrase(text)
        if entity and phrase and entity not in phrase:
            return f"{entity}的{phrase}"
        return phrase or entity or _strip_question_mark(text)
    if entity:
        return entity
    words = [w for w in re.findall(r"[\w'’-]+", text) if w.lower() not in EN_STOP]
    return " ".join(words[:4]) or _strip_question_mark(text)


def _longest_noun_phrase(text: str) -> str:
    phrases, current = [], []
    for word in _posseg().cut(text):
        nounish = word.flag.startswith("n") or word.flag in ("vn", "eng", "j")
        modifier = word.flag in ("a", "b", "an") and word.word not in ("多少",)
        if nounish or modifier:
            current.append((word.word, nounish))
        else:
            phrases.append(current)
            current = []
    phrases.append(current)
    best = ""
    for phrase in phrases:
        while phrase and not phrase[-1][1]:  # a phrase ends on a noun
            phrase = phrase[:-1]
        candidate = "".join(w for w, _ in phrase)
        if len(candidate) > len(best):
            best = candidate
    return best


def _pronoun(question: str, previous: str) -> Resolution | None:
    subject = subject_of(previous)
    if _is_chinese(question):
        m = ZH_PRONOUN_RE.search(question)
        if not m:
            return None
        end, replacement = m.end(), subject
        if m.group(0) in ZH_DEMONSTRATIVES:  # "这些建议": a determiner, not a pronoun
            following = next(iter(_posseg().cut(question[end:])), None)
            if following and following.word in subject:
                end += len(following.word)
            else:
                replacement = subject + "的"
        resolved = question[:m.start()] + replacement + question[end:]
    else:
        m = EN_PRONOUN_RE.search(question)
        if not m:
            return None
        replacement = subject + ("'s" if m.group(1).lower() in ("its", "their") else "")
        resolved = question[:m.start()] + replacement + question[m.end():]
        resolved = re.sub(r"^and\s+", "", resolved, flags=re.I)
        resolved = resolved[:1].upper() + resolved[1:]
    return Resolution(resolved, "pronoun")


# --- rule 4: a bare question borrows the previous one -----------------------------------
def _context(question: str, previous: str) -> Resolution | None:
    if _content_size(question) > 1:
        return None
    return Resolution(f"{_strip_question_mark(previous)} {question}", "context")


def _content_size(text: str) -> int:
    """Rough count of content words: Han characters left after question words / 2, plus English content words."""
    han = ZH_QUESTION_FILLER.sub("", "".join(HAN_RE.findall(text)))
    english = [w for w in re.findall(r"[A-Za-z]+", text) if w.lower() not in EN_STOP]
    return len(han) // 2 + len(english)
