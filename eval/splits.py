"""The training files of the shared benchmark folder (eval/shared_bench.py) and ClusterQA's own split of them, by article.

Everything ClusterQA fits or trains (the reader, its answerability threshold, the fusion
weights) uses only these files; `cmrc2018_dev.json` and data/questions/dev.jsonl are
evaluation-only. Each file's articles are ordered by the sha1 of their title and the first
`HELD_OUT_SHARE` of them are held out (model selection, calibration and the held-out
figures); SQuAD part A and both XQuAD files share their articles, so they are split
together by title. Traditional DRCD is converted to Simplified (documents are canonical
Simplified; questions are converted before reading), answers re-located after conversion.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

from eval.shared_bench import bench_dir

HELD_OUT_SHARE = 0.2
SQUAD_HELD_OUT_ARTICLES = 6  # of 24: about 1,300 SQuAD and 150 XQuAD questions

TRAINING_FILES = {
    "cmrc_trial": "cmrc2018_trial.json",
    "drcd": "drcd_dev.json",
    "squad": "squad_dev_part_a.json",
    "xquad_en": "xquad_part_a.en.json",
    "xquad_zh": "xquad_part_a.zh.json",
}
EVALUATION_ONLY = ("cmrc2018_dev.json", "data/questions/dev.jsonl")


@dataclass
class QA:
    source: str  # key of TRAINING_FILES
    article: str  # article title: the unit of the split
    paragraph: int  # paragraph index within the article
    context: str
    question: str
    answers: list[tuple[str, int]]  # (text, char start in context), verified
    qid: str
    language: str  # "zh" | "en" of the context


def file_hashes(directory: Path | None = None) -> dict[str, str]:
    d = Path(directory or bench_dir())
    return {name: hashlib.sha256((d / name).read_bytes()).hexdigest() for name in TRAINING_FILES.values()}


def _order_key(title: str) -> str:
    return hashlib.sha1(title.encode("utf-8")).hexdigest()


def held_out_articles(source: str, titles: list[str]) -> set[str]:
    titles = sorted(set(titles), key=_order_key)
    n = SQUAD_HELD_OUT_ARTICLES if source.startswith(("squad", "xquad")) else math.ceil(HELD_OUT_SHARE * len(titles))
    return set(titles[:n])


def load(source: str, directory: Path | None = None) -> list[QA]:
    from ingest.script import to_simplified

    path = Path(directory or bench_dir()) / TRAINING_FILES[source]
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    language = "en" if source in ("squad", "xquad_en") else "zh"
    out = []
    for article in data:
        title = article.get("title", "")
        for p, para in enumerate(article["paragraphs"]):
            context = para["context"]
            simple = to_simplified(context) if source == "drcd" else context
            for qa in para["qas"]:
                answers = []
                for a in qa.get("answers", []):
                    text, start = a["text"], int(a.get("answer_start", -1))
                    if source == "drcd":
                        text, start = _relocate(to_simplified(text), simple, start)
                    if start < 0 or simple[start:start + len(text)] != text:
                        found = simple.find(text)
                        start = found
                    if start >= 0 and text.strip():
                        answers.append((text, start))
                if not answers:
                    continue
                question = to_simplified(qa["question"]) if source == "drcd" else qa["question"]
                out.append(QA(source, title, p, simple, question, answers, qa["id"], language))
    return out


def _relocate(text: str, context: str, start: int) -> tuple[str, int]:
    """The occurrence of `text` in the converted context nearest the original offset."""
    best, pos = -1, context.find(text)
    while pos >= 0:
        if best < 0 or abs(pos - start) < abs(best - start):
            best = pos
        pos = context.find(text, pos + 1)
    return text, best


def split(source: str, rows: list[QA], part: str) -> list[QA]:
    """`part` = "train" or "held_out"."""
    group = "squad" if source.startswith(("squad", "xquad")) else source
    held = held_out_articles(group, [r.article for r in rows] if group == source else _squad_titles())
    keep = (lambda r: r.article in held) if part == "held_out" else (lambda r: r.article not in held)
    return [r for r in rows if keep(r)]


def _squad_titles() -> list[str]:
    data = json.loads((bench_dir() / TRAINING_FILES["squad"]).read_text(encoding="utf-8"))["data"]
    return [a["title"] for a in data]


def cross_pairs(en: list[QA], zh: list[QA]) -> list[QA]:
    """XQuAD's translated pairs recombined: English question over the Chinese paragraph and
    Chinese question over the English paragraph (same ids; the answer is in the paragraph's language)."""
    zh_by_id = {r.qid: r for r in zh}
    out = []
    for e in en:
        z = zh_by_id.get(e.qid)
        if z is None:
            continue
        out.append(QA("xquad_en>zh", e.article, e.paragraph, z.context, e.question, z.answers, e.qid + "#en>zh", "zh"))
        out.append(QA("xquad_zh>en", e.article, e.paragraph, e.context, z.question, e.answers, e.qid + "#zh>en", "en"))
    return out


def write_squad(rows: list[QA], path: Path, question_language: str | None = None) -> Path:
    """A SQuAD-format file of these questions (one article per title, paragraphs deduplicated)."""
    articles: dict[str, dict[str, dict]] = {}
    for r in rows:
        paras = articles.setdefault(r.article, {})
        para = paras.setdefault(r.context, {"context": r.context, "qas": []})
        para["qas"].append({"id": r.qid, "question": r.question,
                            "answers": [{"text": t, "answer_start": s} for t, s in r.answers]})
    data = {"version": "clusterqa-split", "data": [
        {"title": t, "paragraphs": list(paras.values())} for t, paras in articles.items()]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path
