"""Speed of the index on this machine: build throughput, query latency, ANN recall, incremental add, memory.

Material: real CMRC 2018 dev text. Its sentences are recombined into synthetic chunks
of ~250-350 characters for the 1k/10k/100k-chunk indexes. Vectors: REAL_CHUNKS real
chunks are embedded with the real model (that run is also the build-throughput
measurement); every synthetic chunk gets a mix of two of those real vectors plus small
Gaussian noise, renormalised (a*v_i + (1-a)*v_j + N(0, 0.02), a ~ U(0.5, 1)) -- realistic
geometry without embedding 100k texts. `--base-index DIR` takes the base vectors from an
existing index instead (the saved figures used the 1,734 passage vectors of the CMRC
benchmark index: 600 bases make a degenerate, near-duplicate 100k set). BM25 tokens of a chunk are the concatenated tokens
of its sentences (each sentence tokenised once). Queries are real CMRC questions,
embedded per query (latency includes the query embedding for dense and hybrid).
Figures are medians over repetitions; the machine is shared, so expect noise.

    .venv/bin/python bench/index_speed.py [--sizes 1000,10000,100000] [--queries 100] [--out bench/results/index_speed.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import settings as settings_mod  # noqa: E402

settings_mod.apply_offline_defaults()

from ingest.chunking import split_sentences  # noqa: E402
from ingest.records import Chunk, Document  # noqa: E402
from ingest.script import to_simplified  # noqa: E402
from index.corpus import CorpusIndex, embed_passages, new_manifest  # noqa: E402
from index.dense import DenseIndex  # noqa: E402
from index.embedding import get_embedder  # noqa: E402
from index.stores import FaissStore  # noqa: E402
from index.text import titled_text, tokenize  # noqa: E402
from eval.shared_bench import bench_file  # noqa: E402
from keep_summary import portable  # noqa: E402

CMRC = bench_file("cmrc2018_dev.json")  # the shared benchmark folder (eval/shared_bench.py)
REAL_CHUNKS = 600
OUT = REPO / "build" / "bench" / "index_speed.json"  # untracked; --out bench/results/index_speed.json for the kept one


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pct(values, q) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def load_material():
    data = json.loads(CMRC.read_text(encoding="utf-8"))["data"]
    sentences, questions, contexts = [], [], []
    for art in data:
        for para in art["paragraphs"]:
            ctx = to_simplified(para["context"])
            contexts.append(ctx)
            sentences.extend(ctx[s:e] for s, e in split_sentences(ctx) if e - s >= 8)
            questions.extend(qa["question"] for qa in para["qas"])
    return sentences, questions, contexts


def synth_chunks(sentences, sent_tokens, n, rng):
    """n chunk texts (and their tokens) made of random runs of real sentences."""
    texts, tokens = [], []
    for _ in range(n):
        i = int(rng.integers(0, len(sentences)))
        parts, toks = [], []
        while sum(map(len, parts)) < 250:
            s = sentences[i % len(sentences)]
            if parts and sum(map(len, parts)) + len(s) > 350:
                break
            parts.append(s)
            toks.extend(sent_tokens[i % len(sentences)])
            i += 1
        texts.append("".join(parts))
        tokens.append(toks)
    return texts, tokens


def synth_vectors(base, n, rng):
    i, j = rng.integers(0, len(base), n), rng.integers(0, len(base), n)
    a = rng.uniform(0.5, 1.0, n)[:, None].astype(np.float32)
    x = a * base[i] + (1 - a) * base[j] + rng.normal(0, 0.02, (n, base.shape[1])).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make_index(settings, embedder, texts, tokens, vectors, per_doc=10):
    """A CorpusIndex over precomputed vectors/tokens (synthetic documents of `per_doc` chunks)."""
    documents, chunks = {}, []
    for d in range(0, len(texts), per_doc):
        doc_id = f"synthetic/{d // per_doc:06d}.txt"
        parts, pos = [], 0
        for n, t in enumerate(texts[d : d + per_doc]):
            chunks.append(Chunk(doc_id, f"{doc_id}#{n}", doc_id, "", "", "", pos, pos + len(t), t))
            parts.append(t)
            pos += len(t)
        text = "".join(parts)
        documents[doc_id] = Document(doc_id, doc_id, "", "", "zh", text, text, content_hash=str(d))
    labels = np.arange(len(chunks), dtype=np.int64)
    t0 = time.perf_counter()
    dense = DenseIndex(embedder.dim, settings.ann_threshold)
    dense.add(labels, vectors)
    dense_s = time.perf_counter() - t0
    store = FaissStore.make(documents, chunks, labels, tokens, dense, {}, len(chunks))
    return CorpusIndex(settings, embedder, store, None, new_manifest(settings, embedder)), dense_s


def time_queries(index, queries, mode):
    lat = []
    for q in queries:
        t0 = time.perf_counter()
        index.retrieve(q, top_k=5, mode=mode)
        lat.append(time.perf_counter() - t0)
    return {"p50_ms": round(pct(lat, 50), 2), "p95_ms": round(pct(lat, 95), 2), "n": len(lat)}


def time_index_only(index, queries, qvecs):
    """Hybrid retrieval with the query vector precomputed: the index's own share of a query."""
    lat = []
    for q, v in zip(queries, qvecs):
        t0 = time.perf_counter()
        index.retrieve(q, top_k=5, mode="hybrid", query_vector=v)
        lat.append(time.perf_counter() - t0)
    return {"p50_ms": round(pct(lat, 50), 2), "p95_ms": round(pct(lat, 95), 2), "n": len(lat)}


