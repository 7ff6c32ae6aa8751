"""ChatEngine: question (+ history) → Answer. Read top to bottom, this is the answer path.

    validate → detect language → resolve a follow-up from the history → route the question
    to its kind (chat/kinds.py) → chit-chat: say what ClusterQA answers → retrieve (hybrid,
    language-aware fusion) → the kind's strategy (chat/strategies/):
      metadata  the document's date / publisher / title (who published *the report* is
                asked of the text first)
      overview  2-5 central sentences of the document, or each document's best sentence on X
      compare   one factoid answer per compared entity
      factoid / list
                the reader reads the top passages that could pass the refusal checks
                (a gate on their words and topic) (span, span score, answerability) → order
                them by the calibrated score → the first whose span passes the refusal
                checks (chat/refusal.py: answerability, support for the question's terms,
                topicality, answer type) answers, else refuse and say why → compose: the
                span and the sentences around it, the whole list, or both values when two
                documents disagree; or an LLM's answer when one is configured
    → render in the asker's script → Answer (with `kind` and the evidence of the decision)
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from index.fitted import load_fitted
from index.text import query_language

from . import refusal
from .compose import Composed, make_citation, nearest_citations
from .followup import Resolution, resolve_followup
from .kinds import route
from .language import message, render
from .llm import CANNOT_FIND, LLMAnswerer, LLMError, validate_citations
from .reader import SpanPrediction, get_reader
from .records import Answer
from .strategies import compare, factoid, metadata, overview
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
        # the calibration beside the reader's weights, refused if it was fitted for other weights
        fitted = load_fitted(reader_dir=Path(settings.reader_dir))
        if reader is None:
            from index.embedding import base_model_path

            reader = get_reader(base_model_path(settings), settings.reader_dir, settings.reader_window == "sentences",
                                settings.reader_lanes)
        self.reader = reader
        self.params = fitted.reader  # the calibrated answerability score and its thresholds
        self.refusal = refusal.load_params()  # the refusal checks' thresholds (chat/refusal.json)
        if llm is None and settings.llm_enabled:
            llm = LLMAnswerer(settings.llm_base_url, settings.llm_model, settings.llm_api_key, settings.llm_timeout)
        self.llm = llm
        self._primed: dict[str, object] = {}  # question -> query vector (batch-embedded by eval)

    def warm_up(self) -> None:
        """Load what answering loads lazily (jieba, OpenCC, the POS tagger, the reader's kernels)."""
        from . import followup

        from index.text import tokenize

        tokenize("集群 cluster 半導體")
        followup.warm_up()
        refusal.warm_up()
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
        routed = route(resolution.question)
        answer = Answer(question=question, answer="", answered=False, language=language, mode="extractive",
                        kind=routed.kind, resolved_question=resolution.question if resolution.changed else None)
        evidence: dict = {"kind": routed.kind}
        readings: list[Reading] = []
        hits: list = []
        t0 = t1 = t2 = time.perf_counter()

        if routed.kind == "chitchat":  # no document is asked about: say what ClusterQA answers
            answer.answer = message("chitchat", language)
            evidence["reason"] = "chit-chat"
        else:
            yield {"type": "status", "text": "retrieving"}
            hits, n_read = self._retrieve(resolution.question, top_k)
            t1 = time.perf_counter()
            composed = None
            if routed.kind == "metadata" and not metadata.text_first(routed.metadata_field, resolution.question):
                composed = metadata.answer(self.index, routed.metadata_field, resolution.question, language)
            elif routed.kind == "overview":
                composed = overview.answer(self.index, resolution.question, routed.topic, language, routed.conclusion)
            elif routed.kind == "compare":
                composed, evidence["entities"] = compare.answer(
                    resolution.question, routed.entities, self._decide_alone, language)
            if composed is not None:
                self._set(answer, composed)
                evidence["reason"] = refusal.ANSWERED
            elif not hits:  # an empty index: nothing to read
                answer.answer = message("not_found", language)
                evidence["reason"] = refusal.NOTHING_READ
            else:
                yield {"type": "status", "text": "reading"}
                decision, readings = self._decide(resolution.question, hits, n_read)
                hits = [r.hit for r in readings]
                if decision.chosen is None and routed.kind == "metadata":  # the report's publisher, not in the text
                    composed = metadata.answer(self.index, routed.metadata_field, resolution.question, language)
                    if composed is not None:
                        self._set(answer, composed)
                        decision.reason = refusal.ANSWERED
                evidence["reason"] = decision.reason
                evidence["checks"] = [{"chunk_id": r.hit.chunk.chunk_id, **c.to_dict()} for r, c in decision.checks[:5]]
                if decision.conflict is not None:
                    evidence["conflict"] = decision.conflict.hit.chunk.chunk_id
                if decision.not_read:
                    evidence["not_read"] = decision.not_read[:5]
                # an LLM decides for itself whether the passages answer (it must cite them, or
                # its text is not given as an answer: _llm_answer)
                if self.llm is not None and not answer.answered:
                    yield {"type": "status", "text": "generating"}
                    answer.mode = "llm"
                    try:
                        yield from self._llm_answer(answer, resolution.question, hits, language)
                    except LLMError as exc:
                        answer.mode = "extractive"
                        answer.note = message("llm_fallback", language, reason=str(exc))
                        self._extractive_answer(answer, decision, resolution, readings, language)
                elif not answer.answered:
                    self._extractive_answer(answer, decision, resolution, readings, language)
            t2 = time.perf_counter()
        if answer.mode != "llm":
            for line in answer.answer.splitlines(keepends=True):
                yield {"type": "token", "text": line}

        t3 = time.perf_counter()
        answer.timings_ms = {"retrieve": (t1 - t0) * 1000, "read": (t2 - t1) * 1000,
                             "answer": (t3 - t1) * 1000, "total": (t3 - started) * 1000}
        answer.ranked = [r.hit.chunk for r in readings] or [h.chunk for h in hits]
        answer.evidence = {**evidence, "readings": [r.to_dict() for r in readings[:5]],
                           "threshold": self.params.answer_threshold}
        yield {"type": "answer", "answer": answer.to_dict(), "_answer": answer}

    def _decide(self, question: str, hits: list, n_read: int) -> tuple["factoid.Decision", list[Reading]]:
        """Read and decide (chat/strategies/factoid.py). A passage that could not pass the
        refusal checks whatever its span (refusal.passage_gate: too few of the question's
        words, another topic) is not read. When the top passage was confident enough to be
        read alone but fails the checks, the others are read too."""
        language = query_language(question)
        gates = [(h, refusal.passage_gate(question, h.chunk, h.chunk.language == language, self.refusal))
                 for h in hits[:n_read]]
        eligible = [h for h, why in gates if why is None]
        readings = self._read(question, eligible + [h for h in hits if h not in eligible], len(eligible))
        decide = lambda rs: factoid.decide(question, rs, language,  # noqa: E731
                                           self.params.answer_threshold, self.refusal)
        decision = decide(readings)
        unread = [r.hit for r in readings if r.prediction is None and r.hit in eligible]
        # read alone and refused: the others may pass. Read alone and answered with a number:
        # another document's passage may give another value (the article's 31 hubs, a
        # report's 12), which the answer must show — read the same-language ones of other documents
        if decision.chosen is None:
            more = unread
        elif decision.conflict is None and factoid.asks_for_value(decision):
            chosen = decision.chosen.hit.chunk
            more = [h for h in unread if h.chunk.doc_id != chosen.doc_id and h.chunk.language == chosen.language]
        else:
            more = []
        if more:
            readings = self._read_more(question, readings, more)
            decision = decide(readings)
        if not eligible and gates:  # nothing read: the top passage's gate says why
            decision.reason = gates[0][1]
        decision.not_read = [{"chunk_id": h.chunk.chunk_id, "reason": why} for h, why in gates if why is not None]
        return decision, readings

    def _decide_alone(self, question: str) -> "factoid.Decision":
        """Retrieve, read and decide one factoid question (a comparison's part)."""
        hits, n = self._retrieve(question, self.settings.top_k)
        return self._decide(question, hits, n)[0]

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
        n = min(len(hits), n)
        read = lambda batch: self._read_batch(question, batch)  # noqa: E731
        confident = self.params.confident_threshold
        if early_exit and confident is not None and n > 1:
            first = read(hits[:1])
            done = first if first[0].rank_score >= confident else first + read(hits[1:n])
        else:
            done = read(hits[:n])
        done.sort(key=lambda r: -r.rank_score)
        return done + [Reading(h, None, float("-inf")) for h in hits[len(done):]]

    def _read_batch(self, question: str, hits: list) -> list[Reading]:
        """The reader's predictions for these passages, each with its calibrated score."""
        from ingest.script import to_simplified

        # passages are canonical Simplified and the reader was trained on Simplified text
        question = to_simplified(question)
        language = query_language(question)
        predictions = self.reader.read(question, [h.chunk.text for h in hits])
        return [Reading(h, p, self.params.score(passage_features(h, p, language))) for h, p in zip(hits, predictions)]

    def _read_more(self, question: str, readings: list[Reading], hits: list) -> list[Reading]:
        """`readings` with `hits` (passages it holds unread) read too, re-ordered."""
        fresh = {id(r.hit): r for r in self._read_batch(question, hits)}
        done = [r for r in readings if r.prediction is not None] + list(fresh.values())
        done.sort(key=lambda r: -r.rank_score)
        return done + [r for r in readings if r.prediction is None and id(r.hit) not in fresh]

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

    def _extractive_answer(self, answer: Answer, decision, resolution: Resolution, readings: list[Reading],
                           language: str) -> None:
        if decision.chosen is None:
            answer.answer = message("not_found", language) + "\n" + message(refusal.WHY[decision.reason], language)
            answer.citations = nearest_citations([r.hit for r in readings], language)
            answer.answered = False
            return
        self._set(answer, factoid.compose_answer(self.index, decision, resolution, language,
                                                 query_language(resolution.question), resolution.question))

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
