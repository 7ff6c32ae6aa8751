"""Metric definitions (see eval/README.md). Pure functions, no model.

Per question we compute a record of metric values; a value is None when the
metric does not apply to that question (e.g. hit@k for an unanswerable question).
`summarize` averages each metric over the questions where it applies.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

from eval.normalize import normalize

HIT_KS = (1, 3, 5)
MRR_K = 10
METRIC_KEYS = ("hit@1", "hit@3", "hit@5", "mrr@10", "answer_recall", "em", "f1", "refusal_accuracy",
               "citation_precision")


def answer_groups(answers) -> list[list[str]]:
    """Question-set `answers` as groups of alternatives.

    ["a", "b"] -> [["a", "b"]] (one group, any alternative counts);
    [["a", "A"], ["b"]] -> two groups that must all be present.
    """
    if not answers:
        return []
    if all(isinstance(a, str) for a in answers):
        return [list(answers)]
    return [[a] if isinstance(a, str) else list(a) for a in answers]


def _norm_all(texts: Iterable[str]) -> list[str]:
    return [n for n in (normalize(t) for t in texts) if n]


def evidence_matcher(gold: Sequence[str] | None = None, answers=None) -> Callable[[str], bool] | None:
    """A predicate "this passage is evidence" or None if the question gives nothing to match.

    Gold evidence substrings take precedence; without them, a passage counts if it
    contains any alternative of any answer group.
    """
    needles = _norm_all(gold or [])
    if not needles:
        needles = _norm_all(a for group in answer_groups(answers) for a in group)
    if not needles:
        return None

    def matches(text: str) -> bool:
        t = normalize(text)
        return any(n in t for n in needles)

    return matches


def first_rank(flags: Iterable[bool]) -> int | None:
    """1-based position of the first True, None if there is none."""
    for i, ok in enumerate(flags, 1):
        if ok:
            return i
    return None


def rank_metrics(rank: int | None) -> dict:
    """hit@1/3/5 and reciprocal rank cut at 10 from the first relevant rank."""
    out = {f"hit@{k}": float(rank is not None and rank <= k) for k in HIT_KS}
    out["mrr@10"] = 1.0 / rank if rank is not None and rank <= MRR_K else 0.0
    return out


def answer_recall(answer_text: str, answers) -> float | None:
    """1.0 if every answer group has an alternative inside the answer, else 0.0; None without answers."""
    groups = [g for g in (_norm_all(g) for g in answer_groups(answers)) if g]
    if not groups:
        return None
    text = normalize(answer_text or "")
    return float(all(any(alt in text for alt in group) for group in groups))


def citation_precision(cited_texts: Sequence[str], matcher: Callable[[str], bool] | None) -> float | None:
    """Share of cited passages that are evidence; None without citations or without a matcher."""
    if matcher is None or not cited_texts:
        return None
    return sum(1 for t in cited_texts if matcher(t)) / len(cited_texts)


def percentile(values: Sequence[float], q: float) -> float | None:
    """q-th percentile with linear interpolation between closest ranks (numpy's default)."""
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return None
    pos = (len(vals) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return vals[lo] + (vals[hi] - vals[lo]) * (pos - lo)


def score_question(
    *,
    answerable: bool,
    answered: bool,
    answer_text: str,
    passages: Sequence[str],
    cited: Sequence[str],
    matcher: Callable[[str], bool] | None,
    answers=None,
    relevant_flags: Sequence[bool] | None = None,
    latency_ms: float | None = None,
    span_text: str | None = None,
) -> dict:
    """All metrics of one question.

    `passages`: retrieved passage texts in rank order (hit ranks come from these);
    `relevant_flags` overrides the matcher for ranking (e.g. SQuAD: right paragraph
    AND contains the answer). Retrieval and citation metrics apply to answerable
    questions with something to match; answer recall and citation precision only
    to questions the system answered; refusal accuracy to every question. EM/F1
    (eval/em_f1.py) score `span_text`, the short answer, against the alternatives of a
    single answer group (0 when refused; None for multi-part answers).
    """
    rec: dict = {"rank": None}
    if relevant_flags is None and matcher is not None:
        relevant_flags = [matcher(p) for p in passages]
    if answerable and relevant_flags is not None:
        rec["rank"] = first_rank(relevant_flags)
        rec.update(rank_metrics(rec["rank"]))
    else:
        rec.update({f"hit@{k}": None for k in HIT_KS}, **{"mrr@10": None})
    rec["answer_recall"] = None
    if answerable:
        recall = answer_recall(answer_text, answers)
        if recall is not None:
            rec["answer_recall"] = recall if answered else 0.0
    rec["em"] = rec["f1"] = None
    groups = answer_groups(answers)
    if answerable and len(groups) == 1:
        from eval.em_f1 import em_f1

        rec["em"], rec["f1"] = em_f1(span_text or "", groups[0]) if answered else (0.0, 0.0)
    rec["refusal_accuracy"] = float(answered == answerable)
    rec["citation_precision"] = citation_precision(cited, matcher) if (answerable and answered) else None
    rec["latency_ms"] = latency_ms
    return rec


def summarize(records: Sequence[dict]) -> dict:
    """Contract summary: mean of each metric where it applies, latency p50/p95."""
    out: dict = {"n": len(records)}
    counts = {}
    for key in METRIC_KEYS:
        vals = [r[key] for r in records if r.get(key) is not None]
        out[key] = round(sum(vals) / len(vals), 4) if vals else None
        counts[key] = len(vals)
    lat = [r["latency_ms"] for r in records if r.get("latency_ms") is not None]
    p50, p95 = percentile(lat, 50), percentile(lat, 95)
    out["latency_ms_p50"] = round(p50, 1) if p50 is not None else None
    out["latency_ms_p95"] = round(p95, 1) if p95 is not None else None
    out["counts"] = counts
    return out


def breakdown(records: Sequence[dict], key: str) -> dict:
    """summarize() per value of record[key] (e.g. language, kind)."""
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(str(r.get(key)), []).append(r)
    return {k: summarize(v) for k, v in sorted(groups.items())}
