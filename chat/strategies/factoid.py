"""Factoid and list questions: the reader's span from the best passage that passes the
refusal checks (chat/refusal.py), in reading order; a list question gets the whole list
the span sits in; two documents that give different values for what is asked are both
cited, the one that matches the question's own wording first."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from index.text import titled_text

from ..compose import Composed, compose_list, compose_span, evidence_window, make_citation, render_quote, span_record
from ..followup import ordinal_of
from ..language import EN, message, render
from ..lists import is_list_question, item_at, list_block
from ..refusal import ANSWERED, NOTHING_READ, Check, check_passage, support_text, term_support

# a second document's value is reported beside the first only when its passage is about as
# well supported by the question's words (the article and a report on the same hubs)
CONFLICT_SUPPORT_MARGIN = 0.15


@dataclass
class Decision:
    chosen: object | None  # the Reading whose span answers, None when refused
    checks: list  # (Reading, Check) for every passage checked, in reading order
    reason: str
    conflict: object | None = None  # a Reading of another document giving another value
    not_read: list = field(default_factory=list)  # passages the gate kept from the reader, with why


def decide(question: str, readings: list, question_language: str, answer_threshold: float, refusal_params) -> Decision:
    """The first read passage (in the calibrated order) whose span passes every check."""
    checks = []
    chosen = None
    read = [r for r in readings if r.prediction is not None and r.prediction.end > r.prediction.start]
    owned = any(term_support(question, support_text(r.hit.chunk, r.prediction.start, r.prediction.end))
                >= refusal_params.own_support for r in read if r.hit.chunk.language == question_language)
    for r in read:
        p = r.prediction
        check = check_passage(question, r.hit.chunk, p, r.rank_score, answer_threshold,
                              refusal_params, same_language=r.hit.chunk.language == question_language, owned=owned)
        checks.append((r, check))
        if check.ok:
            chosen = r
            break
    if chosen is None:
        reason = checks[0][1].reason if checks else NOTHING_READ
        return Decision(None, checks, reason)
    return Decision(chosen, checks, ANSWERED, _conflict(question, chosen, checks, readings, question_language,
                                                        answer_threshold, refusal_params))


VALUE_TYPES = ("count", "money", "date", "percent")


def asks_for_value(decision: Decision) -> bool:
    """Whether the answered question asks for a number, a date or an amount (which two
    documents can disagree on)."""
    return decision.chosen is not None and bool(decision.checks) and decision.checks[-1][1].asked_type in VALUE_TYPES


def _conflict(question, chosen, checks, readings, question_language, answer_threshold, refusal_params):
    """Another document's passage that passes the checks with a different value of the type
    asked (a count, an amount, a date, a share)."""
    first: Check = checks[-1][1]
    if first.asked_type not in VALUE_TYPES:
        return None
    value = _value(chosen.prediction.text)
    for r in readings:
        p = r.prediction
        if r is chosen or p is None or p.end <= p.start or r.hit.chunk.doc_id == chosen.hit.chunk.doc_id:
            continue
        if r.rank_score < answer_threshold:
            continue
        other = _value(p.text)
        if not other or not value or other == value:
            continue
        check = check_passage(question, r.hit.chunk, p, r.rank_score, answer_threshold,
                              refusal_params, same_language=r.hit.chunk.language == question_language)
        # same-language passages only: their support says both are about what is asked
        if check.ok and first.support is not None and check.support is not None \
                and check.support >= first.support - CONFLICT_SUPPORT_MARGIN:
            return r
    return None


def _value(span: str) -> str:
    """The digits of a span ("31个" -> "31"): what two sources must agree on."""
    return "".join(re.findall(r"\d+(?:\.\d+)?", span))


def compose_answer(index, decision: Decision, resolution, language: str, question_language: str,
                   question: str) -> Composed:
    """The answer for a decided factoid or list question (decision.chosen is set)."""
    best = decision.chosen
    pred = best.prediction
    if decision.conflict is not None:
        return compose_conflict(question, best, decision.conflict, language, question_language)
    # "第四项建议是什么?" asks for a list item even without a history
    ordinal = resolution.ordinal if resolution.ordinal is not None else ordinal_of(resolution.question)
    if ordinal is not None or is_list_question(resolution.question):
        composed = list_answer(index, best.hit, pred, ordinal, language)
        if composed is not None:
            return composed
    return compose_span(best.hit, pred.start, pred.end, language)


def compose_conflict(question: str, first, second, language: str, question_language: str) -> Composed:
    """"文章称…[1]；另一篇报道称…[2]": both values, the better-supported passage first."""

    def support(r):
        same = r.hit.chunk.language == question_language
        return term_support(question, titled_text(r.hit.chunk)) if same else 0.0

    ordered = sorted([first, second], key=lambda r: -support(r))
    citations, parts = [], []
    for n, r in enumerate(ordered, start=1):
        text = r.hit.chunk.text
        a, b = evidence_window(text, r.prediction.start, r.prediction.end, 160)
        citations.append(make_citation(r.hit, n, a, b, language))
        _, quote = render_quote(text, a, b, language)
        title = r.hit.chunk.title if language == EN else render(r.hit.chunk.title, language)
        value = r.prediction.text if language == EN else render(r.prediction.text, language)
        parts.append(message("conflict_source", language, title=title, value=value, quote=quote.replace("\n", " "), n=n))
    text = message("conflict_intro", language) + "\n" + "\n".join(parts)
    span = span_record(ordered[0].hit, citations[0], ordered[0].prediction.start, ordered[0].prediction.end, language)
    return Composed(text, citations, span)


def list_answer(index, hit, pred, ordinal: int | None, language: str) -> Composed | None:
    """The whole list (or its ordinal-th item) the span sits in, from the document's text."""
    doc = index.get_document(hit.chunk.doc_id)
    if doc is None:
        return None
    pos = hit.chunk.start + pred.start
    items = list_block(doc.text, pos)
    if not items:
        return None
    holding = next((it for it in items if it.start <= pos <= it.end), None)
    if holding is not None and (pred.end - pred.start) < 0.5 * (holding.end - holding.start):
        return None  # a detail inside one item ("新加坡聚焦哪些领域"), not the list itself
    chunks = index.chunks_of(doc.doc_id)
    located = [locate(chunks, hit, it.start, it.end) for it in items]
    located = [x for x in located if x is not None]
    if len(located) < 2:
        return None
    if ordinal is not None:
        item = item_at(items, ordinal)
        if item is None:
            return None
        chosen = locate(chunks, hit, item.start, item.end)
        return compose_list(located, language, ordinal_item=chosen) if chosen else None
    return compose_list(located, language)


def locate(chunks: list, hit, start: int, end: int):
    """(hit, start, end) of the document range [start, end) inside one chunk: the read
    passage when it holds it, else the first chunk of the document that does."""
    from index.hybrid import Hit

    if hit is not None and hit.chunk.start <= start and end <= hit.chunk.end:
        return hit, start - hit.chunk.start, end - hit.chunk.start
    for c in chunks:
        if c.start <= start and end <= c.end:
            return Hit(c, 0.0, None, None, None, None), start - c.start, end - c.start
    return None
