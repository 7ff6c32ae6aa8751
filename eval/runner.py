"""`python -m eval run`: a question set through ClusterQA (in-process or POST /api/ask) -> metrics + report."""

from __future__ import annotations

import json
import time
from pathlib import Path

from eval.answers import answer_dict, passage_id, passage_text, ranked_passages, strip_markers
from eval.metrics import breakdown, evidence_matcher, score_question, summarize
from eval.progress import bar
from eval.questions import kind_of, language_of, load_questions


class InProcessAsker:
    """ChatEngine over the configured index (built from settings.corpus_dir if missing)."""

    def __init__(self, settings, engine=None):
        if engine is None:
            from chat import ChatEngine
            from index import load_or_build

            engine = ChatEngine(load_or_build(settings), settings)
            # as a server does before taking questions: load the lazy models and tokenizers
            # and embed the corpus's sentences, so latency is that of a warm engine
            engine.warm_up()
        self.engine = engine
        self.target = f"in-process ({settings.index_dir})"

    def ask(self, question: str, history: list, top_k: int | None) -> dict:
        out = answer_dict(self.engine.ask(question, history=history or None, top_k=top_k))
        out.pop("retrieved", None)  # rank by the citations, as a run against a server must
        return out


class HttpAsker:
    """POST {url}/api/ask with the request body of docs/CONTRACTS.md."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 120.0):
        import httpx

        headers = {}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
            headers["X-API-Key"] = api_key
        self.client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout, trust_env=False)
        self.target = url

    def ask(self, question: str, history: list, top_k: int | None) -> dict:
        body = {"question": question, "history": history or []}
        if top_k:
            body["top_k"] = top_k
        r = self.client.post("/api/ask", json=body)
        if r.status_code != 200:
            try:
                msg = r.json().get("error", r.text)
            except ValueError:
                msg = r.text
            raise RuntimeError(f"HTTP {r.status_code}: {msg}")
        return r.json()


def evaluate_question(q: dict, ad: dict, latency_ms: float) -> dict:
    """One results.jsonl record: what was asked, what came back, and every metric."""
    passages = ranked_passages(ad)
    cites = list(ad.get("citations") or [])
    matcher = evidence_matcher(q.get("gold"), q.get("answers"))
    answered = bool(ad.get("answered"))
    metrics = score_question(
        answerable=q["answerable"], answered=answered, answer_text=strip_markers(ad.get("answer", "")),
        passages=[passage_text(p) for p in passages], cited=[passage_text(c) for c in cites],
        matcher=matcher, answers=q.get("answers"), latency_ms=latency_ms,
        span_text=(ad.get("span") or {}).get("text"),
    )
    return {
        "id": q["id"], "question": q["question"], "history": q.get("history") or [],
        "language": language_of(q), "kind": kind_of(q), "answerable": q["answerable"],
        "language_pair": language_pair(q, cites),
        "answers": q.get("answers"), "gold": q.get("gold"),
        "answer": ad.get("answer", ""), "answered": answered, "system_kind": ad.get("kind"),
        "resolved_question": ad.get("resolved_question"),
        "citations": [{k: c.get(k) for k in ("n", "chunk_id", "doc_id", "title", "quote", "score")} for c in cites],
        "retrieved": [passage_id(p) for p in passages],
        "retrieved_text": [passage_text(p)[:160] for p in passages[:5]],
        "server_timings_ms": ad.get("timings_ms"),
        **metrics,
    }


def language_pair(q: dict, cites: list[dict]) -> str:
    """"zh>en" etc.: the question's language and that of the passage it was answered from
    (the first citation; "none" when nothing was cited)."""
    from eval.normalize import has_han

    asked = "en" if language_of(q) == "en" else "zh"
    if not cites:
        return f"{asked}>none"
    return f"{asked}>{'zh' if has_han(str(cites[0].get('text') or '')) else 'en'}"


def run_questions(questions: list[dict], asker, progress: bool = True, label: str = "ask") -> list[dict]:
    results = []
    with bar(len(questions), label, progress) as pb:
        for q in questions:
            t0 = time.perf_counter()
            try:
                ad = asker.ask(q["question"], q.get("history") or [], q.get("top_k"))
                error = None
            except Exception as exc:  # keep going: a failed question is a result, not a crash
                ad, error = {"answer": "", "answered": False, "citations": []}, f"{type(exc).__name__}: {exc}"
            rec = evaluate_question(q, ad, 1000.0 * (time.perf_counter() - t0))
            if error:
                rec["error"] = error
            results.append(rec)
            pb.update(1)
    return results


def stage_latency(results: list[dict]) -> dict:
    """p50/p95 of the engine's own stage timings (Answer.timings_ms): `retrieve`, and
    `answer` = composition, everything after retrieval (the issue's "adds at most 100 ms")."""
    from eval.metrics import percentile

    out = {}
    for stage, key in (("retrieve", "retrieval"), ("answer", "composition")):
        vals = [r["server_timings_ms"][stage] for r in results
                if isinstance(r.get("server_timings_ms"), dict) and stage in r["server_timings_ms"]]
        for q in (50, 95):
            v = percentile(vals, q)
            out[f"{key}_ms_p{q}"] = round(v, 1) if v is not None else None
    return out


def summarize_run(results: list[dict], config: dict) -> dict:
    summary = summarize(results)
    summary.update(stage_latency(results))
    summary["errors"] = sum(1 for r in results if r.get("error"))
    summary["by_language"] = breakdown(results, "language")
    summary["by_kind"] = breakdown(results, "kind")
    summary["by_language_pair"] = breakdown(results, "language_pair")
    summary["config"] = config
    return summary


def run_question_set(path, out_dir, *, settings, url: str | None = None, api_key: str | None = None,
                     top_k: int | None = None, progress: bool = True, engine=None) -> dict:
    """Run, then write results.jsonl, summary.json and report.md (+ charts) into out_dir."""
    from eval.report import write_report

    questions = load_questions(path)
    if top_k:
        for q in questions:
            q.setdefault("top_k", top_k)
    asker = HttpAsker(url, api_key) if url else InProcessAsker(settings, engine=engine)
    results = run_questions(questions, asker, progress=progress)
    config = {"questions": str(path), "target": asker.target, "top_k": top_k or settings.top_k,
              "embed_model": settings.embed_model, "fusion": settings.fusion, "index_backend": settings.index_backend,
              "mode": "llm" if settings.llm_enabled else "extractive"}
    summary = summarize_run(results, config)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "results.jsonl", "w", encoding="utf-8") as fh:
        for r in results:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    (out_dir / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
    write_report(out_dir, summary, results, title=f"ClusterQA evaluation: {Path(path).name}")
    return summary
