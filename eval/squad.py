"""SQuAD-format benchmarks (SQuAD v1.1/v2, CMRC 2018, DRCD): load, sample, convert, index.

A file is `data[].paragraphs[].context/qas[].id/question/answers[].text`. Each
paragraph becomes one document of a benchmark corpus; a retrieved chunk is a hit
when it comes from the question's own paragraph and contains a gold answer
(normalised, see eval.normalize).
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path


class SquadFormatError(ValueError):
    pass


@dataclass
class Paragraph:
    key: str  # "a{article}p{paragraph}", stable for a given file
    title: str
    context: str


@dataclass
class Question:
    id: str
    question: str
    answers: list[str]  # distinct reference texts; any one counts
    paragraph: str  # Paragraph.key
    answerable: bool = True


@dataclass
class SquadSet:
    path: str
    sha256: str
    paragraphs: dict[str, Paragraph] = field(default_factory=dict)
    questions: list[Question] = field(default_factory=list)


def load_squad(path: str | Path) -> SquadSet:
    """Read a SQuAD-format file; raises SquadFormatError naming the file and the bad element."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SquadFormatError(f"{path}: not a UTF-8 JSON file ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise SquadFormatError(f"{path}: expected an object with a 'data' list (SQuAD format)")
    out = SquadSet(path=str(path), sha256=hashlib.sha256(raw).hexdigest())
    seen_ids: set[str] = set()
    for ai, article in enumerate(data["data"]):
        where = f"{path}: data[{ai}]"
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise SquadFormatError(f"{where}: expected an object with a 'paragraphs' list")
        title = str(article.get("title") or "")
        for pi, para in enumerate(article["paragraphs"]):
            pwhere = f"{where}.paragraphs[{pi}]"
            context = para.get("context") if isinstance(para, dict) else None
            if not isinstance(context, str) or not context.strip():
                raise SquadFormatError(f"{pwhere}: missing or empty 'context'")
            key = f"a{ai}p{pi}"
            out.paragraphs[key] = Paragraph(key, title, context)
            for qi, qa in enumerate(para.get("qas") or []):
                qwhere = f"{pwhere}.qas[{qi}]"
                if not isinstance(qa, dict) or not str(qa.get("question") or "").strip():
                    raise SquadFormatError(f"{qwhere}: missing 'question'")
                qid = str(qa.get("id") or f"{key}q{qi}")
                if qid in seen_ids:
                    raise SquadFormatError(f"{qwhere}: duplicate id {qid!r}")
                seen_ids.add(qid)
                answers = []
                for ans in qa.get("answers") or []:
                    text = (ans.get("text") if isinstance(ans, dict) else ans) or ""
                    if isinstance(text, str) and text.strip() and text not in answers:
                        answers.append(text)
                impossible = bool(qa.get("is_impossible")) or not answers
                out.questions.append(Question(qid, qa["question"].strip(), answers, key, not impossible))
    if not out.questions:
        raise SquadFormatError(f"{path}: no questions found")
    return out


def stratified_sample(questions: list[Question], limit: int | None, seed: int = 0) -> list[Question]:
    """A reproducible sample spread over paragraphs.

    Paragraphs are shuffled with `seed`; we take one question from each in turn,
    then a second from each, ... so a sample of N <= #paragraphs has N distinct
    paragraphs. Returned in file order (stable output regardless of seed order).
    """
    if limit is None or limit >= len(questions):
        return list(questions)
    rng = random.Random(seed)
    by_para: dict[str, list[int]] = {}
    for i, q in enumerate(questions):
        by_para.setdefault(q.paragraph, []).append(i)
    keys = sorted(by_para)
    rng.shuffle(keys)
    for k in keys:
        rng.shuffle(by_para[k])
    chosen: list[int] = []
    depth = 0
    while len(chosen) < limit:
        for k in keys:
            if depth < len(by_para[k]):
                chosen.append(by_para[k][depth])
                if len(chosen) == limit:
                    break
        depth += 1
    return [questions[i] for i in sorted(chosen)]


# --- script conversion (a DRCD-style Traditional file from CMRC, or back) ---


