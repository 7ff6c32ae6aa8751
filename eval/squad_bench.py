"""`python -m eval squad`: retrieval (dense / bm25 / hybrid) and, optionally, answer metrics on a SQuAD file."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from eval.answers import answer_dict, passage_id, passage_text, ranked_passages, sentence_count, strip_markers
from eval.metrics import percentile, rank_metrics, score_question, summarize
from eval.normalize import contains_any
from eval.progress import BuildProgress, bar
from eval.squad import SquadSet, benchmark_index, load_squad, paragraph_of_doc, settings_fingerprint, stratified_sample

MODES = ("dense", "bm25", "hybrid")
CONTRACT_KEYS = ("n", "hit@1", "hit@3", "hit@5", "mrr@10", "answer_recall", "em", "f1", "refusal_accuracy",
                 "citation_precision", "latency_ms_p50", "latency_ms_p95")


def _script_of(questions) -> str:
    try:
        from ingest.script import detect_script
    except ImportError:
        return "unknown"
    votes = Counter(detect_script(q.question) for q in questions[:200])
    return votes.most_common(1)[0][0] if votes else "unknown"


def _relevant(passage: dict, q) -> bool:
    """The SQuAD hit rule: from the question's own paragraph AND contains a gold answer."""
    doc = passage.get("doc_id") or str(passage.get("chunk_id", "")).split("#")[0]
    return paragraph_of_doc(doc) == q.paragraph and contains_any(passage_text(passage), q.answers)


def retrieval_pass(index, questions, mode: str, top_k: int = 10, batch_size: int = 64, progress: bool = True):
    """Rank records for every question with CorpusIndex.retrieve_many; returns (records, ms per query)."""
    records = []
    elapsed = 0.0
    with bar(len(questions), f"retrieve {mode}", progress) as pb:
        for i in range(0, len(questions), batch_size):
            batch = questions[i : i + batch_size]
            t0 = time.perf_counter()
            results = index.retrieve_many([q.question for q in batch], top_k=top_k, mode=mode)
            elapsed += time.perf_counter() - t0
            for q, hits in zip(batch, results):
                flags = [_relevant({"doc_id": h.chunk.doc_id, "text": h.chunk.text}, q) for h in hits]
                rank = next((r for r, ok in enumerate(flags, 1) if ok), None)
                # Paragraph level (any chunk of the right paragraph, answer or not): the
                # granularity of the measured floors.
                para_rank = next((r for r, h in enumerate(hits, 1) if paragraph_of_doc(h.chunk.doc_id) == q.paragraph),
                                 None)
                para = {f"paragraph_{k}": v for k, v in rank_metrics(para_rank).items() if k != "hit@3"}
                records.append({"rank": rank, "retrieved": [h.chunk.chunk_id for h in hits], **rank_metrics(rank),
                                **para})
            pb.update(len(batch))
    return records, 1000.0 * elapsed / max(1, len(questions))


def answer_pass(engine, questions, top_k: int | None = None, progress: bool = True, label: str = "answer"):
    """Ask every question through ChatEngine; per-question records with all metrics."""
    records = []
    with bar(len(questions), label, progress) as pb:
        for q in questions:
            t0 = time.perf_counter()
            ad = answer_dict(engine.ask(q.question, top_k=top_k))
            latency = 1000.0 * (time.perf_counter() - t0)
            passages = ranked_passages(ad)
            cites = list(ad.get("citations") or [])
            answer_text = strip_markers(ad.get("answer", ""))
            rec = score_question(
                answerable=q.answerable, answered=bool(ad.get("answered")), answer_text=answer_text,
                passages=[passage_text(p) for p in passages], cited=[], matcher=None, answers=q.answers,
                relevant_flags=[_relevant(p, q) for p in passages], latency_ms=latency,
                span_text=(ad.get("span") or {}).get("text"),
            )
            if ad.get("answered") and cites:
                rec["citation_precision"] = sum(_relevant(c, q) for c in cites) / len(cites)
            rec["server_timings_ms"] = ad.get("timings_ms")
            rec.update(answer=ad.get("answer", ""), answered=bool(ad.get("answered")), answerable=q.answerable,
                       answer_sentences=sentence_count(ad.get("answer", "")) if ad.get("answered") else None,
                       cited=[passage_id(c) for c in cites], retrieved=[passage_id(p) for p in passages])
            records.append(rec)
            pb.update(1)
    return records


