"""The bundled corpus after ingest: the article's cleaning, metadata, offsets and boundaries."""

from __future__ import annotations

import re

import pytest

from ingest import chunk_document, ingest_paths, read_file, split_sentences
from ingest.chunking import find_headings
from ingest.cleaning import TONED
from settings import REPO_ROOT, Settings

CORPUS = REPO_ROOT / "data" / "corpus"
ARTICLE = "seed/global-advanced-manufacturing-cluster-trends-2025.txt"
PINYIN_IN_PARENS = re.compile(rf"\([a-zü{TONED}]*[{TONED}][a-zü{TONED}]*\)")
ORPHAN = re.compile(rf"[?？\ufffd][a-zü{TONED}]+\)")
SENTENCE_END = "。！？!?；;….”’」』)）》\"'"


@pytest.fixture(scope="module")
def corpus():
    result = ingest_paths([CORPUS], Settings(), progress=False)
    assert result.skipped == []
    return result


@pytest.fixture(scope="module")
def article(corpus):
    return next(d for d in corpus.documents if d.doc_id == ARTICLE)


def test_every_bundled_file_becomes_a_document(corpus):
    files = sorted(p.relative_to(CORPUS).as_posix() for p in CORPUS.rglob("*.txt"))
    assert [d.doc_id for d in corpus.documents] == files
    for doc in corpus.documents:
        assert doc.text and doc.title and doc.source and len(doc.content_hash) == 64
        assert doc.language in ("zh", "en")
        assert "\ufffd" not in doc.text
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", doc.text)


def test_article_has_no_pinyin_fragments_or_menus(article):
    raw = (CORPUS / ARTICLE).read_text(encoding="utf-8")
    assert PINYIN_IN_PARENS.search(raw) and ORPHAN.search(raw)  # the defects are really there
    text = article.text
    assert not PINYIN_IN_PARENS.search(text)
    assert not ORPHAN.search(text)
    assert not re.search(r"[āáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜ]", text)
    for menu in ("Network", "当前位置", "主页 >", "高新院新闻", "智慧城市news", "相关文章推荐", "点击"):
        assert menu not in text
    assert not any(line.startswith("- ") for line in text.splitlines())
    # Real parentheses survive; the garbled spot is repaired.
    assert "(EIE)" in text and "(2024-2025年)" in text
    assert "抢占战略优势的关键抓手" in text


def test_article_metadata(article):
    assert article.title == "全球先进制造业集群发展趋势(附全文)"
    assert article.date == "2025-10-14"
    assert "achie.org" in article.source
    assert article.language == "zh"
    assert article.meta["original_script"] == "zh-Hant"
    assert article.meta["encoding"] == "utf-8"


def test_article_text_is_simplified_and_complete(article):
    text = article.text
    assert "跨国合作、净零转型和可持续发展、第三方治理、尖端技术集群培育、中小企业竞争力提升" in text
    assert text.startswith("先进制造业集群不仅是制造业高质量发展的核心载体")
    assert text.endswith("谁就能在未来全球产业格局中占据主导地位。")
    # paragraph structure is kept: the six numbered recommendations are their own lines
    assert len(re.findall(r"^\d\. ", text, re.M)) == 6


def test_related_file_headers(corpus):
    docs = {d.doc_id: d for d in corpus.documents}
    zh_hant = docs["related/02-national-clusters-45-zh-hant.txt"]
    assert zh_hant.title == "国家级先进制造业集群增至45个"
    assert zh_hant.source == "http://www.tyjgjz.com/cn/Instant/culture/202212/t20221216_7328487.html"
    assert zh_hant.date == "2022-12-16"
    assert zh_hant.meta["original_script"] == "zh-Hant"
    assert "伴随着武汉市" in zh_hant.text  # tw2s: 著 as a particle becomes 着
    assert "中国西藏网 >" not in zh_hant.text and "责编" not in zh_hant.text
    korea = docs["related/05-korea-yongin-semiconductor-cluster.txt"]
    assert korea.date == "2023-03-16"
    assert "1.58万亿元" in korea.text
    english = docs["related/07-its-owl-leading-edge-cluster-en.txt"]
    assert english.language == "en" and english.date == "2022-02-28"
    for doc in corpus.documents:
        assert not doc.text.startswith(("source:", "title:"))


