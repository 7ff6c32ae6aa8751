"""Text normalisation and tokenisation for keyword search.

Documents are stored in Simplified Chinese; queries may come in Traditional, so both
sides go through the same t2s conversion, lower-casing and jieba segmentation before
BM25 sees them. Besides jieba words, runs of CJK characters also contribute character
bigrams (prefixed so they never collide with a two-character word): jieba segments
the same phrase differently in a question and in a passage often enough that the
bigrams measurably help. A chunk's BM25 text is its document title plus its own text:
a chunk deep inside an article rarely repeats what the article is about, and the title
supplies it (+1.5 points hit@1, +1.8 hit@5 on CMRC; index/README.md has the figures).
"""

from __future__ import annotations

import logging
import re
import threading

TOKENIZER_VERSION = "jieba-words+cjk-bigrams+title/2"

_WORDLIKE = re.compile(r"\w")
_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
BIGRAM_PREFIX = "\u00a7"  # "§": keeps bigram features apart from jieba words

_jieba = None
_jieba_lock = threading.Lock()


def _segmenter():
    """jieba, initialised once and quietly (it logs its dictionary loading by default)."""
    global _jieba
    if _jieba is None:
        with _jieba_lock:
            if _jieba is None:
                import jieba

                jieba.setLogLevel(logging.WARNING)
                jieba.initialize()
                _jieba = jieba
    return _jieba


def normalize(text: str) -> str:
    """Canonical form for matching: Simplified script, lower case."""
    from ingest.script import to_simplified

    return to_simplified(text).lower()


def tokenize(text: str, bigrams: bool = True) -> list[str]:
    """BM25 tokens of `text` (either script, any case): jieba words plus CJK bigrams."""
    text = normalize(text)
    tokens = [t for t in _segmenter().lcut(text) if _WORDLIKE.search(t)]
    if bigrams:
        for run in _CJK_RUN.findall(text):
            tokens.extend(BIGRAM_PREFIX + run[i : i + 2] for i in range(len(run) - 1))
    return tokens


def chunk_tokens(chunk) -> list[str]:
    """BM25 tokens of a chunk: its document title, then its text."""
    return tokenize(titled_text(chunk))


# The dense side gets the title too: a chunk from the middle of an article about 陈荣捷
# rarely names him, and without the title its vector says nothing about whom it
# describes (CMRC hit@1 +0.4 points, MRR +0.2; index/README.md). Changing this text
# changes every vector, so the manifest records it and a mismatch forces a rebuild.
DENSE_TEXT_VERSION = "title+text/1"


def titled_text(chunk) -> str:
    """The text both indexes see for a chunk: its document title, then its text."""
    return f"{chunk.title}\n{chunk.text}" if chunk.title else chunk.text


def query_language(text: str) -> str:
    """'zh' when the text holds a Han character, else 'en': the language a chunk's
    `language` field is compared with (chat's detection decides the asker's language;
    here only "can BM25 match this passage" matters)."""
    return "zh" if _CJK_RUN.search(text) else "en"