def replace_questions(squad: SquadSet, other: SquadSet) -> SquadSet:
    """This file's paragraphs and answers with `other`'s question texts (same ids)."""
    from dataclasses import replace

    texts = {q.id: q.question for q in other.questions}
    kept = [replace(q, question=texts[q.id]) for q in squad.questions if q.id in texts]
    if not kept:
        raise ValueError("the two files share no question ids")
    return SquadSet(squad.path, squad.sha256, squad.paragraphs, kept)


def drop_articles(squad: SquadSet, share: float, seed: int) -> SquadSet:
    """Mark the questions of a seeded `share` of the articles unanswerable; run_squad then
    indexes only the other articles' paragraphs."""
    import random
    from dataclasses import replace

    articles = sorted({k.split("p")[0] for k in squad.paragraphs})
    dropped = set(random.Random(seed).sample(articles, max(1, round(share * len(articles)))))
    qs = [replace(q, answerable=q.paragraph.split("p")[0] not in dropped) for q in squad.questions]
    return SquadSet(squad.path, squad.sha256, squad.paragraphs, qs)


def _share(recs: list[dict], answered: bool) -> float | None:
    return round(sum(1 for r in recs if bool(r["answered"]) == answered) / len(recs), 4) if recs else None


def _lang(texts) -> str:
    from eval.normalize import has_han

    texts = list(texts)[:50]
    return "zh" if sum(has_han(t) for t in texts) * 2 > len(texts) else "en"


