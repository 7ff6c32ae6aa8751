"""Choose the hybrid fusion by measurement: RRF vs normalised weighted sum, and BM25 tokenisers.

For each SQuAD-format file (CMRC 2018 dev in Simplified, the same converted to
Traditional with OpenCC s2twp, an English file) the paragraphs are indexed with the
real pipeline (eval.squad.benchmark_index -> index.build_index, cached), every
question is embedded once, and each fusion variant re-ranks the same candidate pools.
A hit is a chunk of the question's own paragraph that contains a gold answer
(the eval package's definition). Weights are tuned on a 1,000-question stratified
sample of CMRC (seed 1) and reported on the other questions ("held-out") and on all.

    .venv/bin/python bench/index_fusion.py [--file NAME=PATH ...] [--out bench/results/index_fusion.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import settings as settings_mod  # noqa: E402

settings_mod.apply_offline_defaults()

from eval.metrics import evidence_matcher  # noqa: E402
from eval.squad import benchmark_index, convert_file, load_squad, paragraph_of_doc, stratified_sample  # noqa: E402
from index.corpus import candidate_pool  # noqa: E402
from index.hybrid import Fusion  # noqa: E402
from index.keyword import KeywordIndex  # noqa: E402
from index.stores import assemble_pool  # noqa: E402
from index.text import chunk_tokens, normalize, tokenize  # noqa: E402
from eval.shared_bench import bench_file  # noqa: E402
from keep_summary import portable  # noqa: E402

CMRC = bench_file("cmrc2018_dev.json")  # the shared benchmark folder (eval/shared_bench.py)
DEPTH = 50


def tokenizers():
    """BM25 tokeniser variants: (name, passage tokeniser, query tokeniser)."""
    def words(t):
        return tokenize(t, bigrams=False)

    def search_words(t):  # jieba's search mode also emits the sub-words of long words
        import re
        import jieba

        return [w for w in jieba.lcut_for_search(normalize(t)) if re.search(r"\w", w)]

    return [
        ("words", lambda c: words(c.text), words),
        ("words+bigrams", lambda c: tokenize(c.text), tokenize),
        ("search-words+bigrams", lambda c: tokenize(c.text),
         lambda t: search_words(t) + [x for x in tokenize(t) if x.startswith("\u00a7")]),
        ("words+bigrams+title", chunk_tokens, tokenize),
    ]


class ZFusion(Fusion):
    """Variant: z-score instead of min-max normalisation over the candidate pool."""

    def fuse(self, c):
        def z(x):
            sd = float(np.std(x))
            return (x - np.mean(x)) / sd if sd > 1e-12 else np.zeros_like(x)

        return self.dense_weight * z(c.dense_scores) + (1 - self.dense_weight) * z(c.bm25_scores)


def fusions():
    out = [("rrf k=60", Fusion("rrf", rrf_k=60)), ("rrf k=5", Fusion("rrf", rrf_k=5))]
    for w in (0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7):
        out.append((f"weighted w_dense={w}", Fusion("weighted", dense_weight=w)))
    for w in (0.4, 0.5, 0.6):
        out.append((f"weighted-z w_dense={w}", ZFusion("weighted", dense_weight=w)))
    return out


def query_vectors(index, texts: list[str], path: Path) -> np.ndarray:
    """Query embeddings, cached per file and model (embedding 3k questions takes minutes here)."""
    import hashlib

    key = hashlib.sha256(("\n".join(texts) + index.embedder.model_id).encode()).hexdigest()[:16]
    cache = Path(index.settings.cache_dir) / "bench" / f"qvecs-{path.stem}-{key}.npy"
    if cache.exists():
        return np.load(cache)
    vecs = index.embed_queries(texts)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, vecs)
    return vecs


def metrics(ranks: list[int | None]) -> dict:
    r = np.array([x if x else 10**9 for x in ranks])
    return {"n": len(ranks), "hit@1": float(np.mean(r <= 1)), "hit@3": float(np.mean(r <= 3)),
            "hit@5": float(np.mean(r <= 5)),
            "mrr@10": float(np.mean(np.where(r <= 10, 1.0 / np.minimum(r, 10**9), 0.0)))}


def first_relevant(order_rows, relevant) -> int | None:
    for n, row in enumerate(order_rows[:10], 1):
        if relevant(row):
            return n
    return None


def evaluate(name: str, path: Path, settings, tune_ids: set | None) -> dict:
    squad = load_squad(path)
    questions = [q for q in squad.questions if q.answerable]
    t0 = time.perf_counter()
    index, *_ = benchmark_index(squad, list(squad.paragraphs), settings)
    print(f"[{name}] index: {index.stats()['chunks']} chunks ({time.perf_counter() - t0:.0f}s)", flush=True)
    store = index.store  # the default (FAISS) store: row-aligned chunks and vectors
    chunks = store.chunks
    row_of = {c.chunk_id: r for r, c in enumerate(chunks)}
    vectors = store.dense.vectors(store.labels)
    texts = [q.question for q in questions]
    t0 = time.perf_counter()
    qvecs = query_vectors(index, texts, path)
    dense_lists = [[(row_of[c.chunk_id], s) for c, s in dl] for dl in index.dense_search(qvecs, DEPTH)]
    print(f"[{name}] {len(texts)} queries embedded + dense search ({time.perf_counter() - t0:.0f}s)", flush=True)

    def relevant_fn(q):
        match = evidence_matcher(answers=q.answers)
        return lambda row: paragraph_of_doc(chunks[row].doc_id) == q.paragraph and match(chunks[row].text)

    relevant = [relevant_fn(q) for q in questions]
    heldout = [i for i, q in enumerate(questions) if tune_ids is None or q.id not in tune_ids]
    tune = [i for i, q in enumerate(questions) if tune_ids is not None and q.id in tune_ids]
    result = {"file": str(path), "questions": len(questions), "chunks": len(chunks), "variants": {}}
    ranks_dense = [first_relevant([r for r, _ in dl], rel) for dl, rel in zip(dense_lists, relevant)]
    for tok_name, tok_passage, tok_query in tokenizers():
        t0 = time.perf_counter()
        keyword = KeywordIndex([tok_passage(c) for c in chunks])
        pools, ranks_bm25 = [], []
        for i, q in enumerate(questions):
            rows, _, all_scores = keyword.search(tok_query(q.question), DEPTH)
            pool = assemble_pool(  # rows serve as labels here
                dense_lists[i], [(int(r), float(all_scores[r])) for r in rows],
                dense_of_missing=lambda ls, v=qvecs[i]: vectors[np.asarray(ls)] @ v,
                bm25_of=lambda ls, a=all_scores: a[np.asarray(ls, dtype=np.int64)],
                chunk_of=lambda ls: [chunks[r] for r in ls])
            pools.append((candidate_pool(pool), pool.labels))
            ranks_bm25.append(first_relevant(list(rows), relevant[i]))
        variants = {"dense": ranks_dense, "bm25": ranks_bm25}
        for f_name, fusion in fusions():
            variants[f_name] = [
                first_relevant([int(labels[j]) for j, _ in fusion.rank(p, 10)], rel)
                for (p, labels), rel in zip(pools, relevant)
            ]
        for v_name, ranks in variants.items():
            entry = {"all": metrics(ranks)}
            if tune:
                entry["tune"] = metrics([ranks[i] for i in tune])
                entry["heldout"] = metrics([ranks[i] for i in heldout])
            result["variants"][f"{tok_name} | {v_name}"] = entry
        print(f"[{name}] tokenizer {tok_name} ({time.perf_counter() - t0:.0f}s)", flush=True)
    return result


def print_table(name: str, res: dict, split: str) -> None:
    print(f"\n{name} ({res['questions']} questions, {res['chunks']} chunks) -- {split}")
    print(f"{'tokenizer | method':48} {'hit@1':>7} {'hit@5':>7} {'mrr@10':>7}")
    for v, e in res["variants"].items():
        m = e.get(split, e["all"])
        print(f"{v:48} {m['hit@1']:7.4f} {m['hit@5']:7.4f} {m['mrr@10']:7.4f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--file", action="append", default=[], help="NAME=PATH (SQuAD format); default: cmrc + trad")
    ap.add_argument("--out", type=Path, default=REPO / "build" / "bench" / "index_fusion.json",
                    help="results file to merge into (default: untracked; bench/results/index_fusion.json is the kept one)")
    # (--markdown alone prints the README table from the saved results)
    args = ap.parse_args()
    settings = settings_mod.load_settings()
    files = dict(f.split("=", 1) for f in args.file)
    if not files:
        trad = Path(settings.cache_dir) / "bench" / "cmrc2018_dev.zh-Hant.json"
        if not trad.exists():
            convert_file(CMRC, trad, to="zh-Hant")
        files = {"cmrc-simplified": str(CMRC), "cmrc-traditional": str(trad)}
    # Tuning sample: CMRC question ids, so the same questions are held out in every script.
    cmrc = load_squad(CMRC)
    tune_ids = {q.id for q in stratified_sample([q for q in cmrc.questions if q.answerable], 1000, seed=1)}
    out = {}
    for name, path in files.items():
        res = evaluate(name, Path(path), settings, tune_ids if "cmrc" in name else None)
        out[name] = res
        for split in (["tune", "heldout", "all"] if "cmrc" in name else ["all"]):
            print_table(name, res, split)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(args.out.read_text()) if args.out.exists() else {}
    old.update(out)
    args.out.write_text(portable(json.dumps(old, ensure_ascii=False, indent=1)))
    print(f"\nsaved {args.out}")



def markdown(path: Path = REPO / "bench" / "results" / "index_fusion.json") -> str:
    """The fusion table of index/README.md, from the saved results."""
    res = json.loads(path.read_text())
    cols = [("cmrc-simplified", "heldout", "CMRC held-out"), ("cmrc-simplified", "all", "CMRC all"),
            ("cmrc-traditional", "all", "Traditional"), ("english", "all", "English")]
    rows = ["dense", "bm25", "rrf k=60", "rrf k=5", "weighted w_dense=0.4", "weighted w_dense=0.55",
            "weighted w_dense=0.7", "weighted-z w_dense=0.5"]
    head = "| tokens: words+bigrams+title | " + " | ".join(
        f"{label} ({res[f][split]['n'] if split in res[f] else res[f]['variants']['words+bigrams+title | dense'][split]['n']})"
        for f, split, label in cols if f in res) + " |"
    lines = [head.replace("(", "n=").replace(")", ""), "|---" * (1 + sum(f in res for f, _, _ in cols)) + "|"]
    for row in rows:
        cells = []
        for f, split, _ in cols:
            if f in res:
                m = res[f]["variants"][f"words+bigrams+title | {row}"][split]
                cells.append(f"{m['hit@1']:.4f} / {m['hit@5']:.4f} / {m['mrr@10']:.4f}")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:] == ["--markdown"]:
        print(markdown())
    else:
        main()
