"""ChatEngine: question (+ history) → Answer. Read top to bottom, this is the answer path.

    validate → detect language → resolve a follow-up from the history → retrieve (hybrid,
    language-aware fusion) → a metadata question? answer from the document's metadata →
    the reader reads the top passages (span, span score, answerability) → order passages by
    the reader → answerable iff the best passage's answerability ≥ the fitted threshold →
    compose: the span first, the sentences around it (the whole list for list questions),
    or an LLM's answer when one is configured → render in the asker's script → Answer
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

from index.fitted import load_fitted
from index.text import query_language

from .compose import (Composed, compose_list, compose_metadata, compose_span, make_citation,
                      nearest_citations)
from .followup import Resolution, ordinal_of, resolve_followup
from .language import message, render
from .lists import is_list_question, item_at, list_block
from .llm import CANNOT_FIND, LLMAnswerer, LLMError, validate_citations
from .metadata import fact_of, metadata_field, subject_terms
from .reader import SpanPrediction, get_reader
from .records import Answer
from .validation import validate_history, validate_question, validate_top_k


@dataclass
class Reading:
    """One retrieved passage as the reader saw it."""

    hit: object  # index.Hit
    prediction: SpanPrediction | None  # None for passages beyond the ones read
    rank_score: float  # what passages are ordered by

    def to_dict(self) -> dict:
        p = self.prediction
        return {"chunk_id": self.hit.chunk.chunk_id, "retrieval_score": round(float(self.hit.score), 4),
                "rank_score": round(self.rank_score, 4),
                "span": p.text if p else None, "span_score": round(p.span_score, 3) if p else None,
                "answerable": round(p.answerable, 3) if p else None}


def passage_features(hit, prediction: SpanPrediction, question_language: str) -> dict:
    """What the calibrated score weighs (index/fitted.py ReaderParams; fitted on these by
    eval/calibrate_reader.py): the reader's two outputs, the fused retrieval score (relative
    to the pool), the dense cosine (absolute) and whether the languages differ."""
    return {"answerable": prediction.answerable, "span": prediction.span_score, "retrieval": float(hit.score),
            "cosine": float(hit.dense_score or 0.0), "cross": float(hit.chunk.language != question_language)}


class ChatEngine:
    """Answers questions over a CorpusIndex with the trained reader; an LLM when settings name one."""

    def __init__(self, index, settings, llm: LLMAnswerer | None = None, reader=None):
        self.index = index
        self.settings = settings
        if reader is None:
            from index.embedding import base_model_path

            reader = get_reader(base_model_path(settings))
        self.reader = reader
        self.params = load_fitted().reader  # answerability threshold, re-ranking weight
        if llm is None and settings.llm_enabled:
            llm = LLMAnswerer(settings.llm_base_url, settings.llm_model, settings.llm_api_key, settings.llm_timeout)
        self.llm = llm
        self._primed: dict[str, object] = {}  # question -> query vector (batch-embedded by eval)

    def warm_up(self) -> None:
        """Load what answering loads lazily (jieba, OpenCC, the POS tagger, the reader's kernels)."""
        from .followup import _posseg

        from index.text import tokenize

        tokenize("集群 cluster 半導體")
        _posseg().lcut("沙特")
        self.reader.read("集群是什么？", ["先进制造业集群是产业分工深化和集聚发展的高级形式。"])

    def prime_questions(self, questions: list[str]) -> None:
        """Embed many questions in one batch before asking them one by one (benchmarks)."""
        from chat.validation import query_text

        texts = [query_text(q) for q in questions]
        for q, v in zip(texts, self.index.embed_queries(texts)):
            self._primed[q] = v

    def read_passages(self, question: str, top_k: int | None = None) -> list[Reading]:
        """Retrieve and read every passage ask() may read, without composing (calibration)."""
        return self._read(question, *self._retrieve(question, top_k or self.settings.top_k), early_exit=False)

    @property
    def mode(self) -> str:
        return "llm" if self.llm else "extractive"

    def ask(self, question: str, history: list[dict] | None = None, top_k: int | None = None) -> Answer:
        """The whole answer at once; raises QuestionError for bad input."""
        answer = None
        for event in self._events(*self._prepare(question, history, top_k)):
            if event["type"] == "answer":
                answer = event["_answer"]
        return answer

    def stream(self, question: str, history: list[dict] | None = None, top_k: int | None = None) -> Iterator[dict]:
        """Events: status…, token… (answer text pieces), then one {"type": "answer"} last.

        Input is validated here, before the first event, so a QuestionError is raised by
        this call itself rather than in the middle of iteration."""
        prepared = self._prepare(question, history, top_k)

        def events():
            for event in self._events(*prepared):
                event.pop("_answer", None)
                yield event

        return events()

    # --- the answer path ----------------------------------------------------------------
    def _prepare(self, question, history, top_k):
        from .language import detect_language

        started = time.perf_counter()
        question, query = validate_question(question, self.settings.max_question_chars)
        language = detect_language(query)
        history = validate_history(history, language)
        top_k = validate_top_k(top_k, self.settings.top_k, language)
        return started, question, query, language, history, top_k

    def _events(self, started, question, query, language, history, top_k) -> Iterator[dict]:
        resolution = self._resolve(query, history)
        if resolution.changed:
            yield {"type": "status", "text": f"resolved: {resolution.question}"}
        answer = Answer(question=question, answer="", answered=False, language=language, mode="extractive",
                        resolved_question=resolution.question if resolution.changed else None)

        yield {"type": "status", "text": "retrieving"}
        t0 = time.perf_counter()
        hits, n_read = self._retrieve(resolution.question, top_k)
        t1 = time.perf_counter()

        field = metadata_field(resolution.question)
        metadata_answered = field is not None and self._metadata_answer(answer, field, resolution.question, language)
        if metadata_answered:
            readings = []
        else:
            yield {"type": "status", "text": "reading"}
            readings = self._read(resolution.question, hits, n_read)
            hits = [r.hit for r in readings]
        t2 = time.perf_counter()

        if readings and self.llm is not None:
            yield {"type": "status", "text": "generating"}
            answer.mode = "llm"
            try:
                yield from self._llm_answer(answer, resolution.question, hits, language)
            except LLMError as exc:
                answer.mode = "extractive"
                answer.note = message("llm_fallback", language, reason=str(exc))
                self._extractive_answer(answer, resolution, readings, language)
        else:
            if readings:
                self._extractive_answer(answer, resolution, readings, language)
            elif not metadata_answered:  # an empty index: nothing to read
                answer.answer = message("not_found", language)
            for line in answer.answer.splitlines(keepends=True):
                yield {"type": "token", "text": line}

        t3 = time.perf_counter()
        answer.timings_ms = {"retrieve": (t1 - t0) * 1000, "read": (t2 - t1) * 1000,
                             "answer": (t3 - t1) * 1000, "total": (t3 - started) * 1000}
        answer.ranked = [r.hit.chunk for r in readings] or [h.chunk for h in hits]
        answer.evidence = {"readings": [r.to_dict() for r in readings[:5]],
                           "threshold": self.params.answer_threshold}
        yield {"type": "answer", "answer": answer.to_dict(), "_answer": answer}

    def _retrieve(self, question: str, top_k: int) -> tuple[list, int]:
        """Hybrid retrieval (language-aware fusion in index): the hits and how many of them
        the reader reads — the top `reader_passages`, and when none of those is in the other
        language than the question, the best `cross_language_passages` of that language
        after them. The dense model ranks passages in the question's language first: an
        English question over this corpus finds the Chinese passage that answers it 13th to
        19th of 28, below every English report; the reader, trained across languages, tells
        them apart once it reads them."""
        from chat.validation import query_text

        vector = self._primed.get(query_text(question))
        n = self.settings.reader_passages
        k = max(top_k, n)
        extra = self.settings.cross_language_passages
        pool = list(self.index.retrieve(question, top_k=max(k, self.index.fusion.depth) if extra else k,
                                        query_vector=vector))
        hits = pool[:k]
        language = query_language(question)
        if extra and all(h.chunk.language == language for h in hits[:n]):
            cross = [h for h in pool[n:] if h.chunk.language != language][:extra]
            hits = hits[:n] + cross + [h for h in hits[n:] if h not in cross]
            return hits, n + len(cross)
        return hits, n

    def _read(self, question: str, hits: list, n: int, early_exit: bool = True) -> list[Reading]:
        """The reader reads the first n passages; they are re-ordered by the calibrated
        answerability score (index/fitted.py ReaderParams: the reader's answerability and
        span score with the retrieval score); passages not read keep their order after them.

        The top passage is read alone first: when its score reaches the fitted confident
        threshold the others would not have changed the answer (measured on the held-out
        split), so they are not read and the answer costs a third of the reading."""
        from ingest.script import to_simplified

        n = min(len(hits), n)
        # passages are canonical Simplified and the reader was trained on Simplified text
        question = to_simplified(question)
        language = query_language(question)

        def read(batch: list) -> list[Reading]:
            predictions = self.reader.read(question, [h.chunk.text for h in batch])
            return [Reading(h, p, self.params.score(passage_features(h, p, language)))
                    for h, p in zip(batch, predictions)]

        confident = self.params.confident_threshold
        if early_exit and confident is not None and n > 1:
            first = read(hits[:1])
            done = first if first[0].rank_score >= confident else first + read(hits[1:n])
        else:
            done = read(hits[:n])
        done.sort(key=lambda r: -r.rank_score)
        return done + [Reading(h, None, float("-inf")) for h in hits[len(done):]]

    def _resolve(self, query: str, history: list[dict]) -> Resolution:
        """Rule-based resolution always runs (it also finds ordinals); an LLM, when
        configured, condenses the follow-up instead, and the rules stay the fallback."""
        rules = resolve_followup(query, history)
        if self.llm is None or not any(turn["role"] == "user" for turn in history):
            return rules
        try:
            condensed = self.llm.condense(query, history)
        except LLMError:
            return rules
        if condensed.strip() == query.strip():
            return rules
        return Resolution(condensed, "llm", rules.ordinal)

    def _metadata_answer(self, answer: Answer, field: str, question: str, language: str) -> bool:
        """Date / publisher / title of the document the question is about: the one its
        remaining words retrieve, else the corpus's main article (the most passages)."""
        subject = subject_terms(question)
        doc = None
        if len(re.sub(r"\W", "", subject)) >= 2:
            found = self.index.retrieve(subject, top_k=1)
            doc = self.index.get_document(found[0].chunk.doc_id) if found else None
        if doc is None:
            docs = self.index.documents()
            if not docs:
                return False
            doc = max(docs, key=lambda d: (d.path.startswith("seed") or "/seed/" in d.path,
                                           len(self.index.chunks_of(d.doc_id))))
        fact = fact_of(doc, field)
        chunks = self.index.chunks_of(doc.doc_id)
        if fact is None or not chunks:
            return False
        from index.hybrid import Hit

        value = fact.value if language == "en" else render(fact.value, language)
        composed = compose_metadata(Hit(chunks[0], 1.0, None, None, None, None), field, value, language)
        self._set(answer, composed)
        return True

    def _extractive_answer(self, answer: Answer, resolution: Resolution, readings: list[Reading],
                           language: str) -> None:
        best = readings[0]
        if best.prediction is None or best.rank_score < self.params.answer_threshold \
                or best.prediction.end <= best.prediction.start:
            answer.answer = message("not_found", language)
            answer.citations = nearest_citations([r.hit for r in readings], language)
            answer.answered = False
            return
        pred = best.prediction
        # "第四项建议是什么?" asks for a list item even without a history
        ordinal = resolution.ordinal if resolution.ordinal is not None else ordinal_of(resolution.question)
        if ordinal is not None or is_list_question(resolution.question):
            composed = self._list_answer(best.hit, pred, ordinal, language)
            if composed is not None:
                self._set(answer, composed)
                return
        self._set(answer, compose_span(best.hit, pred.start, pred.end, language))

    def _list_answer(self, hit, pred: SpanPrediction, ordinal: int | None, language: str) -> Composed | None:
        """The whole list (or its ordinal-th item) the span sits in, from the document's text."""
        doc = self.index.get_document(hit.chunk.doc_id)
        if doc is None:
            return None
        pos = hit.chunk.start + pred.start
        items = list_block(doc.text, pos)
        if not items:
            return None
        holding = next((it for it in items if it.start <= pos <= it.end), None)
        if holding is not None and (pred.end - pred.start) < 0.5 * (holding.end - holding.start):
            return None  # a detail inside one item ("新加坡聚焦哪些领域"), not the list itself
        located = [_locate(self.index.chunks_of(doc.doc_id), hit, it.start, it.end) for it in items]
        located = [x for x in located if x is not None]
        if len(located) < 2:
            return None
        if ordinal is not None:
            item = item_at(items, ordinal)
            if item is None:
                return None
            chosen = _locate(self.index.chunks_of(doc.doc_id), hit, item.start, item.end)
            return compose_list(located, language, ordinal_item=chosen) if chosen else None
        return compose_list(located, language)

    @staticmethod
    def _set(answer: Answer, composed: Composed) -> None:
        answer.answer, answer.citations, answer.span = composed.text, composed.citations, composed.span
        answer.answered = True

    def _llm_answer(self, answer: Answer, question: str, hits, language: str) -> Iterator[dict]:

        passages = [render(h.chunk.text, language) for h in hits]
        pieces, sent = [], []  # sent: how many passages fitted the model's context
        for piece in self.llm.stream_answer(question, passages, language, sent=sent):
            pieces.append(piece)
            yield {"type": "token", "text": piece}
        raw = "".join(pieces).strip()
        check = validate_citations(raw, sent[0] if sent else len(hits))
        notes = []
        if check.dropped:
            notes.append(message("llm_dropped_markers", language, k=check.dropped))
        if not check.used:
            # No valid citation: the text cannot be traced to the documents, so it is not
            # presented as an answer (this is also what stops an injected instruction).
            answer.answered = False
            refused = CANNOT_FIND[language].rstrip("。.") in raw
            answer.answer = message("not_found", language) if refused else message("llm_unsupported", language)
            answer.citations = nearest_citations(hits, language)
        else:
            answer.answered = True
            answer.answer = check.text
            answer.citations = [
                _llm_citation(hits[n - 1], i, check.text, language) for i, n in enumerate(check.used, start=1)
            ]
        answer.note = " ".join(notes) or None


def _locate(chunks: list, hit, start: int, end: int):
    """(hit, start, end) of the document range [start, end) inside one chunk: the read
    passage when it holds it, else the first chunk of the document that does."""
    from index.hybrid import Hit

    if hit.chunk.start <= start and end <= hit.chunk.end:
        return hit, start - hit.chunk.start, end - hit.chunk.start
    for c in chunks:
        if c.start <= start and end <= c.end:
            return Hit(c, 0.0, None, None, None, None), start - c.start, end - c.start
    return None


def _llm_citation(hit, n: int, answer_text: str, language: str):
    """Quote the passage sentence that shares the most with the answer sentences citing [n]."""
    from ingest.chunking import split_sentences
    from ingest.script import to_simplified

    citing = " ".join(line for line in re.split(r"(?<=[。！？.!?\n])", answer_text) if f"[{n}]" in line)
    grams = _bigrams(to_simplified(citing).lower())
    spans = split_sentences(hit.chunk.text) or [(0, len(hit.chunk.text))]
    start, end = max(spans, key=lambda sp: len(grams & _bigrams(hit.chunk.text[sp[0]:sp[1]].lower())))
    return make_citation(hit, n, start, end, language)


def _bigrams(text: str) -> set[str]:
    text = re.sub(r"\s+", "", text)
    return {text[i:i + 2] for i in range(len(text) - 1)}
