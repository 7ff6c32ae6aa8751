"""HTML, PDF, DOCX and Markdown readers on small files made here."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest import chunk_document, read_file

CJK_FONT = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")

HTML = """<!DOCTYPE html><html><head><meta charset="{charset}"><title>集群趨勢 | 高新院</title>
<meta property="og:url" content="https://example.org/news/cluster.html">
<meta name="date" content="2025-10-14"></head><body>
<nav><ul><li><a href="/">主頁</a></li><li><a href="/news">新聞中心</a></li><li><a href="/p">產業規劃導航</a></li></ul></nav>
<header><div class="menu">網站導航 登錄 註冊</div></header>
<article><h1>全球先進製造業集群發展趨勢</h1>
<p>先進製造業集群不僅是製造業高質量發展的核心載體,更是國家在經濟博弈中搶佔戰略優勢的關鍵抓手。2024年以來,全球主要經濟體紛紛加快在集群領域的政策佈局與技術投入。</p>
<p>報告通過對全球150個典型集群的跟蹤研究,提煉出當前全球集群發展的五大關鍵詞:跨國合作、淨零轉型和可持續發展、第三方治理、尖端技術集群培育、中小企業競爭力提升。</p>
</article>
<footer><p>版權所有 2025 高新院 聯繫我們 隱私政策 京ICP備12345678號</p></footer></body></html>"""


@pytest.mark.parametrize("charset", ["utf-8", "big5"])
def test_html_main_text_only(tmp_path, charset):
    path = tmp_path / "page.html"
    path.write_bytes(HTML.format(charset=charset).encode(charset))
    doc = read_file(path)
    assert doc.title == "全球先进制造业集群发展趋势"
    assert doc.source == "https://example.org/news/cluster.html"
    assert doc.date == "2025-10-14"
    assert "跨国合作、净零转型和可持续发展、第三方治理、尖端技术集群培育、中小企业竞争力提升" in doc.text
    for boilerplate in ("新闻中心", "产业规划导航", "网站导航", "版权所有", "隐私政策"):
        assert boilerplate not in doc.text
    assert "<nav>" in doc.original_text  # provenance: the page as read


def test_pdf_english(tmp_path):
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.set_title("Tech Hubs")
    pdf.multi_cell(80, 8, "The U.S. CHIPS and Science Act funds 31 regional technology and innovation hubs "
                          "across the country. Twelve hubs received 504 million dollars in 2024.")
    path = tmp_path / "hubs.pdf"
    pdf.output(str(path))
    doc = read_file(path)
    assert doc.title == "Tech Hubs" and doc.language == "en" and doc.meta["pages"] == 1
    # visual line breaks are joined back into one paragraph
    assert "31 regional technology and innovation hubs across the country." in doc.text
    chunks = chunk_document(doc, chunk_size=120, overlap=0)
    assert [c.text for c in chunks] == [
        "The U.S. CHIPS and Science Act funds 31 regional technology and innovation hubs across the country.",
        "Twelve hubs received 504 million dollars in 2024.",
    ]


@pytest.mark.skipif(not CJK_FONT.exists(), reason="fonts-noto-cjk not installed")
def test_pdf_chinese(tmp_path):
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.add_font("noto", fname=str(CJK_FONT))
    pdf.set_font("noto", size=12)
    pdf.multi_cell(60, 8, "先進製造業集群不僅是製造業高質量發展的核心載體。沙特計劃建設21個醫療集群。")
    path = tmp_path / "zh.pdf"
    pdf.output(str(path))
    doc = read_file(path)
    assert doc.language == "zh" and doc.meta["original_script"] == "zh-Hant"
    assert doc.text == "先进制造业集群不仅是制造业高质量发展的核心载体。沙特计划建设21个医疗集群。"


def test_docx(tmp_path):
    import datetime

    import docx

    document = docx.Document()
    document.core_properties.title = "韓國半導體集群"
    document.core_properties.created = datetime.datetime(2023, 3, 16, 7, 25)
    document.add_heading("概況", level=1)
    document.add_paragraph("韓國將投資300萬億韓元打造半導體集群。尹錫悅表示,速度將是關鍵。")
    document.add_heading("Overview", level=1)
    document.add_paragraph("Korea plans the world's largest semiconductor cluster in Yongin.")
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text = "投資"
    table.rows[0].cells[1].text = "300萬億韓元"
    path = tmp_path / "korea.docx"
    document.save(path)
    doc = read_file(path)
    assert (doc.title, doc.date, doc.language) == ("韩国半导体集群", "2023-03-16", "zh")
    assert "韩国将投资300万亿韩元打造半导体集群。" in doc.text and "投资 | 300万亿韩元" in doc.text
    chunks = chunk_document(doc, chunk_size=70, overlap=0)

    def heading_of(sentence):
        return next(c.heading for c in chunks if sentence in c.text)

    assert heading_of("尹锡悦表示,速度将是关键。") == "概况"
    assert heading_of("Korea plans the world's largest semiconductor cluster in Yongin.") == "Overview"


def test_markdown(tmp_path):
    path = tmp_path / "notes" / "eu.md"
    path.parent.mkdir()
    path.write_text("# 欧盟净零工业法案\n\n见[原文](https://example.eu/nzia)。**到2030年**本土制造产能达到40%。\n\n"
                    "## 措施\n\n简化许可程序。\n", encoding="utf-8")
    doc = read_file(path, root=tmp_path)
    assert doc.doc_id == "notes/eu.md" and doc.title == "欧盟净零工业法案"
    assert "见原文。到2030年本土制造产能达到40%。" in doc.text
    assert chunk_document(doc, chunk_size=12, overlap=0)[-1].heading == "措施"