def time_query_embedding(embedder, queries):
    lat = []
    for q in queries:
        t0 = time.perf_counter()
        embedder.encode_queries([q])
        lat.append(time.perf_counter() - t0)
    return {"p50_ms": round(pct(lat, 50), 2), "p95_ms": round(pct(lat, 95), 2), "n": len(lat)}


def bench_build(embedder, contexts, reps):
    """Chunks/s of the index build (llama-index embedding + jieba + BM25 + FAISS) vs raw encode."""
    from ingest import chunk_document

    docs = [Document(f"cmrc/{i}.txt", "", "", "", "zh", c, c) for i, c in enumerate(contexts)]
    chunks = []
    for d in docs:
        chunks.extend(chunk_document(d))
        if len(chunks) >= REAL_CHUNKS:
            break
    chunks = chunks[:REAL_CHUNKS]
    used = {c.doc_id for c in chunks}
    docs = [d for d in docs if d.doc_id in used]
    texts = [c.text for c in chunks]
    settings = settings_mod.load_settings(env={})
    embedder.encode_passages(texts[:32])  # warm up
    raw, build, vectors = [], [], None
    for _ in range(reps):  # interleaved so load changes hit both alike
        t0 = time.perf_counter()
        vectors = embedder.encode_passages(texts)
        raw.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        CorpusIndex.from_documents(docs, chunks, settings, embedder=embedder)
        build.append(time.perf_counter() - t0)
    raw_rate, build_rate = len(texts) / np.median(raw), len(texts) / np.median(build)
    return {
        "chunks": len(texts),
        "raw_encode_chunks_per_s": round(float(raw_rate), 1),
        "build_chunks_per_s": round(float(build_rate), 1),
        "build_vs_raw": round(float(build_rate / raw_rate), 3),
        "runs_raw_s": [round(x, 2) for x in raw],
        "runs_build_s": [round(x, 2) for x in build],
    }, vectors


def bench_ann(index, queries_vecs):
    """recall@10 of the HNSW index against exact search over the same vectors."""
    import faiss

    dense = index.store.dense
    vecs = dense.vectors(index.store.labels)
    exact = faiss.IndexFlatIP(vecs.shape[1])
    exact.add(vecs)
    _, truth = exact.search(queries_vecs, 10)
    truth_labels = index.store.labels[truth]
    lat_ann, lat_exact, recall = [], [], []
    for q, t in zip(queries_vecs, truth_labels):
        t0 = time.perf_counter()
        _, got = dense.search(q[None], 10)
        lat_ann.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        exact.search(q[None], 10)
        lat_exact.append(time.perf_counter() - t0)
        recall.append(len(set(got[0].tolist()) & set(t.tolist())) / 10)
    return {"index_type": dense.index_type, "recall@10": round(float(np.mean(recall)), 4),
            "ann_p50_ms": round(pct(lat_ann, 50), 3), "ann_p95_ms": round(pct(lat_ann, 95), 3),
            "exact_p50_ms": round(pct(lat_exact, 50), 3)}


