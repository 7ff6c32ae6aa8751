"""The extractive answerer: pick the 1–4 sentences of the retrieved passages that answer.

Steps: split every retrieved chunk into sentences (ingest's splitter) → drop duplicates
that overlapping chunks share → score each sentence against the question → take the best
one, then add sentences that score nearly as well, favouring the best one's neighbours
(an answer often sits in the sentence right after the one that matches the question) →
return them in the sources' reading order.

Score = a linear function of measured features (chat/sentencerank.py: E5 and USE
similarity, coverage of the question's terms and wording, answer-type cues, the passage's
retrieval rank, the sentence before it), with weights and selection parameters fitted on
CMRC 2018 and the dev set by `python -m eval.sentence_calibration` (chat/README.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from . import sentencerank
from . import terms as T
from .language import is_chinese_text
from .querycache import VectorCache, query_text

LIST_ITEM_RE = re.compile(r"^\s*(?:(\d{1,2})\s*[.、．)）]|[（(]([一二三四五六七八九十]{1,2})[）)]|([一二三四五六七八九十]{1,2})\s*、)")
ZH_NUM = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}

# Sentence vectors by (model, encoder, text), shared by every answerer in the process:
# a sentence is embedded once however many questions or engines retrieve it.
_SENTENCE_VECTORS = VectorCache(50_000)


@dataclass
class Sentence:
    hit_rank: int  # 0-based rank of the retrieved chunk it came from
    hit: object  # index.Hit
    start: int  # offsets within hit.chunk.text
    end: int
    text: str
    simple: str  # Simplified, lower case: what term matching sees
    context: str = ""  # Simplified: document title, section heading, passage text before the sentence
    dense: float = 0.0  # E5 cosine
    second: float = 0.0  # USE cosine (0 when no second encoder)
    lexical: float = 0.0
    features: object = None  # its row of chat.sentencerank.feature_matrix
    score: float = 0.0

    @property
    def doc_id(self) -> str:
        return self.hit.chunk.doc_id

    @property
    def doc_start(self) -> int:
        return self.hit.chunk.start + self.start

    @property
    def doc_end(self) -> int:
        return self.hit.chunk.start + self.end


@dataclass
class Extraction:
    selected: list[Sentence]  # in reading order
    candidates: list[Sentence]  # all scored sentences, best first
    terms: list[str] = field(default_factory=list)
    weights: dict = field(default_factory=dict)

    @property
    def best(self) -> Sentence | None:
        return self.candidates[0] if self.candidates else None


class ExtractiveAnswerer:
    """Chooses answer sentences from retrieved chunks; needs only the embedding model."""

    def __init__(self, embedder, second_encoder=None, max_sentences: int = 4, max_chars: int = 420,
                 weights_path=None, context_credit: float = 0.8):
        self.embedder = embedder  # index.Embedder (E5): encode_queries / encode_passages
        self.second_encoder = second_encoder  # optional cross-lingual encoder (chat.crosslingual.USEEncoder)
        self.max_sentences = max_sentences
        self.max_chars = max_chars  # keeps four long sentences from becoming a wall of text
        fitted = sentencerank.load_fitted(weights_path)
        self.weights = fitted.weights
        self.margin = fitted.margin  # how far below the best a sentence may score and still be added
        self.neighbour_bonus = fitted.neighbour_bonus
        self.new_passage_penalty = fitted.new_passage_penalty
        self.context_credit = context_credit  # a question term found only in the sentence's context
        self._model_key = str(getattr(embedder, "model_id", id(embedder)))

    # --- public -------------------------------------------------------------------------
    def extract(self, question: str, hits: list, ordinal: int | None = None) -> Extraction:
        candidates = self.split(hits)
        if not candidates:
            return Extraction([], [])
        terms = T.question_terms(question)
        weights = T.idf_weights(terms, [s.simple for s in candidates])
        self._score(question, candidates, terms, weights)
        ranked = sorted(candidates, key=lambda s: -s.score)
        selected = self._select(ranked, candidates, ordinal)
        return Extraction(selected, ranked, terms, weights)

    def split(self, hits: list) -> list[Sentence]:
        """Sentences of the retrieved chunks, each span of a document once (overlaps removed)."""
        from ingest.chunking import split_sentences

        found = []
        for rank, hit in enumerate(hits):
            text = hit.chunk.text
            simple = T.simplify(text)
            aligned = len(simple) == len(text)  # one conversion per passage, sliced per sentence
            head = T.simplify(f"{hit.chunk.title} {getattr(hit.chunk, 'heading', '') or ''}")
            for start, end in split_sentences(text):
                sentence = simple[start:end] if aligned else T.simplify(text[start:end])
                before = simple[:start] if aligned else T.simplify(text[:start])
                found.append(Sentence(rank, hit, start, end, text[start:end], sentence, f"{head} {before}"))

        def covered_by(s: Sentence, o: Sentence) -> bool:
            # an overlap repeats a sentence, or cuts one short at a chunk edge: keep the
            # longer copy, and of two equal copies the one from the better-ranked chunk
            if o is s or o.doc_id != s.doc_id or not (o.doc_start <= s.doc_start and s.doc_end <= o.doc_end):
                return False
            return (o.doc_start, o.doc_end) != (s.doc_start, s.doc_end) or o.hit_rank < s.hit_rank

        return [s for s in found if not any(covered_by(s, o) for o in found)]

    def precompute(self, chunks: list, batch: int = 256) -> int:
        """Embed the sentences of `chunks` ahead of questions (server warm-up); returns the count."""
        from ingest.chunking import split_sentences

        texts = list(dict.fromkeys(c.text[a:b] for c in chunks for a, b in split_sentences(c.text)))
        texts = texts[: _SENTENCE_VECTORS.size // 2]  # never evict what we just computed
        for i in range(0, len(texts), batch):
            self.embed_sentences(texts[i:i + batch], "e5")
            if self.second_encoder is not None:
                self.embed_sentences(texts[i:i + batch], "use")
        return len(texts)

    # --- scoring ------------------------------------------------------------------------
    def _score(self, question: str, candidates: list[Sentence], terms, weights) -> None:
        texts = [s.text for s in candidates]
        dense = self._similarities(question, texts, "e5")
        second = self._similarities(question, texts, "use") if self.second_encoder else None
        for i, s in enumerate(candidates):
            s.dense = float(dense[i])
            s.second = float(second[i]) if second is not None else 0.0
            s.lexical = T.coverage(terms, weights, s.simple, s.context, self.context_credit)
        features = sentencerank.feature_matrix(question, candidates, _previous_sentences(candidates))
        for s, row, score in zip(candidates, features, features @ self.weights):
            s.features, s.score = row, float(score)

    def _similarities(self, question: str, texts: list[str], kind: str) -> np.ndarray:
        """Cosines of the question against each text."""
        if kind == "e5":  # the vector retrieval computed (chat/querycache.py)
            q = self.embedder.encode_queries([query_text(question)])[0]
        else:
            q = self.second_encoder.encode_query(question)
        return self.embed_sentences(texts, kind) @ q

    def embed_sentences(self, texts: list[str], kind: str) -> np.ndarray:
        """Sentence vectors: one batch call for those not cached yet."""
        encode = self.embedder.encode_passages if kind == "e5" else self.second_encoder.encode
        return _SENTENCE_VECTORS.get_many([(self._model_key, kind, t) for t in texts],
                                          lambda missing: encode([k[2] for k in missing]))

    # --- selection ----------------------------------------------------------------------
    def _select(self, ranked: list[Sentence], candidates: list[Sentence], ordinal: int | None) -> list[Sentence]:
        best = ranked[0]
        item = self._list_item(ranked, candidates, ordinal) if ordinal else None
        if item is not None:
            return [item]
        selected = [best]
        chars = len(best.text)
        pool = [s for s in ranked[1:]]
        while len(selected) < self.max_sentences and pool:
            def value(s: Sentence) -> float:
                bonus = self.neighbour_bonus if any(_adjacent(s, t, candidates) for t in selected) else 0.0
                if all(t.hit.chunk.chunk_id != s.hit.chunk.chunk_id for t in selected):
                    bonus -= self.new_passage_penalty  # another passage to cite must earn it
                return s.score + bonus

            nxt = max(pool, key=value)
            if value(nxt) < best.score - self.margin or chars + len(nxt.text) > self.max_chars:
                break
            pool.remove(nxt)
            selected.append(nxt)
            chars += len(nxt.text)
        return sorted(selected, key=lambda s: (min(t.hit_rank for t in selected if t.doc_id == s.doc_id),
                                               s.doc_id, s.doc_start))

    def _list_item(self, ranked: list[Sentence], candidates: list[Sentence], ordinal: int) -> Sentence | None:
        """The ordinal-th item of the numbered list nearest the best-scoring list sentence."""
        items = [(s, _item_number(s.text)) for s in candidates]
        items = [(s, k) for s, k in items if k is not None]
        if not items:
            return None
        # the list the question is about: the one holding the best-scoring item or intro line
        anchor = next((s for s in ranked if _item_number(s.text) is not None or s.text.rstrip().endswith((":", "："))), None)
        if anchor is None:
            return None
        same_list = [(s, k) for s, k in items if s.doc_id == anchor.doc_id and abs(s.doc_start - anchor.doc_start) < 2000]
        if not same_list:
            return None
        if ordinal == -1:
            return max(same_list, key=lambda sk: (sk[1], sk[0].doc_start))[0]
        matches = [s for s, k in same_list if k == ordinal]
        return min(matches, key=lambda s: abs(s.doc_start - anchor.doc_start)) if matches else None


def _item_number(text: str) -> int | None:
    m = LIST_ITEM_RE.match(text)
    if not m:
        return None
    if m.group(1):
        return int(m.group(1))
    token = m.group(2) or m.group(3)
    if len(token) == 1:
        return ZH_NUM.get(token)
    return 10 + ZH_NUM.get(token[1], 0) if token[0] == "十" else None


def _adjacent(a: Sentence, b: Sentence, candidates: list[Sentence]) -> bool:
    """Neighbours in the document: nothing but whitespace between them."""
    if a.doc_id != b.doc_id:
        return False
    first, second = (a, b) if a.doc_start < b.doc_start else (b, a)
    gap = second.doc_start - first.doc_end
    return 0 <= gap <= 2


def _previous_sentences(candidates: list[Sentence]) -> list[int | None]:
    """For each candidate, the index of the candidate just before it in its document."""
    by_end = {(s.doc_id, s.doc_end): i for i, s in enumerate(candidates)}
    out = []
    for s in candidates:
        out.append(next((by_end[(s.doc_id, s.doc_start - gap)] for gap in (0, 1, 2)
                         if (s.doc_id, s.doc_start - gap) in by_end), None))
    return out
