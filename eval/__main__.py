"""Command line: python -m eval {squad,convert,run,compare,feedback,gate} ...  (see eval/README.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _settings(args):
    from settings import apply_offline_defaults, load_settings

    apply_offline_defaults()
    overrides = {}
    if getattr(args, "index_dir", None):
        overrides["index_dir"] = Path(args.index_dir)
    return load_settings(**overrides)


def cmd_squad(args) -> int:
    from eval.squad_bench import run_squad

    settings = _settings(args)
    summary = run_squad(args.file, args.out, settings=settings, retrieval_only=args.retrieval_only,
                        limit=args.limit, seed=args.seed, top_k=args.top_k, corpus=args.corpus,
                        progress=not args.quiet, rebuild=args.rebuild,
                        answer_limit=args.answer_limit, questions_from=args.questions_from,
                        unindexed_share=args.unindexed_share)
    cfg = summary["config"]
    built = "cached" if cfg["index_cached"] else f"built in {cfg['index_build_s']} s"
    print(f"{summary['benchmark']} ({summary['language']}): {summary['n']} questions, {cfg['paragraphs']} paragraphs, "
          f"{cfg['chunks']} chunks, index {built}")
    print(summary["table"])
    print(f"wrote {args.out}/summary.json, questions.jsonl, table.md")
    return 0


def cmd_split(args) -> int:
    """The held-out part of each training file (eval/splits.py): what the figures that say
    "held-out split" were measured on; nothing was fitted on them."""
    from eval import splits

    out = Path(args.out)
    for source in ("cmrc_trial", "drcd", "squad", "xquad_en", "xquad_zh"):
        rows = splits.split(source, splits.load(source), "held_out")
        path = splits.write_squad(rows, out / f"{source}_held_out.json")
        print(f"{path}: {len(rows)} questions, {len({r.article for r in rows})} articles")
    return 0


def cmd_convert(args) -> int:
    from eval.squad import convert_file

    info = convert_file(args.file, args.out, to=args.to)
    print(f"converted {info['questions']} questions to {args.to}: {info['out']} "
          f"({info['offsets_searched']} answer offsets re-found by search)")
    return 0


def cmd_run(args) -> int:
    from eval.runner import run_question_set

    settings = _settings(args)
    summary = run_question_set(args.questions, args.out, settings=settings, url=args.url, api_key=args.api_key,
                               top_k=args.top_k, progress=not args.quiet)
    from eval.report import summary_table

    print(summary_table(summary))
    if summary.get("composition_ms_p50") is not None:
        print(f"engine stage timings: retrieval p50 {summary['retrieval_ms_p50']} / p95 {summary['retrieval_ms_p95']} ms, "
              f"composition (after retrieval) p50 {summary['composition_ms_p50']} / p95 {summary['composition_ms_p95']} ms")
    print(f"wrote {args.out}/summary.json, results.jsonl, report.md")
    return 0


def cmd_compare(args) -> int:
    from eval.compare import compare_runs, compare_systems

    if len(args.inputs) == 2 and all(p.endswith(".json") and "summary" in Path(p).name for p in args.inputs):
        text = compare_runs(args.inputs[0], args.inputs[1], out_dir=args.out)
    elif len(args.inputs) == 1:
        text = compare_systems(args.inputs[0], args.out, settings=_settings(args), limit=args.limit, seed=args.seed,
                               top_k=args.top_k, progress=not args.quiet, answer_limit=args.answer_limit)
    else:
        print("compare takes one question set / SQuAD file, or two summary.json files", file=sys.stderr)
        return 2
    print(text)
    return 0


def cmd_feedback(args) -> int:
    from eval.feedback import feedback_to_questions

    info = feedback_to_questions(args.log, args.out)
    print(json.dumps(info, ensure_ascii=False))
    return 0


def cmd_bank(args) -> int:
    from eval.bank import product_table, run_bank

    summary = run_bank(args.part, args.out, settings=_settings(args), progress=not args.quiet)
    print(product_table(summary["product"], f"question bank, {args.part} part"))
    print(f"wrote {args.out}/summary.json, table.md, results.jsonl")
    return 0


def cmd_offtopic(args) -> int:
    from eval.bank import run_offtopic

    summary = run_offtopic(args.out, settings=_settings(args), progress=not args.quiet, limit=args.limit)
    print(json.dumps({k: summary[k] for k in ("n", "refused", "by_language")}, ensure_ascii=False))
    print(f"wrote {args.out}/summary.json, table.md, results.jsonl")
    return 0


def cmd_gate(args) -> int:
    from eval.gate import run_gate

    return run_gate(out_dir=args.out, thresholds_path=args.thresholds, dev=args.dev, cmrc=args.cmrc,
                    settings=_settings(args), progress=not args.quiet, update=args.update)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("squad", help="retrieval (and answer) metrics on a SQuAD-format file")
    s.add_argument("file")
    s.add_argument("--out", required=True)
    s.add_argument("--retrieval-only", action="store_true", help="dense/bm25/hybrid retrieval only, no answers")
    s.add_argument("--limit", type=int, help="stratified sample of N questions (one per paragraph first)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--top-k", type=int, default=10)
    s.add_argument("--corpus", choices=("file", "sample"), default="file",
                   help="index every paragraph of the file (default) or only the sampled questions' paragraphs")
    s.add_argument("--rebuild", action="store_true", help="rebuild the cached benchmark index")
    s.add_argument("--answer-limit", type=int, help="ask the chat engine only a stratified N of the sampled questions")
    s.add_argument("--questions-from", help="a SQuAD file with the same question ids whose questions are asked "
                                            "instead (cross-language: XQuAD zh questions over en paragraphs)")
    s.add_argument("--unindexed-share", type=float, default=0.0,
                   help="leave this share of the articles out of the index; their questions must be refused")
    s.set_defaults(func=cmd_squad)

    sp_ = sub.add_parser("split", help="write ClusterQA's held-out split of the training files (SQuAD format)")
    sp_.add_argument("--out", required=True)
    sp_.set_defaults(func=cmd_split)

    c = sub.add_parser("convert", help="convert a SQuAD-format file to Traditional (s2twp) or Simplified")
    c.add_argument("file")
    c.add_argument("--to", default="zh-Hant", choices=("zh-Hant", "zh-Hans"))
    c.add_argument("--out", required=True)
    c.set_defaults(func=cmd_convert)

    r = sub.add_parser("run", help="run a question set (JSONL) in-process or against a server")
    r.add_argument("questions")
    r.add_argument("--out", required=True)
    r.add_argument("--url", help="server base URL; POST {url}/api/ask instead of in-process")
    r.add_argument("--api-key")
    r.add_argument("--index-dir")
    r.add_argument("--top-k", type=int)
    r.set_defaults(func=cmd_run)

    m = sub.add_parser("compare", help="ClusterQA vs a plain llama-index baseline, or two saved summary.json files")
    m.add_argument("inputs", nargs="+")
    m.add_argument("--out", required=True)
    m.add_argument("--limit", type=int)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--top-k", type=int, default=10)
    m.add_argument("--answer-limit", type=int, help="answer figures on a stratified N of the questions only")
    m.add_argument("--index-dir")
    m.set_defaults(func=cmd_compare)

    f = sub.add_parser("feedback", help="turn the app's feedback log into a question set")
    f.add_argument("log")
    f.add_argument("--out", required=True)
    f.set_defaults(func=cmd_feedback)

    g = sub.add_parser("gate", help="regression gate: dev set + fixed CMRC sample against eval/thresholds.json")
    g.add_argument("--out", default="build/eval/gate", help="untracked (the figures are in the CI log)")
    g.add_argument("--thresholds", default=None)
    g.add_argument("--dev", default=None)
    g.add_argument("--cmrc", default=None)
    g.add_argument("--index-dir")
    g.add_argument("--update", action="store_true", help="write measured-minus-margin thresholds instead of checking")
    g.set_defaults(func=cmd_gate)

    b = sub.add_parser("bank", help="the product question bank (data/questions/bank_*.jsonl): figures by kind")
    b.add_argument("--part", choices=("report", "fit", "all"), default="report")
    b.add_argument("--out", default="build/eval/bank")
    b.add_argument("--index-dir")
    b.set_defaults(func=cmd_bank)

    o = sub.add_parser("offtopic", help="the off-topic bench (data/questions/offtopic.jsonl): all must be refused")
    o.add_argument("--out", default="build/eval/offtopic")
    o.add_argument("--limit", type=int)
    o.add_argument("--index-dir")
    o.set_defaults(func=cmd_offtopic)

    for sp in (s, r, m, g, b, o):
        sp.add_argument("--quiet", action="store_true", help="no progress bars")

    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