def bench_incremental(index, settings, embedder, contexts, reps=3):
    """Add one new document (a real CMRC paragraph) to a persisted index; compare with its embedding time."""
    from ingest import chunk_document, read_file

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        corpus = tmp / "corpus"
        corpus.mkdir()
        s = settings.replace(corpus_dir=corpus, index_dir=tmp / "index")
        index.settings = s
        index.save(s.index_dir)
        runs = []
        for r in range(reps):
            path = corpus / f"new{r}.txt"
            path.write_text(f"title: new {r}\n\n" + contexts[-1 - r], encoding="utf-8")
            doc_chunks = chunk_document(read_file(path, root=corpus))
            t0 = time.perf_counter()
            embed_passages(embedder, [titled_text(c) for c in doc_chunks])
            embed_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            summary = index.add_paths([path])
            add_s = time.perf_counter() - t0
            assert summary["added"] == [f"new{r}.txt"], summary
            runs.append({"chunks": summary["chunks_embedded"], "embed_s": round(embed_s, 3),
                         "add_s": round(add_s, 3), "overhead_s": round(add_s - embed_s, 3)})
    return {"index_chunks": len(index.store.chunks), "runs": runs,
            "median_overhead_s": round(float(np.median([r["overhead_s"] for r in runs])), 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--skip-build", action="store_true", help="keep the saved build figures")
    ap.add_argument("--out", type=Path, default=OUT,
                    help="results file (default: untracked, under build/; bench/results/index_speed.json is the kept one)")
    ap.add_argument("--base-index", type=Path,
                    help="take the real passage vectors for synthesis from this index (e.g. the CMRC benchmark index)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    settings = settings_mod.load_settings(env={})
    embedder = get_embedder(settings)
    sentences, questions, contexts = load_material()
    queries = [questions[int(i)] for i in rng.choice(len(questions), args.queries, replace=False)]
    out = {"machine": {"cpus": len(__import__("os").sched_getaffinity(0))}, "model": embedder.model_id,
           "ann_threshold": settings.ann_threshold}

    saved = json.loads(args.out.read_text()) if args.out.exists() else {}
    if args.skip_build:
        if not args.base_index or "build" not in saved:
            sys.exit("--skip-build needs --base-index and saved build figures")
        out["build"] = saved["build"]
    else:
        print("build throughput ...", flush=True)
        out["build"], base = bench_build(embedder, contexts, args.reps)
        print(json.dumps(out["build"]), flush=True)
    if args.base_index:
        from index import store

        version = store.current_version(args.base_index)
        base = DenseIndex.load(version / "dense.faiss", embedder.dim, settings.ann_threshold).vectors(
            [int(r["label"]) for r in store.read_jsonl(version / "chunks.jsonl")])
    out["synthesis_base_vectors"] = int(len(base))

    t0 = time.perf_counter()
    uniq = sentences[:20000]
    sent_tokens = [tokenize(s) for s in uniq]
    print(f"tokenised {len(uniq)} sentences ({time.perf_counter() - t0:.0f}s)", flush=True)
    for q in queries[:5]:  # warm up the query path (model, jieba, OpenCC)
        embedder.encode_queries([q])
    qvecs = embedder.encode_queries(queries)

    out["latency"] = dict(saved.get("latency", {})) if args.skip_build else {}
    for size in map(int, args.sizes.split(",")):
        texts, tokens = synth_chunks(uniq, sent_tokens, size, rng)
        vectors = synth_vectors(base, size, rng)
        t0 = time.perf_counter()
        index, dense_s = make_index(settings, embedder, texts, tokens, vectors)
        entry = {"index_type": index.store.dense.index_type, "faiss_build_s": round(dense_s, 1),
                 "bm25_build_and_state_s": round(time.perf_counter() - t0 - dense_s, 1)}
        for mode in ("dense", "bm25", "hybrid"):
            entry[mode] = time_queries(index, queries, mode)
        entry["hybrid_index_only"] = time_index_only(index, queries, qvecs)
        entry["query_embedding"] = time_query_embedding(embedder, queries)
        if index.store.dense.is_approximate:
            entry["ann"] = bench_ann(index, qvecs)
        if size == 10000:
            out["incremental_add"] = bench_incremental(index, settings, embedder, contexts)
            index.settings = settings
        entry["peak_rss_mb"] = round(peak_mb())
        out["latency"][str(size)] = entry
        print(size, json.dumps(entry), flush=True)
        del index
    out.setdefault("incremental_add", saved.get("incremental_add"))
    out["peak_rss_mb"] = max(round(peak_mb()), saved.get("peak_rss_mb", 0) if args.skip_build else 0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(portable(json.dumps(out, indent=1)))
    print_table(out)


def print_table(out: dict) -> None:
    b = out["build"]
    print(f"\nbuild: {b['build_chunks_per_s']} chunks/s vs raw encode {b['raw_encode_chunks_per_s']} "
          f"-> {b['build_vs_raw']:.0%} (target >= 80%)")
    modes = ("dense", "bm25", "hybrid", "hybrid_index_only", "query_embedding")
    print(f"{'chunks':>8} {'type':>5} " + " ".join(f"{m + ' p50/p95':>24}" for m in modes) + "  (ms)")
    for size, e in out["latency"].items():
        cells = [f"{e[m]['p50_ms']:.1f}/{e[m]['p95_ms']:.1f}" if m in e else "-" for m in modes]
        print(f"{size:>8} {e['index_type']:>5} " + " ".join(f"{c:>24}" for c in cells))
        if "ann" in e:
            a = e["ann"]
            print(f"{'':>8} ANN recall@10 {a['recall@10']:.3f}, search p50 {a['ann_p50_ms']} ms "
                  f"(exact {a['exact_p50_ms']} ms)")
    inc = out.get("incremental_add")
    if inc:
        print(f"incremental add into {inc['index_chunks']} chunks: overhead over own embedding "
              f"{inc['median_overhead_s']} s (target <= 2 s)")
    print(f"peak RSS {out['peak_rss_mb']} MB")


if __name__ == "__main__":
    main()
