"""Chinese script normalisation with OpenCC.

Configurations were picked by running them on the corpus (see ingest/README.md):
- to_simplified uses `tw2s`: like `t2s`, but it also maps the Taiwan/mainland-Traditional
  particle 著 to 着 where it is one (伴隨著 -> 伴随着; t2s leaves 伴随著), while 著名/顯著 stay.
- to_traditional uses `s2tw`: Taiwan standard characters without vocabulary changes.
  Plain `s2t` and `s2hk` write 集羣 (a form TW readers do not use); `s2twp` rewrites
  vocabulary and turns 集群 into 叢集 (the computing sense) and 数据 into 資料.
"""

from __future__ import annotations

import re
from functools import lru_cache

import opencc

HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]")
LATIN_WORD = re.compile(r"[A-Za-z\u00c0-\u024f]+")


@lru_cache(maxsize=None)
def _converter(config: str) -> opencc.OpenCC:
    return opencc.OpenCC(config)


def to_simplified(text: str) -> str:
    return _converter("tw2s").convert(text) if text else text


def to_traditional(text: str) -> str:
    return _converter("s2tw").convert(text) if text else text


def detect_script(text: str) -> str:
    """"zh-Hans", "zh-Hant" or "en" for a question or passage.

    Chinese characters decide when present: any question with at least two Han characters
    (or one, when there is little Latin text) is Chinese, whatever else it contains.
    Hans vs Hant: count the distinct characters OpenCC would change in each direction.
    A character is Traditional evidence when both t2s and tw2s simplify it, Simplified
    evidence when both s2tw and s2hk traditionalise it; requiring two configurations
    ignores regional variants of shared characters (s2hk writes 群 as 羣, s2tw writes
    台 as 臺). Ties (no telling characters, e.g. 那沙特呢?) go to Simplified, the
    canonical script.
    """
    han = HAN.findall(text)
    if not han:
        return "en"
    latin_words = len(LATIN_WORD.findall(text))
    if len(han) < 2 and latin_words > 3:
        return "en"
    chars = "".join(dict.fromkeys(han))  # each distinct character once
    traditional = _changed(chars, "t2s", "tw2s")
    simplified = _changed(chars, "s2tw", "s2hk")
    return "zh-Hant" if traditional > simplified else "zh-Hans"


def _changed(chars: str, *configs: str) -> int:
    """How many of `chars` every one of `configs` changes (character by character)."""
    changed = [True] * len(chars)
    for config in configs:
        converted = _converter(config).convert(chars)
        if len(converted) == len(chars):
            flags = [a != b for a, b in zip(chars, converted)]
        else:  # a phrase rule changed the length: judge one character at a time
            flags = [_converter(config).convert(c) != c for c in chars]
        changed = [a and b for a, b in zip(changed, flags)]
    return sum(changed)
