"""Ask one question from the command line.

    python -m chat "沙特计划建设多少个医疗集群？"
    python -m chat --json "How many members does it's OWL have?"
    python -m chat --history turns.json "那沙特呢？"     # turns.json: [{"role": "user", "content": "…"}, …]

Uses the index in settings.index_dir (building it from settings.corpus_dir if missing).
Exit status: 0 answered or refused, 2 bad input, 1 other errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    import settings

    settings.apply_offline_defaults()
    parser = argparse.ArgumentParser(prog="python -m chat", description="Ask ClusterQA one question.")
    parser.add_argument("question")
    parser.add_argument("--json", action="store_true", help="print the Answer JSON contract")
    parser.add_argument("--history", type=Path, help="JSON file: a list of {role, content} turns")
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--config", help="settings TOML file")
    args = parser.parse_args(argv)

    from chat import ChatEngine, QuestionError
    from index import load_or_build

    history = None
    if args.history:
        try:
            history = json.loads(args.history.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            print(f"cannot read history file {args.history}: {exc}", file=sys.stderr)
            return 2
    config = settings.load_settings(args.config)
    engine = ChatEngine(load_or_build(config), config)
    try:
        answer = engine.ask(args.question, history=history, top_k=args.top_k)
    except QuestionError as exc:
        if args.json:
            print(json.dumps({"error": str(exc), "status": exc.status}, ensure_ascii=False))
        else:
            print(str(exc), file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(answer.to_dict(), ensure_ascii=False, indent=2))
        return 0
    if answer.resolved_question:
        print(f"({answer.resolved_question})")
    print(answer.answer)
    if answer.note:
        print(f"\n[{answer.note}]")
    for c in answer.citations:
        print(f"\n[{c.n}] {c.title} — {c.source} {c.date}\n    {c.quote}")
    print(f"\n({answer.mode}; retrieve {answer.timings_ms['retrieve']:.0f} ms, "
          f"answer {answer.timings_ms['answer']:.0f} ms)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
