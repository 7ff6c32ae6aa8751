"""`python -m eval compare`: ClusterQA vs the plain llama-index baseline on the same questions,
or two saved summary.json files side by side."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

from eval.answers import answer_dict, passage_text, strip_markers
from eval.metrics import answer_recall, percentile, rank_metrics, summarize
from eval.progress import BuildProgress, bar

QUALITY = ("hit@1", "hit@3", "hit@5", "mrr@10", "answer_recall", "refusal_accuracy", "citation_precision")
# The figures the comparison is judged on (issue: hit@1, hit@5, MRR@10, answer recall).
HEADLINE = ("hit@1", "hit@5", "mrr@10", "answer_recall")
LATENCY = ("retrieve_ms_p50", "retrieve_ms_p95", "latency_ms_p50", "latency_ms_p95")


@dataclass
class Item:
    id: str
    question: str
    relevant: Callable[[dict], bool]  # is this passage (dict with doc_id, text) evidence?
    answers: list = field(default_factory=list)
    history: list = field(default_factory=list)
    answerable: bool = True
    group: str = ""  # stratum for sub-sampling (SQuAD paragraph)
    same_doc: Callable[[dict], bool] | None = None  # SQuAD: passage from the right paragraph (answer or not)


def _ratio(a, b):
    return round(a / b, 3) if a is not None and b not in (None, 0) else None


def _squad_setup(path, settings, limit, seed, progress):
    from eval.normalize import contains_any
    from eval.squad import benchmark_index, load_squad, paragraph_filename, paragraph_of_doc, stratified_sample

    squad = load_squad(path)
    questions = [q for q in stratified_sample(squad.questions, limit, seed) if q.answerable]
    keys = sorted(squad.paragraphs)
    bp = BuildProgress(progress)
    index, bench_settings, cache_root, _ = benchmark_index(squad, keys, settings, progress=bp)
    bp.close()
    docs = [(paragraph_filename(k), squad.paragraphs[k].title, squad.paragraphs[k].context) for k in keys]

    def relevant_for(q):
        return lambda p: paragraph_of_doc(p.get("doc_id", "")) == q.paragraph and contains_any(p.get("text", ""),
                                                                                                q.answers)

    def same_doc_for(q):
        return lambda p: paragraph_of_doc(p.get("doc_id", "")) == q.paragraph

    items = [Item(q.id, q.question, relevant_for(q), q.answers, group=q.paragraph, same_doc=same_doc_for(q))
             for q in questions]
    return items, index, bench_settings, docs, cache_root


def _question_set_setup(path, settings):
    from eval.metrics import evidence_matcher
    from eval.questions import load_questions
    from index import load_or_build

    index = load_or_build(settings)
    items = []
    for q in load_questions(path):
        m = evidence_matcher(q.get("gold"), q.get("answers"))
        rel = (lambda p, m=m: m(p.get("text", ""))) if m else (lambda p: False)
        items.append(Item(q["id"], q["question"], rel, q.get("answers") or [], q.get("history") or [],
                          q["answerable"], group=q["id"]))
    # The baseline gets the same cleaned documents ClusterQA indexed (same text, its own splitter).
    docs = [(d.doc_id, d.title, d.text) for d in index.documents()]
    return items, index, settings, docs, Path(settings.cache_dir) / "eval"


def _clusterqa_ranked(index, items, asked, engine, top_k, progress, batch_size: int = 64):
    """ClusterQA's hybrid top-k for every question, batched. A follow-up is first resolved by
    the chat engine (its rewritten question is what ClusterQA retrieves with)."""
    queries = []
    for it in items:
        q = it.question
        if it.history:
            ad = answer_dict(engine.ask(it.question, history=it.history))
            q = ad.get("resolved_question") or q
        queries.append(q)
    out = []
    with bar(len(items), "retrieve clusterqa", progress) as pb:
        for i in range(0, len(queries), batch_size):
            for hits in index.retrieve_many(queries[i : i + batch_size], top_k=top_k, mode="hybrid"):
                out.append(([{"doc_id": h.chunk.doc_id, "chunk_id": h.chunk.chunk_id, "text": h.chunk.text}
                              for h in hits], {}))
            pb.update(len(queries[i : i + batch_size]))
    return out


def _record(item: Item, passages: list[dict], answer: str, answered: bool, cited: list[dict],
            retrieve_ms: float, total_ms: float) -> dict:
    rank = next((i for i, p in enumerate(passages, 1) if item.relevant(p)), None) if item.answerable else None
    rec = {"rank": rank, **(rank_metrics(rank) if item.answerable else {k: None for k in rank_metrics(None)})}
    recall = answer_recall(answer, item.answers) if item.answerable else None
    rec["answer_recall"] = None if recall is None else (recall if answered else 0.0)
    rec["refusal_accuracy"] = float(answered == item.answerable)
    rec["citation_precision"] = (sum(item.relevant(c) for c in cited) / len(cited)
                                 if cited and answered and item.answerable else None)
    rec["retrieve_ms"], rec["latency_ms"] = retrieve_ms, total_ms
    rec["answer_chars"] = len(answer) if answered else None
    if item.same_doc is not None:
        # Paragraph level: fair to both whatever their chunk sizes (the baseline's nodes are
        # whole paragraphs, so its chunk-level hits equal its paragraph-level hits).
        prank = next((i for i, p in enumerate(passages, 1) if item.same_doc(p)), None)
        rec.update({f"paragraph_{k}": v for k, v in rank_metrics(prank).items() if k != "hit@3"})
    return rec


def _summary(records: list[dict]) -> dict:
    s = summarize(records)
    ret = [r["retrieve_ms"] for r in records if r.get("retrieve_ms") is not None]
    s["retrieve_ms_p50"] = round(percentile(ret, 50), 1) if ret else None
    s["retrieve_ms_p95"] = round(percentile(ret, 95), 1) if ret else None
    for k in ("paragraph_hit@1", "paragraph_hit@5", "paragraph_mrr@10"):
        vals = [r[k] for r in records if r.get(k) is not None]
        s[k] = round(sum(vals) / len(vals), 4) if vals else None
    chars = [r["answer_chars"] for r in records if r.get("answer_chars") is not None]
    s["answer_chars_mean"] = round(sum(chars) / len(chars), 1) if chars else None
    return s


def compare_systems(path, out_dir, *, settings, limit=None, seed=0, top_k=10, progress=True,
                    answer_limit: int | None = None) -> str:
    """Both systems on the same questions. With answer_limit, retrieval figures cover every
    question and answer figures (ClusterQA's chat answer, the baseline's top passage) a
    seed-stratified subset of that size, the same subset for both."""
    from chat import ChatEngine

    from eval.baseline import LlamaIndexBaseline

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    is_squad = str(path).endswith(".json")
    if is_squad:
        items, index, run_settings, docs, cache_root = _squad_setup(path, settings, limit, seed, progress)
    else:
        items, index, run_settings, docs, cache_root = _question_set_setup(path, settings)
    engine = ChatEngine(index, run_settings)
    engine.warm_up()  # a warm engine, as a server answers (otherwise sentences are embedded on first use)
    if answer_limit is not None and answer_limit < len(items):
        from eval.squad import stratified_sample

        keyed = [SimpleNamespace(id=it.id, paragraph=it.group) for it in items]
        asked = {q.id for q in stratified_sample(keyed, answer_limit, seed)}
    else:
        asked = {it.id for it in items}
    t0 = time.perf_counter()
    baseline = LlamaIndexBaseline(docs, settings, cache_dir=cache_root, top_k=top_k, show_progress=progress)
    baseline_build_s = time.perf_counter() - t0

    # Ranks for every question from batched calls (fast); timings, answers and citations
    # from single calls on the answered subset, as a user would see them.
    cqa_lists = _clusterqa_ranked(index, items, asked, engine, top_k, progress)
    base_lists = baseline.retrieve_many([it.question for it in items], progress=progress)
    rows, cqa, base, answered_passages = [], [], [], []
    # The engine remembers query vectors (retrieval and sentence scoring share one); the
    # batched pass above filled that memo, so it is emptied before each timed call: every
    # timing includes embedding the question, as for a new user's question.
    forget = getattr(index.embedder, "forget", lambda: None)
    with bar(len(asked), "answer (both)", progress) as pb:
        for it, (passages, ad), bp in zip(items, cqa_lists, base_lists):
            ask_ms = ret_ms = b_ms = None
            if it.id in asked:
                forget()
                t0 = time.perf_counter()
                ad = answer_dict(engine.ask(it.question, history=it.history or None))
                ask_ms = 1000.0 * (time.perf_counter() - t0)
                forget()
                t0 = time.perf_counter()
                index.retrieve(ad.get("resolved_question") or it.question, top_k=top_k, mode="hybrid")
                ret_ms = 1000.0 * (time.perf_counter() - t0)
                t0 = time.perf_counter()
                bp = baseline.retrieve(it.question)  # same list as the batched one, now timed
                b_ms = 1000.0 * (time.perf_counter() - t0)
                pb.update(1)
            a = _record(it, passages, strip_markers(ad.get("answer", "")), bool(ad.get("answered")),
                        list(ad.get("citations") or []), ret_ms, ask_ms)
            # Baseline: dense top-k; its answer is the top passage (which it always gives).
            b_answer = baseline.answer(bp)
            b = _record(it, bp, b_answer, bool(b_answer), bp[:1], b_ms, b_ms)
            if it.id not in asked:  # retrieval only for this question: no answer figures on either side
                for rec in (a, b):
                    rec.update(answer_recall=None, refusal_accuracy=None, citation_precision=None,
                               answer_chars=None)
            cqa.append(a)
            base.append(b)
            if it.id in asked and it.answerable:
                answered_passages.append((it, b_answer))
            rows.append({"id": it.id, "question": it.question, "clusterqa": {**a, "answer": ad.get("answer", "")},
                         "baseline": {**b, "answer": b_answer[:300]}})

    s_cqa, s_base = _summary(cqa), _summary(base)
    # The baseline's "answer" is a whole passage (~4x ClusterQA's); the same figure at equal
    # length: its top passage cut to ClusterQA's mean answer length.
    same_length = round(s_cqa["answer_chars_mean"]) if s_cqa.get("answer_chars_mean") else None
    if same_length:
        cut = [answer_recall(text[:same_length], it.answers) for it, text in answered_passages]
        s_base["answer_recall_same_length"] = round(sum(cut) / len(cut), 4) if cut else None
        s_cqa["answer_recall_same_length"] = s_cqa.get("answer_recall")
    ratios = {k: _ratio(s_cqa.get(k), s_base.get(k)) for k in QUALITY + LATENCY}
    ahead = {k: (s_cqa[k] > s_base[k]) for k in HEADLINE if s_cqa.get(k) is not None and s_base.get(k) is not None}
    result = {
        "input": str(path), "n": len(items), "n_answered_pass": len(asked), "clusterqa": s_cqa, "baseline": s_base, "ratios_clusterqa_over_baseline": ratios,
        "clusterqa_ahead": ahead,
        "config": {"top_k": top_k, "limit": limit, "answer_limit": answer_limit, "seed": seed, "embed_model": settings.embed_model,
                   "clusterqa_retrieval": "hybrid", "clusterqa_chunks": index.stats().get("chunks"),
                   "baseline": "llama-index VectorStoreIndex + default SentenceSplitter, dense only, answer = top passage",
                   "baseline_nodes": baseline.nodes, "baseline_build_s": round(baseline_build_s, 1),
                   "baseline_cached": not baseline.built},
    }
    (out_dir / "compare.json").write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    with open(out_dir / "compare.jsonl", "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    text = _systems_markdown(result)
    (out_dir / "compare.md").write_text(text + "\n", encoding="utf-8")
    return text


def _f(v, key=""):
    if v is None:
        return "–"
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    return f"{v:.1f}" if "ms" in key else f"{v:.3f}"


def _systems_markdown(r: dict) -> str:
    lines = [f"# ClusterQA vs llama-index baseline: {Path(r['input']).name}, {r['n']} questions "
             f"({r['n_answered_pass']} answered by both)", "",
             "| metric | ClusterQA | baseline | ClusterQA / baseline |", "|---|---|---|---|"]
    for k in QUALITY + ("answer_recall_same_length", "paragraph_hit@1", "paragraph_hit@5", "paragraph_mrr@10") + LATENCY + (
            "answer_chars_mean",):
        a, b = r["clusterqa"].get(k), r["baseline"].get(k)
        if a is None and b is None:
            continue
        lines.append(f"| {k} | {_f(a, k)} | {_f(b, k)} | {_f(_ratio(a, b))} |")
    behind = [k for k, ok in r["clusterqa_ahead"].items() if not ok]
    lines += ["", f"ClusterQA ahead on every quality figure ({', '.join(HEADLINE)}): "
              + ("yes" if not behind else f"no (not ahead on {', '.join(behind)})"),
              "", "hit@k / mrr@10: a passage from the right paragraph that contains the answer (chunk level); "
              "paragraph_*: any passage from the right paragraph. The baseline's nodes are whole paragraphs.",
              "answer_recall_same_length: the baseline's top passage cut to ClusterQA's mean answer length "
              "in characters (ClusterQA: its own answer recall).",
              "retrieve_ms = the retriever alone (query embedding included); latency_ms = the whole answer "
              "(for the baseline, its retrieval); both timed on the answered subset, one call per question.",
              f"Config: {json.dumps(r['config'], ensure_ascii=False)}"]
    return "\n".join(lines)


def _flatten(summary: dict) -> dict:
    """Contract keys at top level, plus per-mode / per-language / per-kind figures as 'group/metric'."""
    out = {k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for group in ("modes", "by_language", "by_kind", "clusterqa", "baseline"):
        for name, s in (summary.get(group) or {}).items():
            if isinstance(s, dict):
                for k, v in s.items():
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        out[f"{group}:{name}/{k}"] = v
            elif isinstance(s, (int, float)) and not isinstance(s, bool):
                out[f"{group}/{name}"] = s
    return out


def compare_runs(a_path, b_path, out_dir=None) -> str:
    """Two saved summary.json files: every shared figure with B/A and B-A."""
    a = json.loads(Path(a_path).read_text(encoding="utf-8"))
    b = json.loads(Path(b_path).read_text(encoding="utf-8"))
    fa, fb = _flatten(a), _flatten(b)
    keys = [k for k in fa if k in fb]
    lines = [f"# {a_path} (A) vs {b_path} (B)", "", "| figure | A | B | B / A | B − A |", "|---|---|---|---|---|"]
    table = {}
    for k in keys:
        va, vb = fa[k], fb[k]
        table[k] = {"a": va, "b": vb, "ratio": _ratio(vb, va), "diff": round(vb - va, 4)}
        lines.append(f"| {k} | {_f(va, k)} | {_f(vb, k)} | "
                     f"{_f(table[k]['ratio'])} | {table[k]['diff']:+.4g} |")
    text = "\n".join(lines)
    if out_dir:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "compare.md").write_text(text + "\n", encoding="utf-8")
        (out / "compare.json").write_text(json.dumps({"a": str(a_path), "b": str(b_path), "figures": table},
                                                     ensure_ascii=False, indent=2), encoding="utf-8")
    return text
