"""Scale: 100k- and 1M-chunk indexes on the default backend and on Qdrant; CMRC parity of the two.

    .venv/bin/python bench/scale.py parity                       # CMRC 2018 dev, FAISS vs Qdrant local mode
    .venv/bin/python bench/scale.py run --backend faiss --sizes 100000
    .venv/bin/python bench/scale.py run --backend faiss --sizes 1000000 --dense-only
    .venv/bin/python bench/scale.py run --backend faiss --sizes 1000000 --large [--build-dir D [--build-only]]
    .venv/bin/python bench/scale.py run --backend edge --sizes 100000
    .venv/bin/python bench/scale.py run --backend qdrant-local --sizes 10000

Results are merged into build/bench/scale.json (untracked), or with `--out bench/results/scale.json`
into the kept one (one entry per backend and size).

**Parity** takes eval's CMRC benchmark index (eval.squad.benchmark_index: every paragraph a
document, the real model and pipeline; FAISS), writes the same documents, chunks, vectors
and BM25 tokens to a Qdrant local-mode collection, and retrieves every question through both
with eval's retrieval pass (eval.squad_bench.retrieval_pass, its hit rule): hit@1 / hit@5 /
MRR@10 per mode and their differences. Same chunks, same fusion; only the store differs.

**Data for the size runs** (each size in its own child process, so its peak RSS is its own):
- text: real CMRC 2018 dev sentences recombined into chunks of 250-350 characters (runs of
  consecutive real sentences from random starting points: the same real text replicated with
  perturbation, as bench/index_speed.py); BM25 tokens are the concatenated tokens of their
  sentences (each real sentence tokenised once with index.text.tokenize);
- vectors: synthetic -- each chunk's vector is a*v_i + (1-a)*v_j + N(0, 0.02) renormalised,
  v_i, v_j two of the 1,251 real passage vectors of the CMRC benchmark index, a ~ U(0.5, 1);
  generated block by block from fixed seeds, so the exact-search reference is recomputed
  from the same vectors without holding them all (embedding 1M chunks would take ~10 h here);
- queries: 100 real CMRC questions, embedded with the real model; "with embedding" latency
  embeds each query, "index only" starts from the query vector.

Measured: build time (store build; Edge: upsert + optimize), peak RSS of the child
(ru_maxrss: model + index + queries), hybrid p50/p95 with and without the query embedding,
dense recall@10 of the (approximate) index against exact search over the same vectors, and
hybrid recall@10: the hybrid top 10 against the hybrid top 10 computed from exact dense lists.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import settings as settings_mod  # noqa: E402

settings_mod.apply_offline_defaults()
# as app.py does: idle torch threads otherwise spin and, on shared cores, single-query embedding
# goes from ~20 ms to ~170 ms (measured here at load 2)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from eval.shared_bench import bench_file  # noqa: E402
from keep_summary import portable  # noqa: E402

CMRC = bench_file("cmrc2018_dev.json")  # the shared benchmark folder (eval/shared_bench.py)
OUT = REPO / "build" / "bench" / "scale.json"  # untracked; --out bench/results/scale.json updates the kept results
BLOCK = 50_000
N_QUERIES = 100
DEPTH = 50


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pct(values, q) -> float:
    return round(float(np.percentile(np.asarray(values) * 1000, q)), 2)


def load_average() -> list:
    return [round(x, 2) for x in os.getloadavg()]


def merge_result(key: str, entry: dict) -> None:
    old = json.loads(OUT.read_text()) if OUT.exists() else {}
    old[key] = entry
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(portable(json.dumps(old, ensure_ascii=False, indent=1)))


# --- parity --------------------------------------------------------------------------------

def _parity_questions(limit, path=CMRC):
    from eval.squad import load_squad, stratified_sample

    squad = load_squad(Path(path))
    return squad, [q for q in stratified_sample(squad.questions, limit, 0) if q.answerable]


def _rank_summary(records) -> dict:
    ranks = [r["rank"] for r in records]
    r = np.array([x if x else 10**9 for x in ranks], dtype=np.float64)
    return {"n": len(ranks), "hit@1": round(float(np.mean(r <= 1)), 4), "hit@5": round(float(np.mean(r <= 5)), 4),
            "mrr@10": round(float(np.mean(np.where(r <= 10, 1.0 / r, 0.0))), 4)}


def parity(args) -> None:
    """The CMRC benchmark index (eval's, FAISS) and the same chunks, vectors and tokens written
    to a Qdrant local-mode collection; every question retrieved through both."""
    import shutil

    from eval.squad import benchmark_index
    from eval.squad_bench import retrieval_pass
    from index.corpus import CorpusIndex
    from index.qdrant_store import QdrantStore, close_clients

    squad, questions = _parity_questions(args.limit, args.file)
    base = settings_mod.load_settings()
    out = {"benchmark": Path(args.file).name, "questions": len(questions), "load_before": load_average(), "backends": {}}
    t0 = time.perf_counter()
    index, bench_settings, _, built = benchmark_index(squad, sorted(squad.paragraphs), base.replace(index_backend="faiss"))
    store = index.store
    out["faiss_index"] = {"chunks": store.count(), "built_now": built, "s": round(time.perf_counter() - t0, 1)}

    qdir = Path(base.cache_dir) / "bench" / "parity-qdrant"
    shutil.rmtree(qdir, ignore_errors=True)
    qsettings = bench_settings.replace(index_backend="qdrant", qdrant_path=str(qdir / "qdrant"), qdrant_collection="cmrc")
    t0 = time.perf_counter()
    QdrantStore.create(qsettings, qdir, store.documents(), store.chunks, store.tokens,
                       store.dense.vectors(store.labels), store.files(), dict(index.manifest))
    close_clients()  # the children open the folder (local mode: one process per folder)
    out["qdrant_index"] = {"chunks": len(store.chunks), "s": round(time.perf_counter() - t0, 1), "path": str(qdir)}

    modes = args.modes.split(",")
    t0 = time.perf_counter()
    faiss_records = {m: retrieval_pass(index, questions, m, top_k=10, progress=False)[0] for m in modes}
    out["backends"]["faiss"] = {m: _rank_summary(faiss_records[m]) for m in modes}
    out["backends"]["faiss"]["seconds"] = round(time.perf_counter() - t0, 1)
    print("faiss", json.dumps(out["backends"]["faiss"]), flush=True)
    del index, store

    # Qdrant local mode scores sparse vectors in Python (~0.2 s a query here): split the
    # questions over worker processes, each with its own copy of the collection folder.
    t0 = time.perf_counter()
    procs = []
    for part in range(args.workers):
        path = qdir / "qdrant" if part == 0 else qdir / f"qdrant-copy{part}"
        if part:
            shutil.copytree(qdir / "qdrant", path)
        cmd = [sys.executable, __file__, "_parity_part", "--part", str(part), "--parts", str(args.workers),
               "--qdrant-path", str(path), "--index-dir", str(qdir), "--modes", args.modes, "--file", str(args.file)]
        if args.limit:
            cmd += ["--limit", str(args.limit)]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
    records = {m: [None] * len(questions) for m in modes}
    for part, p in enumerate(procs):
        got = json.loads(p.communicate()[0].strip().splitlines()[-1])
        if p.returncode:
            raise SystemExit(f"parity worker failed ({p.returncode})")
        for m in modes:
            for j, r in enumerate(got[m]):
                records[m][part + j * args.workers] = r
    out["backends"]["qdrant"] = {m: _rank_summary(records[m]) for m in modes}
    out["backends"]["qdrant"]["seconds"] = round(time.perf_counter() - t0, 1)
    out["backends"]["qdrant"]["workers"] = args.workers
    print("qdrant", json.dumps(out["backends"]["qdrant"]), flush=True)
    out["same_top10_lists"] = {  # per question: the same 10 chunks in the same order
        m: round(float(np.mean([a["retrieved"] == b["retrieved"] for a, b in zip(faiss_records[m], records[m])])), 4)
        for m in modes}
    out["same_first_relevant_rank"] = {
        m: round(float(np.mean([a["rank"] == b["rank"] for a, b in zip(faiss_records[m], records[m])])), 4)
        for m in modes}
    f, q = out["backends"]["faiss"], out["backends"]["qdrant"]
    out["difference_qdrant_minus_faiss"] = {
        m: {k: round(q[m][k] - f[m][k], 4) for k in ("hit@1", "hit@5", "mrr@10")} for m in modes}
    out["within_0.005"] = all(abs(v) <= 0.005 for d in out["difference_qdrant_minus_faiss"].values()
                              for v in d.values())
    out["load_after"] = load_average()
    out["measured_at"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    key = "parity_" + Path(args.file).stem + (f"_limit{args.limit}" if args.limit else "")
    if Path(args.file) == CMRC:
        merge_result(key, out)
    else:
        print("(not saved: not the CMRC file)")
    print(json.dumps(out["difference_qdrant_minus_faiss"]), "within 0.005:", out["within_0.005"],
          "same top-10 lists:", out["same_top10_lists"])


def parity_part(args) -> None:
    from eval.squad_bench import retrieval_pass
    from index import open_index

    _, questions = _parity_questions(args.limit, args.file)
    mine = questions[args.part::args.parts]
    s = settings_mod.load_settings().replace(index_backend="qdrant", qdrant_path=args.qdrant_path,
                                            qdrant_collection="cmrc")
    index = open_index(Path(args.index_dir), s)
    out = {m: [{"rank": r["rank"], "retrieved": r["retrieved"]}
               for r in retrieval_pass(index, mine, m, top_k=10, progress=False)[0]]
           for m in args.modes.split(",")}
    print(json.dumps(out))


# --- material ------------------------------------------------------------------------------

def base_vectors(settings) -> np.ndarray:
    """The real passage vectors of the CMRC benchmark index (built/cached by eval)."""
    from eval.squad import benchmark_index, load_squad

    squad = load_squad(CMRC)
    index, *_ = benchmark_index(squad, sorted(squad.paragraphs), settings.replace(index_backend="faiss"))
    store = index.store
    return store.dense.vectors(store.labels).astype(np.float32)


def _random_base() -> np.ndarray:
    """Plumbing checks only (--random-base): 300 random unit vectors instead of real ones."""
    x = np.random.default_rng(7).normal(size=(300, 384)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def vector_block(base: np.ndarray, start: int, n: int) -> np.ndarray:
    """Synthetic vectors start..start+n-1 (block-seeded: any process regenerates the same)."""
    assert start % BLOCK == 0
    out = []
    for b in range(start, start + n, BLOCK):
        m = min(BLOCK, start + n - b)
        rng = np.random.default_rng(1_000_003 + b // BLOCK)
        i, j = rng.integers(0, len(base), m), rng.integers(0, len(base), m)
        a = rng.uniform(0.5, 1.0, m)[:, None].astype(np.float32)
        x = a * base[i] + (1 - a) * base[j] + rng.normal(0, 0.02, (m, base.shape[1])).astype(np.float32)
        out.append((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))
    return np.concatenate(out)


def exact_top(base, n: int, qvecs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k over all n synthetic vectors, block by block."""
    best_s = np.full((len(qvecs), k), -np.inf, dtype=np.float32)
    best_l = np.full((len(qvecs), k), -1, dtype=np.int64)
    for start in range(0, n, BLOCK):
        block = vector_block(base, start, min(BLOCK, n - start))
        s = qvecs @ block.T
        top = np.argpartition(-s, min(k, s.shape[1] - 1), axis=1)[:, :k]
        cand_s = np.concatenate([best_s, np.take_along_axis(s, top, 1)], 1)
        cand_l = np.concatenate([best_l, top + start], 1)
        order = np.argsort(-cand_s, axis=1, kind="stable")[:, :k]
        best_s, best_l = np.take_along_axis(cand_s, order, 1), np.take_along_axis(cand_l, order, 1)
    return best_s, best_l


def text_material(n: int, seed: int = 0, texts: bool = True):
    """n chunks of recombined real CMRC sentences, with their BM25 tokens; 100 real questions."""
    from index.text import tokenize
    from index_speed import load_material, synth_chunks

    sentences, questions, _ = load_material()
    rng = np.random.default_rng(seed)
    queries = [questions[int(i)] for i in rng.choice(len(questions), N_QUERIES, replace=False)]
    if not texts:
        return None, None, queries
    uniq = sentences[:20000]
    sent_tokens = [tokenize(s) for s in uniq]
    texts, tokens = synth_chunks(uniq, sent_tokens, n, rng)
    return texts, tokens, queries


def label_of(chunk) -> int:
    """The synthetic chunk's number (synthetic_chunks' naming)."""
    return int(chunk.doc_id.split("/")[1][:6]) * 10 + int(chunk.chunk_id.rsplit("#", 1)[1])


def synthetic_chunks(texts):
    from ingest.records import Chunk

    out = []
    for n, t in enumerate(texts):
        doc_id = f"synthetic/{n // 10:06d}.txt"
        out.append(Chunk(doc_id, f"{doc_id}#{n % 10}", doc_id, "", "", "", 0, len(t), t))
    return out


# --- one size in one process ----------------------------------------------------------------

def time_hybrid(run_one, queries, qvecs, embedder):
    with_emb, without = [], []
    for q, v in zip(queries, qvecs):
        t0 = time.perf_counter()
        run_one(q, v)
        without.append(time.perf_counter() - t0)
    for q in queries:
        t0 = time.perf_counter()
        run_one(q, embedder.encode_queries([q])[0])
        with_emb.append(time.perf_counter() - t0)
    return ({"p50_ms": pct(with_emb, 50), "p95_ms": pct(with_emb, 95)},
            {"p50_ms": pct(without, 50), "p95_ms": pct(without, 95)})


def one(args) -> dict:
    from index.corpus import candidate_pool, default_fusion
    from index.embedding import get_embedder
    from index.stores import assemble_pool
    from index.text import query_language, tokenize

    settings = settings_mod.load_settings()
    t0 = time.perf_counter()
    base = base_vectors(settings) if not args.random_base else _random_base()
    texts, tokens, queries = text_material(args.size, texts=not (args.dense_only or args.prebuilt))
    embedder = get_embedder(settings)
    for q in queries[:5]:
        embedder.encode_queries([q])
    qvecs = embedder.encode_queries(queries).astype(np.float32)
    truth_s, truth_l = exact_top(base, args.size, qvecs, DEPTH)
    material_s = time.perf_counter() - t0
    fusion = default_fusion(settings)
    entry = {"size": args.size, "backend": args.backend, "material_s": round(material_s, 1),
             "load_before": load_average(), "cpus": len(os.sched_getaffinity(0))}
    query_tokens = [tokenize(q) for q in queries]

    def fuse(pool, q, k=10):
        c = candidate_pool(pool, query_language(q))
        return [int(pool.labels[j]) for j, _ in fusion.rank(c, k)] if len(pool.labels) else []

    t0 = time.perf_counter()
    if args.backend == "faiss":
        store = (open_faiss_large(args, settings, embedder) if args.prebuilt
                 else build_faiss(args, settings, embedder, base, texts, tokens))
        dense = store if args.dense_only else store.dense
        entry["index_type"] = dense.index_type
        search_dense = lambda v, k: [int(l) for l in dense.search(v[None], k)[1][0] if l >= 0]  # noqa: E731
        candidates = lambda q, v, toks: store.candidates(v, toks, DEPTH)  # noqa: E731

        def reference(i):
            rows, scores, all_scores = store.keyword.search(query_tokens[i], DEPTH)  # public KeywordIndex API
            row = store.row_of_label
            return assemble_pool(
                list(zip(truth_l[i].tolist(), truth_s[i].tolist())),
                [(int(store.labels[r]), float(s)) for r, s in zip(rows, scores)],
                dense_of_missing=lambda ls: store.dense.vectors(np.asarray(ls)) @ qvecs[i],
                bm25_of=lambda ls: all_scores[np.array([row[l] for l in ls], dtype=np.int64)],
                chunk_of=lambda ls: [store.chunks[row[l]] for l in ls])
    elif args.backend == "edge":
        store = EdgeBench.build(args, base, texts, tokens)
        entry["index_type"] = "qdrant-edge hnsw"
        entry["optimize_s"] = store.optimize_s
        search_dense = lambda v, k: [l for l, _ in store.dense_top(v, k)]  # noqa: E731
        candidates = lambda q, v, toks: store.candidates(v, toks, DEPTH)  # noqa: E731
        reference = lambda i: store.candidates(qvecs[i], query_tokens[i], DEPTH,  # noqa: E731
                                               dense_list=list(zip(truth_l[i].tolist(), truth_s[i].tolist())))
    else:  # qdrant-local: the real QdrantStore in local mode
        store = build_qdrant_local(args, settings, embedder, base, texts, tokens)
        entry["index_type"] = "qdrant local (exact)"
        search_dense = lambda v, k: [label_of(c) for c, _ in store.dense_search(v[None], k)[0]]  # noqa: E731
        candidates = lambda q, v, toks: store.candidates(v, toks, DEPTH)  # noqa: E731
        reference = None
    entry["build_s"] = round(time.perf_counter() - t0, 1)
    entry["peak_rss_after_build_mb"] = round(peak_mb())

    # recall@10 of the dense side against exact search
    def dense_recall():
        rec = [len(set(search_dense(v, 10)) & set(truth_l[i][:10].tolist())) / 10 for i, v in enumerate(qvecs)]
        return round(float(np.mean(rec)), 4)

    if args.backend == "faiss" and entry["index_type"] == "ivf-sq8":
        # inverted lists probed per query: recall and speed for each, then the smallest that
        # reaches recall@10 >= 0.95 is used for the hybrid timing (index.dense.IVF_NPROBE)
        import faiss

        ivf = faiss.extract_index_ivf((store if args.dense_only else store.dense).index)
        shipped, sweep = ivf.nprobe, {}
        for nprobe in (16, 32, 48, 64, 96, 128, 192):
            ivf.nprobe = nprobe
            t0 = time.perf_counter()
            r = dense_recall()
            sweep[nprobe] = {"recall@10": r, "ms_per_query": round((time.perf_counter() - t0) * 1000 / len(qvecs), 2)}
        ok = [n for n, v in sweep.items() if v["recall@10"] >= 0.95]
        ivf.nprobe = min(ok) if ok else max(sweep)
        entry["nprobe_sweep"], entry["nprobe_shipped"], entry["nprobe_used"] = sweep, shipped, ivf.nprobe
    entry["dense_recall@10"] = dense_recall()
    if args.dense_only:
        lat = []
        for q in queries:
            t0 = time.perf_counter()
            search_dense(embedder.encode_queries([q])[0], 10)
            lat.append(time.perf_counter() - t0)
        entry["dense_with_embedding"] = {"p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95)}
    else:
        if reference is not None:
            hyb = [len(set(fuse(candidates(q, v, t), q)) & set(fuse(reference(i), q))) / 10
                   for i, (q, v, t) in enumerate(zip(queries, qvecs, query_tokens))]
            entry["hybrid_recall@10"] = round(float(np.mean(hyb)), 4)
        with_emb, without = time_hybrid(lambda q, v: fuse(candidates(q, v, tokenize(q)), q), queries, qvecs, embedder)
        entry["hybrid_with_embedding"], entry["hybrid_index_only"] = with_emb, without
    entry["load_after"] = load_average()
    entry["peak_rss_mb"] = round(peak_mb())
    return entry


def build_faiss(args, settings, embedder, base, texts, tokens):
    from index.dense import DenseIndex
    from index.stores import FaissStore

    dense = DenseIndex(embedder.dim, settings.ann_threshold, compress_threshold=settings.dense_compress_threshold)
    # train on the first blocks, then add block by block: the full float32 set is never held
    dense.prepare(args.size, train=vector_block(base, 0, min(args.size, 2 * BLOCK)))
    for start in range(0, args.size, BLOCK):
        n = min(BLOCK, args.size - start)
        dense.index.add_with_ids(vector_block(base, start, n), np.arange(start, start + n, dtype=np.int64))
    if args.dense_only:
        return dense  # the dense index alone: no chunk texts, no BM25
    return FaissStore.make({}, synthetic_chunks(texts), np.arange(args.size), tokens, dense, {}, args.size)


def synth_runs(sentences, n: int, rng):
    """(first sentence, count) per chunk: runs of consecutive real sentences of 250-350
    characters from random starts (bench/index_speed.synth_chunks' rule, without the texts)."""
    lengths = np.array([len(x) for x in sentences])
    starts = rng.integers(0, len(sentences), n)
    counts = np.empty(n, dtype=np.int64)
    m = len(sentences)
    for k, i in enumerate(starts.tolist()):
        total, c = 0, 0
        while total < 250:
            ln = int(lengths[(i + c) % m])
            if c and total + ln > 350:
                break
            total += ln
            c += 1
        counts[k] = c
    return starts, counts


def build_faiss_large(args) -> dict:
    """The 1M form of the default store, built in its own process: IVF-SQ8 vectors
    (DenseIndex), the BM25 matrix built from flat token ids and saved memory-mappable
    (index.keyword.frozen_from_term_ids), chunks written to a ChunkTable on disk."""
    from index.dense import DenseIndex
    from index.keyword import frozen_from_term_ids, save_frozen
    from index.stores import ChunkTable
    from index.text import tokenize
    from index_speed import load_material
    from ingest.records import Chunk

    settings = settings_mod.load_settings()
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    base = base_vectors(settings) if not args.random_base else _random_base()
    sentences = load_material()[0][:20000]
    vocab: dict = {}
    sent_ids = [np.fromiter((vocab.setdefault(t, len(vocab)) for t in tokenize(x)), dtype=np.int32)
                for x in sentences]
    starts, counts = synth_runs(sentences, args.size, np.random.default_rng(0))
    m = len(sentences)
    lens = np.array([len(x) for x in sent_ids], dtype=np.int64)
    tok_counts = np.array([int(lens[(np.arange(c) + i) % m].sum()) for i, c in zip(starts.tolist(), counts.tolist())])
    offsets = np.concatenate([[0], np.cumsum(tok_counts)])
    term_ids = np.empty(int(offsets[-1]), dtype=np.int32)
    for k, (i, c) in enumerate(zip(starts.tolist(), counts.tolist())):
        term_ids[offsets[k]:offsets[k + 1]] = np.concatenate([sent_ids[(i + j) % m] for j in range(c)])
    material_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    def chunk_rows():
        for k, (i, c) in enumerate(zip(starts.tolist(), counts.tolist())):
            text = "".join(sentences[(i + j) % m] for j in range(c))
            doc_id = f"synthetic/{k // 10:06d}.txt"
            yield Chunk(doc_id, f"{doc_id}#{k % 10}", doc_id, "", "", "", 0, len(text), text)
    ChunkTable.write(out_dir / "chunks.jsonl", chunk_rows())
    chunks_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    dense = DenseIndex(384, settings.ann_threshold, compress_threshold=settings.dense_compress_threshold)
    dense.prepare(args.size, train=vector_block(base, 0, min(args.size, 2 * BLOCK)))
    for start in range(0, args.size, BLOCK):
        n = min(BLOCK, args.size - start)
        dense.index.add_with_ids(vector_block(base, start, n), np.arange(start, start + n, dtype=np.int64))
    dense.save(out_dir / "dense.faiss")
    dense_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    keyword = frozen_from_term_ids(term_ids, offsets, vocab)
    del term_ids
    save_frozen(keyword, out_dir)
    bm25_s = time.perf_counter() - t0
    return {"size": args.size, "index_type": dense.index_type, "material_s": round(material_s, 1),
            "chunk_table_s": round(chunks_s, 1), "dense_build_s": round(dense_s, 1), "bm25_build_s": round(bm25_s, 1),
            "bm25_nnz": keyword.nnz, "vocab": len(vocab),
            "tokens_per_chunk": round(float(offsets[-1]) / args.size, 1),
            "disk_mb": round(sum(f.stat().st_size for f in out_dir.iterdir()) / 2**20),
            "build_peak_rss_mb": round(peak_mb()), "load": load_average()}


def open_faiss_large(args, settings, embedder):
    from index.dense import DenseIndex
    from index.keyword import load_frozen
    from index.stores import ChunkTable, FaissStore

    d = Path(args.prebuilt)
    dense = DenseIndex.load(d / "dense.faiss", embedder.dim, settings.ann_threshold, settings.dense_compress_threshold)
    keyword = load_frozen(d)
    table = ChunkTable.open(d / "chunks.jsonl")
    return FaissStore.make({}, table, np.arange(len(table)), (), dense, {}, len(table), keyword=keyword)


def build_qdrant_local(args, settings, embedder, base, texts, tokens):
    import tempfile

    from index.corpus import new_manifest
    from index.qdrant_store import QdrantStore

    chunks = synthetic_chunks(texts)
    tmp = Path(tempfile.mkdtemp(prefix="scale-qdrant-"))
    s = settings.replace(index_backend="qdrant", qdrant_path=str(tmp), qdrant_collection="scale")
    store, _ = QdrantStore.create(s, tmp, [], chunks, tokens, vector_block(base, 0, args.size), {},
                                  new_manifest(s, embedder))
    return store


class EdgeBench:
    """The Qdrant store's layout and hybrid query on Qdrant Edge (the Rust engine in process):
    same points (dense DOT + sparse BM25 with the IDF modifier, index/qdrant_store.py's
    encoding), same two-round candidate query, ClusterQA's fusion on top."""

    def __init__(self, shard, optimize_s):
        self.shard, self.optimize_s = shard, optimize_s

    @classmethod
    def build(cls, args, base, texts, tokens):
        import tempfile

        import qdrant_edge as q

        from index.keyword import B, K1
        from index.qdrant_store import token_id

        path = tempfile.mkdtemp(prefix="scale-edge-")
        cfg = q.EdgeConfig(vectors={"dense": q.EdgeVectorParams(size=base.shape[1], distance=q.Distance.Dot)},
                           sparse_vectors={"bm25": q.EdgeSparseVectorParams(modifier=q.Modifier.Idf)})
        shard = q.EdgeShard.create(path, cfg)
        ids = {}
        avgdl = float(np.mean([len(t) for t in tokens]))
        chunks = synthetic_chunks(texts)
        for start in range(0, args.size, BLOCK):
            vecs = vector_block(base, start, min(BLOCK, args.size - start))
            for lo in range(0, len(vecs), 2000):  # points made and sent 2,000 at a time (less Python memory)
                points = []
                for off in range(lo, min(lo + 2000, len(vecs))):
                    n = start + off
                    toks = tokens[n]
                    counts: dict = {}
                    for t in toks:
                        tid = ids.get(t)
                        if tid is None:
                            tid = ids[t] = token_id(t)
                        counts[tid] = counts.get(tid, 0) + 1
                    norm = K1 * ((1 - B) + B * len(toks) / avgdl)
                    ind = sorted(counts)
                    points.append(q.Point(id=n + 1, vector={
                        "dense": vecs[off].tolist(),
                        "bm25": q.SparseVector(indices=ind, values=[counts[i] / (counts[i] + norm) for i in ind])},
                        payload={"chunk": chunks[n].to_dict()}))
                shard.update(q.UpdateOperation.upsert_points(points))
        t0 = time.perf_counter()
        shard.optimize()
        return cls(shard, round(time.perf_counter() - t0, 1))

    def _req(self, query, using, k, ids=None, payload=True):
        import qdrant_edge as q

        flt = q.Filter(must=[q.HasIdCondition(point_ids=set(ids))]) if ids is not None else None
        return q.QueryRequest(limit=k, query=q.Query.Nearest(query, using=using), with_payload=payload, filter=flt)

    def dense_top(self, v, k):
        return [(int(p.id) - 1, float(p.score)) for p in self.shard.query(self._req(v.tolist(), "dense", k))]

    def candidates(self, qvec, query_tokens, depth, dense_list=None):
        import qdrant_edge as q

        from index.qdrant_store import query_sparse
        from index.stores import assemble_pool
        from ingest.records import Chunk

        ind, val = query_sparse(query_tokens)
        reqs = [] if dense_list is not None else [self._req(qvec.tolist(), "dense", depth)]
        if ind:
            reqs.append(self._req(q.SparseVector(indices=ind, values=val), "bm25", depth))
        res = self.shard.query_batch(q.QueryBatchRequest(reqs)) if reqs else []
        payload = {}
        if dense_list is None:
            dense_list = [(int(p.id) - 1, float(p.score)) for p in res[0]]
            for p in res[0]:
                payload[int(p.id) - 1] = p.payload
            res = res[1:]
        bm25_list = []
        if ind:
            bm25_list = [(int(p.id) - 1, float(p.score)) for p in res[0]]
            for p in res[0]:
                payload[int(p.id) - 1] = p.payload
        in_dense, bm25 = {l for l, _ in dense_list}, dict(bm25_list)
        need_d = [l for l, _ in bm25_list if l not in in_dense]
        need_b = [l for l, _ in dense_list if l not in bm25]
        reqs, kinds = [], []
        if need_d:
            reqs.append(self._req(qvec.tolist(), "dense", len(need_d), [l + 1 for l in need_d], False))
            kinds.append("d")
        if need_b and ind:
            reqs.append(self._req(q.SparseVector(indices=ind, values=val), "bm25", len(need_b),
                                  [l + 1 for l in need_b], False))
            kinds.append("b")
        extra = {"d": {}, "b": {}}
        if reqs:
            for kind, r in zip(kinds, self.shard.query_batch(q.QueryBatchRequest(reqs))):
                extra[kind] = {int(p.id) - 1: float(p.score) for p in r}
        bm25.update(extra["b"])
        missing_payload = [l for l, _ in dense_list if l not in payload]
        if missing_payload:
            for p in self.shard.retrieve(point_ids=[l + 1 for l in missing_payload], with_payload=True,
                                         with_vector=False):
                payload[int(p.id) - 1] = p.payload
        return assemble_pool(dense_list, bm25_list,
                             dense_of_missing=lambda ls: [extra["d"].get(l, 0.0) for l in ls],
                             bm25_of=lambda ls: [bm25.get(l, 0.0) for l in ls],
                             chunk_of=lambda ls: [Chunk.from_dict(payload[l]["chunk"]) for l in ls])


# --- driver --------------------------------------------------------------------------------

FAISS_HYBRID_MAX = 200_000  # above this the in-process BM25 + chunk catalogue does not fit (README)


def run(args) -> None:
    for size in map(int, args.sizes.split(",")):
        if args.backend == "faiss" and not (args.dense_only or args.large) and size > FAISS_HYBRID_MAX and not args.force:
            print(f"faiss hybrid at {size}: not run -- the in-process store keeps every chunk, its tokens and "
                  f"term counts in RAM (~22 KB a chunk measured at 100k: ~{size * 22 / 1e6:.0f} GB); "
                  "use --large (memory-mapped BM25, chunks on disk), --dense-only, or --force", flush=True)
            continue
        cmd = [sys.executable, __file__, "_one", "--backend", args.backend, "--size", str(size)]
        if args.dense_only:
            cmd.append("--dense-only")
        build_entry = None
        if args.backend == "faiss" and args.large and not args.dense_only:
            import tempfile

            # --build-dir keeps the build (and its figures) to query it again later, e.g. quietly
            tmp = args.build_dir or tempfile.mkdtemp(prefix="scale-faiss-large-")
            kept = Path(tmp) / f"build-{size}.json"
            if kept.exists():
                build_entry = json.loads(kept.read_text())
            else:
                bcmd = [sys.executable, __file__, "_build_large", "--size", str(size), "--out-dir", tmp]
                print(" ".join(bcmd), flush=True)
                proc = subprocess.run(bcmd, capture_output=True, text=True, timeout=args.timeout)
                if proc.returncode != 0:
                    print(proc.stderr[-3000:], file=sys.stderr)
                    raise SystemExit("large build failed")
                build_entry = json.loads(proc.stdout.strip().splitlines()[-1])
                if args.build_dir:
                    kept.write_text(json.dumps(build_entry))
            print("build", json.dumps(build_entry), flush=True)
            if args.build_only:
                continue
            cmd += ["--prebuilt", tmp]
        print(" ".join(cmd), flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            entry = {"size": size, "backend": args.backend, "failed": proc.stderr.strip().splitlines()[-1:],
                     "returncode": proc.returncode}
        else:
            entry = json.loads(proc.stdout.strip().splitlines()[-1])
        if build_entry is not None:
            entry["build"] = build_entry
            entry["form"] = "frozen: BM25 memory-mapped, chunks on disk (built in its own process)"
        entry["wall_s"] = round(time.perf_counter() - t0, 1)
        entry["measured_at"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        key = f"{args.backend}_{size}" + ("_dense_only" if args.dense_only else "") + ("_large" if args.large else "")
        merge_result(key, entry)
        print(key, json.dumps(entry), flush=True)


def main() -> None:
    global OUT
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("parity")
    p.add_argument("--limit", type=int, help="a stratified sample of N questions (default: all)")
    p.add_argument("--modes", default="hybrid,dense", help="bm25 too: local mode scores it in Python, ~0.3 s a query")
    p.add_argument("--file", default=str(CMRC))
    p.add_argument("--workers", type=int, default=2)
    pp = sub.add_parser("_parity_part")
    for name in ("--part", "--parts", "--limit"):
        pp.add_argument(name, type=int)
    for name in ("--qdrant-path", "--index-dir", "--modes", "--file"):
        pp.add_argument(name)
    r = sub.add_parser("run")
    r.add_argument("--backend", choices=("faiss", "edge", "qdrant-local"), required=True)
    r.add_argument("--sizes", default="100000")
    r.add_argument("--dense-only", action="store_true", help="the dense side only (no BM25 build)")
    r.add_argument("--timeout", type=int, default=3600)
    r.add_argument("--force", action="store_true", help="run sizes known not to fit this machine")
    r.add_argument("--large", action="store_true",
                   help="faiss: the frozen large-index form (built in its own process, BM25 memory-mapped)")
    r.add_argument("--build-dir", help="--large: build into this folder once and reuse it on later runs")
    r.add_argument("--build-only", action="store_true", help="--large: build (into --build-dir) and stop")
    bl = sub.add_parser("_build_large")
    bl.add_argument("--size", type=int, required=True)
    bl.add_argument("--out-dir", required=True)
    bl.add_argument("--random-base", action="store_true")
    o = sub.add_parser("_one")
    o.add_argument("--backend", required=True)
    o.add_argument("--size", type=int, required=True)
    o.add_argument("--dense-only", action="store_true")
    o.add_argument("--random-base", action="store_true", help="random base vectors (plumbing checks, not figures)")
    o.add_argument("--prebuilt", help="faiss: open the large form built by _build_large in this folder")
    for sp in (p, r):
        sp.add_argument("--out", type=Path, default=OUT, help="results file to merge into (default: untracked, "
                                                              "under build/; bench/results/scale.json is the kept one)")
    args = ap.parse_args()
    OUT = getattr(args, "out", None) or OUT
    if args.command == "parity":
        parity(args)
    elif args.command == "_parity_part":
        parity_part(args)
    elif args.command == "_build_large":
        print(json.dumps(build_faiss_large(args)))
    elif args.command == "run":
        run(args)
    else:
        print(json.dumps(one(args)))


if __name__ == "__main__":
    main()
