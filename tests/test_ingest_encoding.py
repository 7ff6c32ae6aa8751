"""Legacy encodings and damaged UTF-8 ingest to the same canonical text as the UTF-8 original."""

from __future__ import annotations

import pytest

from ingest import IngestError, read_file
from settings import REPO_ROOT

CORPUS = REPO_ROOT / "data" / "corpus"
ARTICLE = "seed/global-advanced-manufacturing-cluster-trends-2025.txt"
HANT = "related/02-national-clusters-45-zh-hant.txt"
HANS = "related/01-miit-cluster-trends-report-2023.txt"


def _reencode(tmp_path, rel, encoding):
    """Write the bundled file re-encoded (strictly: every character must be representable)."""
    original = (CORPUS / rel).read_bytes().decode("utf-8")
    target = tmp_path / encoding / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(original.encode(encoding))
    return read_file(target, root=tmp_path / encoding)


@pytest.mark.parametrize("rel,encoding,detected", [
    (HANT, "big5", "big5"),
    (HANT, "gbk", "gb18030"),
    (HANS, "gbk", "gb18030"),
    (ARTICLE, "gbk", "gb18030"),  # GBK can write the tone-marked pinyin too
    (ARTICLE, "gb18030", "gb18030"),
    (ARTICLE, "utf-16", "utf-16"),
    (ARTICLE, "utf-8-sig", "utf-8-sig"),
])
def test_legacy_encodings_give_the_same_canonical_text(tmp_path, rel, encoding, detected):
    reference = read_file(CORPUS / rel, root=CORPUS)
    doc = _reencode(tmp_path, rel, encoding)
    assert doc.meta["encoding"] == detected
    assert doc.text == reference.text
    assert (doc.doc_id, doc.title, doc.date, doc.source) == (
        reference.doc_id, reference.title, reference.date, reference.source)
    assert doc.content_hash != reference.content_hash


def test_utf8_cut_mid_character_is_still_utf8(tmp_path):
    data = (CORPUS / ARTICLE).read_bytes()
    body = data.rstrip(b"\n")
    cut = body + "的".encode("utf-8")[:2]  # last character cut after 2 of its 3 bytes
    with pytest.raises(UnicodeDecodeError):
        cut.decode("utf-8")
    path = tmp_path / "cut.txt"
    path.write_bytes(cut)
    doc = read_file(path)
    assert doc.meta["encoding"] == "utf-8"
    assert doc.text == read_file(CORPUS / ARTICLE).text


def test_stray_invalid_bytes_and_control_characters_are_removed(tmp_path):
    data = (CORPUS / HANS).read_bytes()
    middle = data.index("选取全球".encode())
    damaged = data[:middle] + b"\xff\x07\x1b" + data[middle:]
    path = tmp_path / "damaged.txt"
    path.write_bytes(damaged)
    doc = read_file(path)
    assert doc.meta["encoding"] == "utf-8"
    assert "\ufffd" in doc.original_text  # provenance keeps what was read
    assert doc.text == read_file(CORPUS / HANS).text


def test_mixed_encodings_are_rejected_with_the_file_name(tmp_path):
    text = (CORPUS / HANS).read_text(encoding="utf-8")
    mixed = text[:300].encode("utf-8") + text[300:700].encode("gbk") + text[700:].encode("big5", errors="replace")
    path = tmp_path / "mixed.txt"
    path.write_bytes(mixed)
    with pytest.raises(IngestError) as info:
        read_file(path)
    assert "mixed.txt" in str(info.value) and "encoding" in str(info.value)
