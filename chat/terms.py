"""Question terms and how well a sentence covers them (the lexical half of sentence scoring).

Terms are jieba words of the question in Simplified script, lower case, without question
words and particles. Matching is by substring on the Simplified sentence, so segmentation
differences between question and passage do not matter; a Chinese term that does not
occur whole earns partial credit for the share of its character bigrams that do.
"""

from __future__ import annotations

import logging
import math
import re
from functools import lru_cache

HAN_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")

ZH_STOP = set("""的 了 是 在 有 和 与 及 或 吗 呢 吧 啊 么 什么 哪些 哪个 哪 几 几个 多少 多少个 谁 如何 怎么 怎样
为什么 为何 是否 会 能 要 将 被 把 对 从 到 以 于 其 之 这 那 这些 那些 该 此 它 它们 他们 我们 你 我 个 项 家 位
一 上 中 下 里 请问 请 告诉 一下 还 又 也 都 就 所 等 方面 情况 哪里 何时 什么时候 哪一年 多 大 提到 提出 介绍
目前 已经 已 可以 一些 主要 是什么 分别 其中""".split())
EN_STOP = set("""a an the and or of to in on for by with about from at as into than then so what which who whom
whose when where why how is are was were be been being do does did doing can could will would should shall may
might must has have had having it its they them their this that these those there here any some one ones much
many more most tell me please also i you we he she his her our your not no yes if under over per via named name
list give according documents document say says said""".split())


@lru_cache(maxsize=1)
def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


def simplify(text: str) -> str:
    from ingest.script import to_simplified

    return to_simplified(text).lower()


ORDINAL_TERM_RE = re.compile(r"第[一二三四五六七八九十\d]+[项项条点个]?|\b(?:first|second|third|fourth|fifth|sixth|last)\b")


def question_terms(question: str) -> list[str]:
    """Content terms of a question (Simplified, lower case), each once, in order."""
    text = ORDINAL_TERM_RE.sub(" ", simplify(question))
    terms: list[str] = []
    for token in _jieba().lcut(text):
        token = token.strip()
        if not token or not re.search(r"\w", token):
            continue
        if HAN_RE.search(token):
            if token in ZH_STOP or (len(token) == 1 and not token.isdigit()):
                continue
        elif token in EN_STOP or (len(token) < 2 and not token.isdigit()):
            continue
        if token not in terms:
            terms.append(token)
    return terms


def _bigrams(term: str) -> list[str]:
    return [term[i:i + 2] for i in range(len(term) - 1)]


def term_match(term: str, sentence: str) -> float:
    """1.0 if the term occurs in the (Simplified, lower-case) sentence, else partial bigram credit."""
    if term in sentence:
        return 1.0
    if HAN_RE.search(term) and len(term) >= 3:
        grams = _bigrams(term)
        return 0.7 * sum(g in sentence for g in grams) / len(grams)
    stem = english_stem(term)
    if stem != term and len(stem) >= 3 and stem in sentence:  # founded ~ found, hubs ~ hub
        return 1.0
    return 0.0


def english_stem(word: str) -> str:
    """A light suffix strip, enough for substring matching (not a linguistic stemmer)."""
    for suffix in ("ing", "ed", "es", "s", "ly"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and word.isascii():
            return word[: -len(suffix)]
    return word


def idf_weights(terms: list[str], sentences: list[str]) -> dict[str, float]:
    """Inverse sentence frequency over the retrieved sentences: terms every passage
    shares (集群, cluster) weigh little, the distinguishing ones (沙特, Nevada) much."""
    n = len(sentences)
    weights = {}
    for term in terms:
        df = sum(term_match(term, s) >= 1.0 for s in sentences)
        weights[term] = math.log((n + 1) / (df + 0.5)) + 0.1
    return weights


# 几 but not 哪几 ("哪几种" asks which ones, a list)
NUMBER_QUESTION_RE = re.compile(r"多少|(?<!哪)几|(?<!哪)幾|比例|百分之|how (?:many|much)|what (?:share|percentage|proportion)|"
                                r"which year|when|何时|哪一年|哪年|什么时候", re.I)
ZH_COUNTED = "个|项|家|年|月|名|倍|成|大|类|种|条|届|次|位|人|座|部|期|场|代|岁|号|级|集|季|轮|所|间|支|台"
NUMBER_RE = re.compile(rf"\d|第[一二三四五六七八九十百千]+|[一二三四五六七八九十百千万亿两]+(?:{ZH_COUNTED})")


def expects_number(question: str) -> bool:
    """Questions about quantities, shares and dates are answered by a number."""
    return bool(NUMBER_QUESTION_RE.search(simplify(question)))


def has_number(text: str) -> bool:
    return bool(NUMBER_RE.search(text))


# clause breaks: CJK punctuation, and ASCII punctuation next to a space or a CJK character
# (canonical Chinese text may use ASCII commas), but not inside numbers like 40,000
CLAUSE_RE = re.compile(r"[，；。！？：、]|[,;:][\"'”’)]?(?=\s|[^\x00-\x7f])|(?<=[^\x00-\x7f])[,;:]|[.!?](?=\s|$)")
NUMBER_TOKEN_RE = re.compile(rf"\d+(?:[.,]\d+)*|第[一二三四五六七八九十百千]+|[一二三四五六七八九十百千万亿两]+(?={ZH_COUNTED})")


def number_near_subject(question: str, terms: list[str], weights: dict, sentences: list[str]) -> bool:
    """Is there a number (not one the question itself gives) in the clause that best matches
    the question's terms, or in a clause next to it? "新加坡投资了多少钱?" is not answered
    by "…沙特计划建设21个医疗集群，新加坡聚焦人工智能…": the 21 belongs to another clause."""
    asked = set(NUMBER_TOKEN_RE.findall(simplify(question)))
    best_score, found = 0.0, False
    for sentence in sentences:
        clauses = [c for c in CLAUSE_RE.split(sentence) if c.strip()]
        for i, clause in enumerate(clauses):
            score = sum(weights[t] * term_match(t, clause) for t in terms)
            if score <= 0 or score < best_score:
                continue
            near = any(set(NUMBER_TOKEN_RE.findall(c)) - asked for c in clauses[max(0, i - 1):i + 2])
            found = near if score > best_score else (found or near)
            best_score = score
    return found


def coverage(terms: list[str], weights: dict[str, float], sentence: str, context: str = "",
             context_credit: float = 0.0) -> float:
    """Weighted share of question terms the sentence contains (0..1).

    With a `context` (the document title and the text before the sentence in its passage), a
    term found only there earns `context_credit` of its weight: "本鱼体长可达15公分" answers
    "加利福尼亚滑银汉鱼的体长是多少?" in a document titled 加利福尼亚滑银汉鱼."""
    total = sum(weights[t] for t in terms)
    if not total:
        return 0.0
    got = 0.0
    for t in terms:
        m = term_match(t, sentence)
        if m < 1.0 and context and context_credit:
            m = max(m, context_credit * term_match(t, context))
        got += weights[t] * m
    return got / total
