"""How well a candidate sentence answers the question: a linear score over measured features.

The weights are fitted (conditional logit: the softmax over a question's candidate
sentences should put its mass on the sentences that contain a gold answer) on the CMRC 2018
tune split plus the dev set's answerable questions by `python -m eval.sentence_calibration`,
which writes sentence_weights.json beside this file together with the figures it measured;
chat/README.md has the method.

Features of a sentence s for question q (all computed on Simplified, lower-case text):
  dense_z          E5 cosine, standardised over the candidates (raw cosines sit in a narrow band)
  use_z            the same for the cross-lingual USE encoder (0 without it)
  coverage         IDF-weighted share of q's content terms in s (or in its title/lead-in: chat/terms.py)
  gram_coverage    IDF-weighted share of q's character bigrams (Chinese) and words (other
                   scripts) found in s — annotators and analysts reuse the source's wording
  common_run       longest run of characters q and s share, over len(q)
  date_for_when    q asks when / which year, and s holds a date
  number_for_count q asks how many / how much, and s holds a number
  rank_prior       1 / (1 + rank of the retrieved passage)
  fragment         a heading, nav line or label: short and without end punctuation
  log_length       log(1 + len(s))
  document_start   s opens its document
  previous_gram_coverage, previous_coverage
                   the same two coverages for the sentence just before s: the answer often
                   follows the sentence that restates the question ("…海军十字勋章…。自从其
                   创建以来，大约被授予了6,300次以上。")
  other_language_use_z, other_language_rank_prior
                   use_z and rank_prior again for a sentence in the other language than the
                   question (0 otherwise): across languages the term features are all zero and
                   the retrieval rank is less sure, so these two get their own weights, fitted
                   on the dev set's cross-language questions (CMRC has none)
"""

from __future__ import annotations

import json
import math
import re
from difflib import SequenceMatcher
from pathlib import Path

import numpy as np

from . import terms as T
from .language import is_chinese_text

FEATURES = ("dense_z", "use_z", "coverage", "gram_coverage", "common_run", "date_for_when", "number_for_count",
            "rank_prior", "fragment", "log_length", "document_start", "previous_gram_coverage",
            "previous_coverage", "other_language_use_z", "other_language_rank_prior")
WEIGHTS_PATH = Path(__file__).with_name("sentence_weights.json")

QUESTION_WORDS_RE = re.compile(r"什么|哪些|哪个|哪里|哪一|哪|多少|几|谁|何时|如何|怎么|怎样|为什么|是否|吗|呢|[？?]")
WHEN_RE = re.compile(r"什么时候|何时|哪一年|哪年|哪天|哪一天|几月|日期|时间|年份|\bwhen\b|what year|which year", re.I)
COUNT_RE = re.compile(r"多少|(?<!哪)几|比例|how many|how much", re.I)
DATE_RE = re.compile(r"\d{1,4}\s*年|\d{1,2}\s*月|\d{1,2}\s*日|[一二三四五六七八九十〇零]{2,4}年|世纪|年代|\b1\d{3}\b|\b20\d\d\b|"
                     r"\b(?:january|february|march|april|may|june|july|august|september|october|november|december)\b")
NON_WORD_RE = re.compile(r"[\s\W_]+")
GRAM_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+|[a-z0-9]+")
END_RE = re.compile(r"[。！？!?.;；]$")


def question_grams(simple_question: str) -> list[str]:
    """Bigrams of the question's Chinese runs and its non-stop words, question words removed."""
    grams: list[str] = []
    for part in QUESTION_WORDS_RE.split(simple_question):
        for run in GRAM_RE.findall(part):
            if T.HAN_RE.match(run):
                grams += [run[i:i + 2] for i in range(len(run) - 1)]
            elif run not in T.EN_STOP and (len(run) > 1 or run.isdigit()):
                grams.append(run)
    return list(dict.fromkeys(grams))


def _standardise(values) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    spread = x.std() if len(x) > 2 else 0.0
    return (x - x.mean()) / spread if spread > 1e-6 else np.zeros_like(x)


def feature_matrix(question: str, sentences: list, previous: list[int | None]) -> np.ndarray:
    """One row per candidate (chat.extractive.Sentence with dense, second and lexical set);
    previous[i] is the index of the candidate just before sentence i in its document, if any."""
    simple_q = T.simplify(question)
    grams = question_grams(simple_q)
    n = len(sentences)
    weights = {g: math.log((n + 1) / (sum(g in s.simple for s in sentences) + 0.5)) for g in grams}
    total = sum(weights.values()) or 1.0
    bare_q = NON_WORD_RE.sub("", QUESTION_WORDS_RE.sub("", simple_q))
    when, count = bool(WHEN_RE.search(simple_q)), bool(COUNT_RE.search(simple_q))
    question_chinese = is_chinese_text(question)

    rows = np.zeros((n, len(FEATURES)))
    column = {name: rows[:, i] for i, name in enumerate(FEATURES)}  # views into rows
    column["dense_z"][:] = _standardise([s.dense for s in sentences])
    column["use_z"][:] = _standardise([s.second for s in sentences])
    for i, s in enumerate(sentences):
        bare_s = NON_WORD_RE.sub("", s.simple)
        common = SequenceMatcher(None, bare_q, bare_s, autojunk=False).find_longest_match(0, len(bare_q), 0, len(bare_s))
        column["coverage"][i] = s.lexical
        column["gram_coverage"][i] = sum(weights[g] for g in grams if g in s.simple) / total
        column["common_run"][i] = common.size / max(1, len(bare_q))
        column["date_for_when"][i] = float(when and bool(DATE_RE.search(s.simple)))
        column["number_for_count"][i] = float(count and T.has_number(s.text))
        column["rank_prior"][i] = 1.0 / (1 + s.hit_rank)
        column["fragment"][i] = float(len(s.text) < 40 and not END_RE.search(s.text))
        column["log_length"][i] = math.log1p(len(s.text))
        column["document_start"][i] = float(s.doc_start == 0)
    for i, j in enumerate(previous):
        if j is not None:
            column["previous_gram_coverage"][i] = column["gram_coverage"][j]
            column["previous_coverage"][i] = column["coverage"][j]
    other = np.array([is_chinese_text(s.text) != question_chinese for s in sentences], dtype=float)
    column["other_language_use_z"][:] = column["use_z"] * other
    column["other_language_rank_prior"][:] = column["rank_prior"] * other
    return rows


class Fitted:
    """The feature weights and the selection parameters fitted with them."""

    def __init__(self, data: dict):
        if tuple(data["features"]) != FEATURES:
            raise ValueError(f"{WEIGHTS_PATH.name} was fitted for features {data['features']}; "
                             f"this code computes {FEATURES}: re-run `python -m eval.sentence_calibration`")
        self.weights = np.array(data["weights"], dtype=float)
        selection = data["selection"]
        self.margin = float(selection["margin"])
        self.neighbour_bonus = float(selection["neighbour_bonus"])
        self.new_passage_penalty = float(selection["new_passage_penalty"])


def load_fitted(path: Path | None = None) -> Fitted:
    return Fitted(json.loads(Path(path or WEIGHTS_PATH).read_text(encoding="utf-8")))
