"""Exact match and F1 of an answer span against reference answers, as the benchmarks score them.

- English: the official SQuAD v1.1 normalisation (lower case, punctuation and the articles
  a/an/the removed, whitespace collapsed), F1 over whitespace tokens.
- Chinese: CMRC 2018's character level: punctuation and whitespace removed, each Han
  character a token, runs of Latin letters and digits one token each; Traditional is
  compared in Simplified (DRCD uses the same scoring).
The best score over the references counts, as in both official scripts. A Han character in
a reference or in the prediction selects the Chinese scoring.
"""

from __future__ import annotations

import re
import string
from collections import Counter

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_CN_PUNCT = set("，。！？；：、“”‘’（）《》〈〉【】「」『』—…·～﹏．,.!?;:'\"()[]{}<>-_/\\|@#$%^&*+=~`")


def _is_chinese(text: str) -> bool:
    return bool(_HAN.search(text))


def _squad_tokens(text: str) -> list[str]:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return text.split()


def _cmrc_tokens(text: str) -> list[str]:
    from ingest.script import to_simplified

    text = to_simplified(text).lower()
    out, buf = [], ""
    for ch in text:
        if ch.isspace() or ch in _CN_PUNCT or ch in string.punctuation:
            if buf:
                out.append(buf)
                buf = ""
        elif _HAN.match(ch):
            if buf:
                out.append(buf)
                buf = ""
            out.append(ch)
        else:
            buf += ch
    if buf:
        out.append(buf)
    return out


def tokens(text: str, chinese: bool) -> list[str]:
    return _cmrc_tokens(text) if chinese else _squad_tokens(text)


def _f1(pred: list[str], ref: list[str]) -> float:
    common = Counter(pred) & Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    p, r = same / len(pred), same / len(ref)
    return 2 * p * r / (p + r)


def em_f1(prediction: str, references: list[str]) -> tuple[float, float]:
    """(EM, F1), each the best over the references; the language is the references'."""
    refs = [r for r in references if r and r.strip()]
    if not refs:
        return 0.0, 0.0
    chinese = any(_is_chinese(r) for r in refs) or _is_chinese(prediction or "")
    pred = tokens(prediction or "", chinese)
    em = f1 = 0.0
    for r in refs:
        ref = tokens(r, chinese)
        em = max(em, float(pred == ref and bool(ref)))
        f1 = max(f1, _f1(pred, ref) if pred and ref else 0.0)
    return em, f1
