"""Page-cleaning rules on small inputs."""

from __future__ import annotations

import pytest

from ingest.cleaning import clean_page, date_from_url, parse_date, strip_pinyin


def test_pinyin_annotations_removed_real_parentheses_kept():
    text, annotations, orphans = strip_pinyin("當(dāng)前生態(tài)系統(tǒng)(EIE)、(附全文)與(2024-2025年)及(ai)")
    assert text == "當前生態系統(EIE)、(附全文)與(2024-2025年)及(ai)"
    assert (annotations, orphans) == (3, 0)


def test_garbled_character_restored_from_the_pages_own_annotations():
    text, _, orphans = strip_pinyin("戰(zhàn)略?xún)?yōu)勢(shì)。稅收優(yōu)惠。")
    assert text == "戰略優勢。稅收優惠。" and orphans == 2


@pytest.mark.parametrize("page", [
    "戰略?yōu)勢。",  # the reading appears nowhere else on the page
    "戰略?jì)勢。經(jīng)濟(jì)與計(jì)劃。",  # jì belongs to two characters: ambiguous
])
def test_unrecoverable_garbled_character_is_dropped(page):
    text, _, _ = strip_pinyin(page)
    assert "?" not in text and ")" not in text and text.startswith("戰略勢。")


def test_page_header_menu_and_trailer():
    page = ("Network\n當前位置:主頁 > 新聞中心 >\n- 高新院新聞\n- 政策解讀\n- 智慧城市news\n"
            "全球集群趨勢(附全文)\n來源:高新院 achie.org 日期:2025-10-14 點擊:次\n"
            "先進制造業集群不僅是制造業高質量發展的核心載體,更是國家在經濟博弈中的關鍵抓手。\n"
            "(責編:常邦麗)\n相關文章推薦:\n- 另一篇文章")
    cleaned = clean_page(page)
    assert cleaned.text == "先進制造業集群不僅是制造業高質量發展的核心載體,更是國家在經濟博弈中的關鍵抓手。"
    assert (cleaned.title, cleaned.source, cleaned.date) == ("全球集群趨勢(附全文)", "高新院 achie.org", "2025-10-14")


def test_header_lines_win_and_are_removed():
    page = "source: https://example.org/a\ntitle: 标题\n\n标题\n发布时间:2023-03-16 07:25\n正文第一句话足够长,所以这里是一段正文,不会被当作页头处理。\n"
    cleaned = clean_page(page)
    assert (cleaned.title, cleaned.source, cleaned.date) == ("标题", "https://example.org/a", "2023-03-16")
    assert cleaned.text.startswith("正文第一句话")


def test_english_document_keeps_its_short_lines():
    cleaned = clean_page("Supporting Policymakers\n\nClusters are key players for resilient, green and digital economies.")
    assert cleaned.text.startswith("Supporting Policymakers\n\n")
    assert cleaned.title == "Supporting Policymakers"


@pytest.mark.parametrize("text,iso", [
    ("日期:2025-10-14 點擊:次", "2025-10-14"),
    ("《人民日报》2024年06月03日 16版", "2024-06-03"),
    ("28 February 2022 - New horizons", "2022-02-28"),
    ("Published March 5, 2021", "2021-03-05"),
    ("2024-13-45", ""),
    ("5.04亿美元", ""),
])
def test_parse_date(text, iso):
    assert parse_date(text) == iso


def test_date_from_url():
    assert date_from_url("https://blog.bobobk.com/financial/2023/12-08/10125085.html") == "2023-12-08"
    assert date_from_url("http://x.com/cn/202212/t20221216_7328487.html") == "2022-12-16"
    assert date_from_url("https://jiweipreview.laoyaoba.com/n/908996") == ""
