"""Bytes -> text: UTF-8 first (strictly), then the legacy Chinese encodings.

Order of trust:
1. a BOM (UTF-8 / UTF-16 / UTF-32) says what the file is;
2. strict UTF-8 — also accepted when the only error is a character cut at the very
   end of the file (scraped files are often truncated mid-character), or when a
   handful of stray bytes sit in otherwise valid UTF-8 (they are replaced);
3. charset-normalizer restricted to the encodings we expect (GB18030 ⊇ GBK ⊇ GB2312,
   Big5, CP1252); it scores each candidate's decoded text for
   coherence, which separates GBK from Big5 reliably on the corpus files.
Anything with NUL bytes (and no UTF-16/32 BOM) is treated as binary.
"""

from __future__ import annotations

import codecs

# Legacy encodings we accept. Japanese/Korean ones are left out on purpose: on short
# Chinese files they win by accident (4 GBK-encoded characters read as EUC-KR Hangul).
CANDIDATES = ["gb18030", "big5", "cp1252"]
_BOMS = [
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
]
# At most this share of bytes may be invalid for a file to still count as UTF-8.
MAX_BAD_UTF8_SHARE = 0.001


class DecodeError(ValueError):
    pass


def decode_bytes(data: bytes, declared: str | None = None) -> tuple[str, str]:
    """Return (text, encoding name). Raises DecodeError for binary or undecodable data."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            return data.decode(name, errors="replace"), name
    if b"\x00" in data:
        raise DecodeError("binary file (contains NUL bytes)")

    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the file: still UTF-8.
        if exc.reason == "unexpected end of data" and exc.start >= len(data) - 3:
            return data[: exc.start].decode("utf-8"), "utf-8"
        bad = _count_bad_utf8(data)
        if bad <= max(1, MAX_BAD_UTF8_SHARE * len(data)) and _mostly_utf8_multibyte(data):
            return data.decode("utf-8", errors="replace"), "utf-8"

    if declared:  # e.g. <meta charset> in HTML
        try:
            return data.decode(_normalise(declared)), _normalise(declared)
        except (LookupError, UnicodeDecodeError):
            pass

    from charset_normalizer import from_bytes

    best = from_bytes(data, cp_isolation=CANDIDATES).best()
    if best is None or best.chaos > 0.3:
        raise DecodeError("cannot determine the text encoding (not UTF-8, GBK/GB18030, Big5 or CP1252)")
    return str(best), best.encoding


def _normalise(name: str) -> str:
    name = name.strip().lower()
    # GB2312/GBK labels are routinely used for GB18030 content; the superset decodes all of them.
    return "gb18030" if name in ("gb2312", "gbk", "x-gbk") else name


def _count_bad_utf8(data: bytes) -> int:
    return data.decode("utf-8", errors="replace").count("\ufffd")


def _mostly_utf8_multibyte(data: bytes) -> bool:
    """True when the high bytes mostly form valid UTF-8 sequences (not a legacy encoding)."""
    high = sum(1 for b in data if b >= 0x80)
    if high == 0:
        return True
    text = data.decode("utf-8", errors="replace")
    valid_high = sum(len(ch.encode("utf-8")) for ch in text if ord(ch) >= 0x80 and ch != "\ufffd")
    return valid_high >= 0.9 * high
