"""OpenCC script normalisation and script detection."""

from __future__ import annotations

import pytest

from ingest.script import detect_script, to_simplified, to_traditional


def test_to_traditional_keeps_jiqun_and_uses_taiwan_forms():
    assert to_traditional("集群") == "集群"
    assert to_traditional("全球先进制造业集群发展趋势") == "全球先進製造業集群發展趨勢"
    assert to_traditional("这个集群在哪里") == "這個集群在哪裡"  # 裡, as TW writes it (s2t gives 裏)
    assert to_traditional("数据") == "數據"  # characters only, no vocabulary swap (s2twp gives 資料)


def test_to_simplified():
    assert to_simplified("全球先進製造業集羣發展趨勢") == "全球先进制造业集群发展趋势"
    assert to_simplified("伴隨著武漢市光電子信息集群") == "伴随着武汉市光电子信息集群"
    assert to_simplified("著名的顯著成果") == "著名的显著成果"
    assert to_simplified("") == ""


@pytest.mark.parametrize("text,expected", [
    ("那沙特呢?", "zh-Hans"),
    ("這個集群在哪裡?", "zh-Hant"),
    ("这个集群在哪里?", "zh-Hans"),
    ("韓國呢?", "zh-Hant"),
    ("台灣的集群", "zh-Hant"),
    ("台湾的集群", "zh-Hans"),
    ("集群", "zh-Hans"),
    ("What does 集群 mean in this report?", "zh-Hans"),
    ("How many clusters does 韓國 plan?", "zh-Hant"),
    ("How many national clusters are there?", "en"),
    ("What about the U.S.? 1.58", "en"),
    ("", "en"),
])
def test_detect_script(text, expected):
    assert detect_script(text) == expected
