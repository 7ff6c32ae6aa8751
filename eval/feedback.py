"""`python -m eval feedback LOG --out QUESTIONS.jsonl`: the app's votes -> a question set.

Thumbs-up: the answer was right, so its cited quotes become the expected answer
(any one quote counts) and the gold evidence. Thumbs-down: written to
<out>.review.jsonl with the bad answer, for a person to fill in `answers`/`gold`
(or mark `answerable: false`) and move into a question set.
Later votes on the same question (normalised) replace earlier ones.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from eval.normalize import normalize

UP = {"up", "+1", "1", "true", "good", "thumbs_up", "like", "yes"}
DOWN = {"down", "-1", "0", "false", "bad", "thumbs_down", "dislike", "no"}


def _vote(raw) -> str | None:
    if isinstance(raw, bool):
        return "up" if raw else "down"
    v = str(raw).strip().lower()
    return "up" if v in UP else "down" if v in DOWN else None


def feedback_to_questions(log_path, out_path) -> dict:
    log_path, out_path = Path(log_path), Path(out_path)
    latest: dict[str, dict] = {}
    bad_lines = 0
    for line in log_path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            question = str(item["question"]).strip()
            vote = _vote(item.get("vote"))
        except (json.JSONDecodeError, KeyError, TypeError):
            bad_lines += 1
            continue
        if not question or vote is None:
            bad_lines += 1
            continue
        item["vote"] = vote
        key = normalize(question) + "\n" + json.dumps(item.get("history") or [], ensure_ascii=False)
        latest[key] = item  # file order = time order: the last vote wins

    good, review = [], []
    for key, item in latest.items():
        qid = "fb-" + hashlib.sha1(key.encode("utf-8")).hexdigest()[:10]
        cites = [c for c in item.get("citations") or [] if isinstance(c, dict)]
        quotes = list(dict.fromkeys(q for q in (str(c.get("quote") or "").strip() for c in cites) if q))
        base = {"id": qid, "question": item["question"].strip()}
        if item.get("history"):
            base["history"] = item["history"]
        if item["vote"] == "up" and quotes:
            good.append({**base, "answers": quotes, "gold": quotes, "source": "feedback:up",
                         "time": item.get("time")})
        else:
            review.append({**base, "flag": "review", "vote": item["vote"], "answer": item.get("answer", ""),
                           "cited": [c.get("chunk_id") for c in cites], "time": item.get("time"),
                           "why": "thumbs-down" if item["vote"] == "down" else "thumbs-up without cited quotes"})

    out_path.parent.mkdir(parents=True, exist_ok=True)
    review_path = out_path.with_suffix(".review.jsonl")
    for path, rows in ((out_path, good), (review_path, review)):
        with open(path, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return {"questions": len(good), "for_review": len(review), "skipped_lines": bad_lines,
            "out": str(out_path), "review": str(review_path)}