def _converter(to: str):
    import opencc

    # s2twp: Taiwan standard with Taiwanese phrasing (软件->軟體), as DRCD text reads.
    configs = {"zh-Hant": "s2twp", "zh-Hans": "tw2sp"}
    if to not in configs:
        raise ValueError(f"--to must be one of {sorted(configs)}")
    return opencc.OpenCC(configs[to]).convert


def convert_file(src: str | Path, dst: str | Path, to: str = "zh-Hant") -> dict:
    """Convert every text field of a SQuAD file to another script; answer_start re-derived."""
    conv = _converter(to)
    data = json.loads(Path(src).read_text(encoding="utf-8-sig"))
    n_q = n_moved = 0
    for article in data["data"]:
        if "title" in article:
            article["title"] = conv(article["title"])
        for para in article["paragraphs"]:
            old_ctx = para["context"]
            para["context"] = ctx = conv(old_ctx)
            for qa in para.get("qas", []):
                n_q += 1
                qa["question"] = conv(qa["question"])
                for ans in qa.get("answers", []):
                    old_start = ans.get("answer_start", -1)
                    ans["text"] = conv(ans["text"])
                    if isinstance(old_start, int) and old_start >= 0:
                        # Phrase conversion can change lengths, so recompute the offset.
                        start = len(conv(old_ctx[:old_start]))
                        if ctx[start : start + len(ans["text"])] != ans["text"]:
                            start = ctx.find(ans["text"])
                            n_moved += 1
                        ans["answer_start"] = start
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return {"questions": n_q, "offsets_searched": n_moved, "out": str(dst)}


# --- the benchmark corpus and its cached index ---


def settings_fingerprint(settings) -> dict:
    """Settings that change what an index contains or how it ranks."""
    return {
        "embed_model": settings.embed_model,
        "chunk_size": settings.chunk_size,
        "chunk_overlap": settings.chunk_overlap,
        "fusion": settings.fusion,
        "ann_threshold": settings.ann_threshold,
        "index_backend": getattr(settings, "index_backend", "faiss"),
    }


def paragraph_filename(key: str) -> str:
    return f"{key}.txt"


def write_corpus(squad: SquadSet, keys: list[str], corpus_dir: Path) -> list[Path]:
    """One .txt document per paragraph, with the header lines ingest reads (title, source)."""
    corpus_dir.mkdir(parents=True, exist_ok=True)
    name = Path(squad.path).name
    paths = []
    for key in keys:
        p = squad.paragraphs[key]
        path = corpus_dir / paragraph_filename(key)
        title = p.title.replace("\n", " ").strip() or key
        path.write_text(f"source: {name}#{key}\ntitle: {title}\n\n{p.context.strip()}\n", encoding="utf-8")
        paths.append(path)
    return paths


def cache_key(squad: SquadSet, keys: list[str], settings) -> str:
    h = hashlib.sha256()
    h.update(squad.sha256.encode())
    h.update("\n".join(keys).encode())
    h.update(json.dumps(settings_fingerprint(settings), sort_keys=True, default=str).encode())
    return h.hexdigest()[:20]


def benchmark_index(squad: SquadSet, keys: list[str], settings, progress=None, rebuild: bool = False):
    """The CorpusIndex of these paragraphs, built once and cached by file hash + paragraphs + settings.

    Returns (index, settings_for_that_corpus, cache_dir, built: bool).
    """
    from index import IndexError_, build_index, open_index

    root = Path(settings.cache_dir) / "eval" / f"{Path(squad.path).stem}-{cache_key(squad, keys, settings)}"
    corpus_dir, index_dir = root / "corpus", root / "index"
    bench_settings = settings.replace(corpus_dir=corpus_dir, index_dir=index_dir)
    if index_dir.exists() and not rebuild:
        try:
            return open_index(index_dir, bench_settings), bench_settings, root, False
        except IndexError_:
            pass  # stale or damaged cache: rebuild below
    if corpus_dir.exists():
        shutil.rmtree(corpus_dir)
    paths = write_corpus(squad, keys, corpus_dir)
    idx = build_index(paths, bench_settings, index_dir=index_dir, progress=progress)
    return idx, bench_settings, root, True


def paragraph_of_doc(doc_id: str) -> str:
    """Paragraph key of a benchmark document id ("a12p0.txt" or ".../a12p0.txt")."""
    name = doc_id.rsplit("/", 1)[-1]
    return name[:-4] if name.endswith(".txt") else name