def format_table(rows: dict[str, dict], keys=("hit@1", "hit@3", "hit@5", "mrr@10")) -> str:
    extra = [k for k in ("paragraph_hit@1", "paragraph_mrr@10", "answer_recall", "em", "f1", "refusal_accuracy",
                         "citation_precision", "ms_per_query",
                         "latency_ms_p50", "latency_ms_p95")
             if any(r.get(k) is not None for r in rows.values())]
    cols = list(keys) + extra
    lines = ["| mode | n | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for name, r in rows.items():
        cells = []
        for k in cols:
            v = r.get(k)
            cells.append("–" if v is None else (f"{v:.1f}" if "ms" in k else f"{v:.3f}"))
        lines.append(f"| {name} | {r.get('n')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_squad(path, out_dir, *, settings, retrieval_only: bool = False, limit: int | None = None, seed: int = 0,
              top_k: int = 10, modes=MODES, corpus: str = "file", progress: bool = True, squad: SquadSet | None = None,
              engine_factory=None, rebuild: bool = False, answer_limit: int | None = None,
              questions_from=None, unindexed_share: float = 0.0) -> dict:
    """Run the benchmark and write summary.json, questions.jsonl and table.md into out_dir.

    `questions_from`: another SQuAD file with the same question ids whose question texts
    replace this file's (XQuAD: Chinese questions over the English paragraphs). 
    `unindexed_share`: that share of the articles (seeded) is left out of the index and
    their questions become unanswerable: what "not in the documents" looks like."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    squad = squad or load_squad(path)
    if questions_from:
        squad = replace_questions(squad, load_squad(questions_from))
    if unindexed_share:
        squad = drop_articles(squad, unindexed_share, seed)
    questions = stratified_sample(squad.questions, limit, seed)
    answerable = [q for q in questions if q.answerable]
    # "file": every paragraph is a document (the benchmark proper); "sample": only the
    # sampled questions' paragraphs (a smaller, faster corpus, e.g. for the CI gate).
    if unindexed_share:  # every paragraph of the articles kept, none of the dropped ones
        dropped = {q.paragraph for q in squad.questions if not q.answerable}
        keys = sorted(k for k in squad.paragraphs if k not in dropped) if corpus == "file" else \
            sorted({q.paragraph for q in questions if q.answerable})
    else:
        keys = sorted(squad.paragraphs) if corpus == "file" else sorted({q.paragraph for q in questions})

    t0 = time.perf_counter()
    bp = BuildProgress(progress)
    index, bench_settings, cache_root, built = benchmark_index(squad, keys, settings, progress=bp, rebuild=rebuild)
    bp.close()
    build_s = time.perf_counter() - t0
    stats = index.stats()

    per_q = {q.id: {"id": q.id, "question": q.question, "answers": q.answers, "paragraph": q.paragraph,
                    "answerable": q.answerable} for q in questions}
    mode_rows: dict[str, dict] = {}
    for mode in modes:
        recs, ms_q = retrieval_pass(index, answerable, mode, top_k=top_k, progress=progress)
        for q, r in zip(answerable, recs):
            per_q[q.id][mode] = {"rank": r["rank"], "retrieved": r["retrieved"]}
        para = {k: round(sum(r[k] for r in recs) / len(recs), 4) if recs else None
                for k in ("paragraph_hit@1", "paragraph_hit@5", "paragraph_mrr@10")}
        mode_rows[mode] = {**summarize(recs), **para, "ms_per_query": round(ms_q, 2)}

    answer_row = None
    if not retrieval_only:
        if engine_factory is None:
            from chat import ChatEngine

            engine = ChatEngine(index, bench_settings)
            engine.warm_up()  # a warm engine, as a server answers (latency figures)
        else:
            engine = engine_factory(index, bench_settings)
        # Answering costs far more than retrieval: optionally a stratified sub-sample of the sample.
        asked = stratified_sample(questions, answer_limit, seed)
        recs = answer_pass(engine, asked, top_k=top_k, progress=progress)
        for q, r in zip(asked, recs):
            per_q[q.id]["clusterqa"] = {k: r[k] for k in ("answer", "answered", "rank", "answer_recall",
                                                           "citation_precision", "answer_sentences",
                                                           "latency_ms", "cited", "retrieved")}
        answer_row = summarize(recs)
        from eval.runner import stage_latency

        answer_row.update(stage_latency(recs))
        sents = [r["answer_sentences"] for r in recs if r["answer_sentences"] is not None]
        answer_row["answer_sentences_mean"] = round(sum(sents) / len(sents), 2) if sents else None
        answer_row["answer_sentences_p95"] = percentile(sents, 95)
        mode_rows["clusterqa (chat)"] = answer_row

    if answer_row and unindexed_share:
        answer_row["answerable_answered"] = _share([r for r in recs if r["answerable"]], True)
        answer_row["unindexed_refused"] = _share([r for r in recs if not r["answerable"]], False)
    headline = answer_row or mode_rows.get("hybrid") or next(iter(mode_rows.values()))
    summary = {k: headline.get(k) for k in CONTRACT_KEYS}
    summary["n"] = len(questions)
    if answer_row:
        summary["n_answered_pass"] = answer_row["n"]
    for key in ("answerable_answered", "unindexed_refused"):
        if answer_row and key in answer_row:
            summary[key] = answer_row[key]
    summary.update({
        "benchmark": Path(path).name,
        "questions_from": Path(questions_from).name if questions_from else None,
        "language_pair": f"{_lang(q.question for q in questions)}>{_lang(p.context for p in squad.paragraphs.values())}",
        "unindexed_share": unindexed_share,
        "sha256": squad.sha256,
        "language": _script_of(questions),
        "retrieval_only": retrieval_only,
        "modes": mode_rows,
        "config": {
            "limit": limit, "answer_limit": answer_limit, "seed": seed, "top_k": top_k, "corpus": corpus, "paragraphs": len(keys),
            "chunks": stats.get("chunks"), "index_build_s": round(build_s, 1), "index_cached": not built,
            "index_cache": str(cache_root), **settings_fingerprint(settings),
        },
    })
    if answer_row:
        summary["answer_sentences_mean"] = answer_row["answer_sentences_mean"]

    with open(out_dir / "questions.jsonl", "w", encoding="utf-8") as fh:
        for q in questions:
            fh.write(json.dumps(per_q[q.id], ensure_ascii=False) + "\n")
    table = format_table(mode_rows)
    (out_dir / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
    (out_dir / "table.md").write_text(
        f"# {Path(path).name}: {len(questions)} questions, {len(keys)} paragraphs, {stats.get('chunks')} chunks\n\n"
        f"{table}\n", encoding="utf-8")
    summary["table"] = table
    return summary
