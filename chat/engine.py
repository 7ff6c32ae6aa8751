"""ChatEngine: question (+ history) → Answer. Read top to bottom, this is the answer path.

    validate → detect language → resolve a follow-up from the history → retrieve →
    choose evidence sentences → decide whether the documents answer → compose the answer
    (extractive, or an LLM when configured) → render in the asker's script → Answer
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

from . import crosslingual
from .compose import compose_extractive, make_citation, nearest_citations
from .crosslingual import CrossLingualReranker, USEEncoder
from .extractive import ExtractiveAnswerer
from .followup import Resolution, ordinal_of, resolve_followup
from .language import EN, detect_language, message
from .querycache import share_query_vectors
from .llm import CANNOT_FIND, LLMAnswerer, LLMError, validate_citations
from .records import Answer
from .refusal import AnswerabilityRule, gather_evidence
from .validation import validate_history, validate_question, validate_top_k


class ChatEngine:
    """Answers questions over a CorpusIndex; extractive by default, LLM when settings name one."""

    def __init__(self, index, settings, llm: LLMAnswerer | None = None, rule: AnswerabilityRule | None = None):
        self.index = index
        self.settings = settings
        second = USEEncoder() if crosslingual.available() else None
        # retrieval and sentence scoring share one E5 encoding of the question
        self.extractive = ExtractiveAnswerer(share_query_vectors(index), second)
        # the re-ranker reads sentence vectors from the answerer's cache (filled by warm_up)
        self.reranker = (CrossLingualReranker(second, lambda texts: self.extractive.embed_sentences(texts, "use"))
                         if second else None)
        self.rule = rule or AnswerabilityRule()
        if llm is None and settings.llm_enabled:
            llm = LLMAnswerer(settings.llm_base_url, settings.llm_model, settings.llm_api_key, settings.llm_timeout)
        self.llm = llm

    def warm_up(self, max_chunks: int = 20_000) -> int:
        """Load the models and embed the corpus's sentences now, so that answering only embeds
        the question (composition then takes tens of ms instead of hundreds). Returns the
        number of sentences embedded; corpora above `max_chunks` chunks are left to the cache."""
        from .followup import _posseg
        from .terms import question_terms

        question_terms("集群 cluster 半導體")  # jieba's dictionary and OpenCC's tables
        _posseg().lcut("沙特")  # the follow-up rules' POS tagger (loads its own tables)
        if self.extractive.second_encoder is not None:
            self.extractive.second_encoder.encode_query("cluster")
        chunks = [c for d in self.index.documents() for c in self.index.chunks_of(d.doc_id)]
        if len(chunks) > max_chunks:
            chunks = []
        return self.extractive.precompute(chunks)

    def prime_questions(self, questions: list[str]) -> None:
        """Encode many questions in batches before asking them one by one (benchmarks): the
        per-question E5 and USE calls then come from the query caches."""
        self.extractive.embedder.prime(questions)
        if self.extractive.second_encoder is not None:
            self.extractive.second_encoder.prime_queries(questions)

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

        yield {"type": "status", "text": "retrieving"}
        t0 = time.perf_counter()
        hits = self._retrieve(resolution.question, language, top_k)
        t1 = time.perf_counter()

        # "第四项建议是什么?" asks for a list item even without a history
        ordinal = resolution.ordinal if resolution.ordinal is not None else ordinal_of(resolution.question)
        extraction = self.extractive.extract(resolution.question, hits, ordinal)
        evidence = gather_evidence(extraction, hits, language, resolution.question, ordinal)
        answerable = self.rule.decide(evidence)
        answer = Answer(question=question, answer="", answered=False, language=language, mode="extractive",
                        resolved_question=resolution.question if resolution.changed else None)

        if self.llm is not None and hits:
            yield {"type": "status", "text": "generating"}
            answer.mode = "llm"
            try:
                yield from self._llm_answer(answer, resolution.question, hits, language)
            except LLMError as exc:
                answer.mode = "extractive"
                answer.note = message("llm_fallback", language, reason=str(exc))
                self._extractive_answer(answer, extraction, hits, language, answerable)
        else:
            self._extractive_answer(answer, extraction, hits, language, answerable)
            for line in answer.answer.splitlines(keepends=True):
                yield {"type": "token", "text": line}

        t2 = time.perf_counter()
        answer.timings_ms = {"retrieve": (t1 - t0) * 1000, "answer": (t2 - t1) * 1000,
                             "total": (t2 - started) * 1000}
        if evidence is not None:
            answer.evidence = evidence.to_dict()
        yield {"type": "answer", "answer": answer.to_dict(), "_answer": answer}

    def _retrieve(self, question: str, language: str, top_k: int) -> list:
        """Hybrid retrieval; for English questions a wider pool re-ranked across languages."""
        if language == EN and self.reranker is not None:
            pool = self.index.retrieve(question, top_k=self.reranker.pool_size(top_k))
            return self.reranker.rerank(question, pool, top_k)
        return self.index.retrieve(question, top_k=top_k)

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

    def _extractive_answer(self, answer: Answer, extraction, hits, language: str, answerable: bool) -> None:
        if answerable and extraction.selected:
            answer.answer, answer.citations = compose_extractive(extraction.selected, language)
            answer.answered = True
        else:
            answer.answer = message("not_found", language)
            answer.citations = nearest_citations(hits, language)
            answer.answered = False

    def _llm_answer(self, answer: Answer, question: str, hits, language: str) -> Iterator[dict]:
        from .language import render

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

    from .terms import simplify

    citing = " ".join(line for line in re.split(r"(?<=[。！？.!?\n])", answer_text) if f"[{n}]" in line)
    grams = _bigrams(simplify(citing))
    spans = split_sentences(hit.chunk.text) or [(0, len(hit.chunk.text))]
    start, end = max(spans, key=lambda sp: len(grams & _bigrams(simplify(hit.chunk.text[sp[0]:sp[1]]))))
    return make_citation(hit, n, start, end, language)


def _bigrams(text: str) -> set[str]:
    text = re.sub(r"\s+", "", text)
    return {text[i:i + 2] for i in range(len(text) - 1)}