def _check_chunks(doc, chunks, chunk_size, overlap):
    sentences = split_sentences(doc.text)
    ends = {e for _, e in sentences}
    long_sentences = [(s, e) for s, e in sentences if e - s > chunk_size]
    assert chunks, doc.doc_id
    for n, chunk in enumerate(chunks):
        assert chunk.chunk_id == f"{doc.doc_id}#{n}"
        assert doc.text[chunk.start:chunk.end] == chunk.text
        assert chunk.text == chunk.text.strip()
        assert len(chunk.text) <= chunk_size
        inside_long = any(s < chunk.end < e for s, e in long_sentences)
        if not inside_long:
            assert chunk.end in ends, (doc.doc_id, chunk.text[-20:])
            # independent of split_sentences: a sentence mark, a line end or the end of the text
            after = doc.text[chunk.end:chunk.end + 1]
            assert chunk.text[-1] in SENTENCE_END or after in ("", "\n"), chunk.text[-20:]
    starts = {s for s, _ in sentences}
    for prev, nxt in zip(chunks, chunks[1:]):
        assert prev.start < nxt.start and prev.end < nxt.end
        assert prev.end - nxt.start <= overlap  # repeated text stays within the overlap
        if not any(s < nxt.start < e for s, e in long_sentences):
            assert nxt.start in starts  # ... and is made of whole sentences
    # together the chunks cover every sentence
    covered = [(c.start, c.end) for c in chunks]
    headings = {pos for pos, _ in find_headings(doc.text)}
    for s, e in sentences:
        if e - s <= chunk_size and s not in headings:
            assert any(cs <= s and e <= ce for cs, ce in covered)


@pytest.mark.parametrize("chunk_size,overlap", [(350, 60), (120, 40), (60, 0)])
def test_every_chunk_has_exact_offsets_and_ends_at_a_sentence(corpus, chunk_size, overlap):
    for doc in corpus.documents:
        _check_chunks(doc, chunk_document(doc, chunk_size, overlap), chunk_size, overlap)


def test_default_chunks_fit_the_settings(corpus):
    settings = Settings()
    assert corpus.chunks == [c for d in corpus.documents
                             for c in chunk_document(d, settings.chunk_size, settings.chunk_overlap)]
    assert max(len(c.text) for c in corpus.chunks) <= settings.chunk_size
    article_chunks = [c for c in corpus.chunks if c.doc_id == ARTICLE]
    assert all(c.title == "全球先进制造业集群发展趋势(附全文)" and c.date == "2025-10-14" for c in article_chunks)
    assert any(c.heading for c in article_chunks)


def test_read_file_alone_gives_the_same_document(article):
    doc = read_file(CORPUS / ARTICLE, root=CORPUS)
    assert doc == article
    assert read_file(CORPUS / ARTICLE).doc_id == "global-advanced-manufacturing-cluster-trends-2025.txt"


def test_a_corpus_file_named_directly_keeps_its_corpus_doc_id(tmp_path):
    outside = tmp_path / "note.txt"
    outside.write_text("A short note about clusters.", encoding="utf-8")
    calls = []
    result = ingest_paths([CORPUS / ARTICLE, outside, CORPUS / "related"], Settings(),
                          progress=lambda stage, done, total: calls.append((stage, done, total)))
    ids = [d.doc_id for d in result.documents]
    assert ids[:2] == [ARTICLE, "note.txt"]
    assert all(i.startswith("related/") for i in ids[2:]) and len(ids) == 10
    assert calls[0] == ("ingest", 0, 10) and calls[-1] == ("ingest", 10, 10)
