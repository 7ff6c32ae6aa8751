"""Question sets (JSONL, docs/CONTRACTS.md): id, question, optional history, answers, gold, answerable."""

from __future__ import annotations

import json
from pathlib import Path


class QuestionSetError(ValueError):
    pass


def load_questions(path: str | Path) -> list[dict]:
    """Read and check a question set; errors name the file and line."""
    path = Path(path)
    out, seen = [], set()
    for lineno, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("//"):
            continue
        where = f"{path}:{lineno}"
        try:
            q = json.loads(line)
        except json.JSONDecodeError as exc:
            raise QuestionSetError(f"{where}: not JSON ({exc.msg})") from None
        if not isinstance(q, dict) or not isinstance(q.get("question"), str) or not q["question"].strip():
            raise QuestionSetError(f"{where}: needs a non-empty 'question' string")
        q.setdefault("id", f"line{lineno}")
        q["id"] = str(q["id"])
        if q["id"] in seen:
            raise QuestionSetError(f"{where}: duplicate id {q['id']!r}")
        seen.add(q["id"])
        history = q.get("history") or []
        if not isinstance(history, list) or not all(
            isinstance(h, dict) and h.get("role") in ("user", "assistant") and isinstance(h.get("content"), str)
            for h in history
        ):
            raise QuestionSetError(f"{where}: 'history' must be a list of {{role: user|assistant, content}}")
        q["history"] = history
        for key in ("answers", "gold"):
            if q.get(key) is not None and not isinstance(q[key], list):
                raise QuestionSetError(f"{where}: {key!r} must be a list")
        q["answerable"] = bool(q.get("answerable", True))
        out.append(q)
    if not out:
        raise QuestionSetError(f"{path}: no questions")
    return out


def kind_of(q: dict) -> str:
    """The question's own `kind` (the question bank's kinds) when it has one, else what its
    shape says: unanswerable, follow-up or single-turn."""
    if q.get("kind"):
        return str(q["kind"])
    if not q.get("answerable", True):
        return "unanswerable"
    return "follow-up" if q.get("history") else "single-turn"


def language_of(q: dict) -> str:
    if q.get("language") in ("zh-Hans", "zh-Hant", "en"):
        return q["language"]
    try:
        from ingest.script import detect_script

        return detect_script(q["question"])
    except ImportError:
        return "unknown"
