"""Comparisons ("韩国和沙特分别计划建设什么集群?", "How do the EU and the US differ in …"):
the question is asked once per compared entity, each answered as a factoid (reader + refusal
checks) and cited on its own line; an entity the documents say nothing about is named as
not found."""

from __future__ import annotations

import re

from ..compose import Composed, evidence_window, make_citation, render_quote
from ..language import EN, is_chinese_text, message, render

EVIDENCE_CHARS = 140
_DROP_ZH = re.compile(r"分别|各自|都|之间|有何不同|有什么不同|有什么区别|的区别|的差异|的不同|相比|比较|对比")
_DROP_EN = re.compile(r"\b(?:respectively|each|both|compare|differ(?:ent)?|difference)\b", re.I)


def sub_questions(question: str, entities: tuple[str, ...]) -> list[tuple[str, str]]:
    """(entity, the question about that entity alone) for each compared entity."""
    out = []
    first, last = entities[0], entities[-1]
    a = question.find(first)
    b = question.find(last, a + len(first)) if a >= 0 else -1
    for entity in entities:
        if a >= 0 and b >= 0:
            q = question[:a] + entity + question[b + len(last):]
        else:
            q = question.replace(first, entity).replace(last, entity)
        q = _DROP_ZH.sub("", q) if is_chinese_text(question) else _DROP_EN.sub("", q)
        out.append((entity, " ".join(q.split())))
    return out


def answer(question: str, entities: tuple[str, ...], ask_factoid, language: str) -> tuple[Composed | None, list]:
    """`ask_factoid(sub_question) -> Decision` (chat/strategies/factoid.py). Returns the
    composed answer (None when no entity is answered) and each entity's evidence."""
    lines, citations, evidence = [message("compare_intro", language)], [], []
    numbers: dict[str, int] = {}
    answered = 0
    for entity, sub in sub_questions(question, entities):
        decision = ask_factoid(sub)
        evidence.append({"entity": entity, "question": sub, "reason": decision.reason})
        shown_entity = entity if language == EN else render(entity, language)
        if decision.chosen is None:
            lines.append(message("compare_missing", language, entity=shown_entity))
            continue
        answered += 1
        hit, pred = decision.chosen.hit, decision.chosen.prediction
        a, b = evidence_window(hit.chunk.text, pred.start, pred.end, EVIDENCE_CHARS)
        cid = hit.chunk.chunk_id
        if cid not in numbers:
            numbers[cid] = len(numbers) + 1
            citations.append(make_citation(hit, numbers[cid], a, b, language))
        _, shown = render_quote(hit.chunk.text, a, b, language)
        shown = " ".join(shown.split())
        if language == EN and is_chinese_text(shown):
            shown = f"“{shown}”"
        lines.append(message("compare_line", language, entity=shown_entity, text=shown, n=numbers[cid]))
    if not answered:
        return None, evidence
    return Composed("\n".join(lines), citations, None), evidence
