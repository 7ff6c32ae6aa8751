"""Index core: retrieval across scripts and languages, persistence, atomicity, updates, CLI.

Real model (get_embedder), real FAISS and BM25; small corpora in tmp dirs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from settings import load_settings

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "data" / "corpus"

DOCS = {
    "zh/yongin.txt": "title: 龙仁半导体集群\n\n韩国政府宣布，将投资300万亿韩元在京畿道龙仁地区打造世界最大规模的尖端系统半导体集群。"
    "三星电子将在龙仁新建五座晶圆厂，并吸引150家材料、零部件和设备企业入驻。",
    "zh/hamburg.txt": "title: 汉堡航空集群\n\n汉堡航空集群聚集了空中客车、汉莎技术公司以及三百多家中小型供应商，是全球第三大民用航空制造基地。"
    "该集群设有航空应用技术中心，为企业提供测试与研发设施。",
    "zh/owl.txt": "title: 东威斯特法伦利普集群\n\n德国的it's OWL集群以智能技术系统为主题，由企业、高校和研究机构组成，"
    "重点研究工业4.0背景下的自适应与自优化机器。",
    "en/chips.txt": "title: CHIPS and Science Act\n\nThe CHIPS and Science Act provides 52.7 billion dollars for American "
    "semiconductor research, manufacturing and workforce development, and created regional technology hubs.",
}


def write_corpus(root: Path, docs: dict = DOCS) -> Path:
    for rel, text in docs.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def small_built(tmp_path_factory):
    """A four-document corpus and its index, built once per module."""
    from index import build_index

    root = tmp_path_factory.mktemp("small")
    corpus = write_corpus(root / "corpus")
    settings = load_settings(env={}, corpus_dir=corpus, index_dir=root / "index")
    build_index([corpus], settings, index_dir=settings.index_dir)
    return root


@pytest.fixture
def small(small_built, tmp_path):
    """(settings, index): a private copy of the built corpus and index (tests mutate them)."""
    from index import open_index

    shutil.copytree(small_built / "corpus", tmp_path / "corpus")
    shutil.copytree(small_built / "index", tmp_path / "index")
    settings = load_settings(env={}, corpus_dir=tmp_path / "corpus", index_dir=tmp_path / "index")
    return settings, open_index(settings.index_dir, settings)


class CountingEmbedder:
    """The real embedder, counting how many passages it is asked to encode."""

    def __init__(self, inner):
        self.inner, self.passages = inner, 0
        self.model_id, self.dim, self.batch_size = inner.model_id, inner.dim, inner.batch_size

    def encode_queries(self, texts, show_progress=False):
        return self.inner.encode_queries(texts, show_progress)

    def encode_passages(self, texts, show_progress=False):
        self.passages += len(texts)
        return self.inner.encode_passages(texts, show_progress)


def top_doc(index, query, mode):
    hits = index.retrieve(query, top_k=3, mode=mode)
    return hits[0].chunk.doc_id if hits else None


# --- retrieval ---------------------------------------------------------------------

def test_traditional_and_simplified_queries_find_the_same_passage_by_bm25(small):
    _, index = small
    simplified = "三星电子在龙仁新建几座晶圆厂？"
    traditional = "三星電子在龍仁新建幾座晶圓廠？"
    assert top_doc(index, simplified, "bm25") == "zh/yongin.txt"
    assert top_doc(index, traditional, "bm25") == "zh/yongin.txt"
    s_hits = index.retrieve(simplified, 3, "bm25")
    t_hits = index.retrieve(traditional, 3, "bm25")
    assert [h.chunk.chunk_id for h in s_hits] == [h.chunk.chunk_id for h in t_hits]
    assert s_hits[0].bm25_score == pytest.approx(t_hits[0].bm25_score)


def test_english_question_finds_chinese_passage_by_dense(small):
    _, index = small
    assert top_doc(index, "Which companies are in the Hamburg aviation cluster?", "dense") == "zh/hamburg.txt"
    assert top_doc(index, "How much will Korea invest in the Yongin semiconductor cluster?", "dense") == "zh/yongin.txt"


def test_hybrid_hits_carry_fused_score_and_both_ranks(small):
    _, index = small
    hits = index.retrieve("龙仁半导体集群投资多少韩元", top_k=4, mode="hybrid")
    assert hits[0].chunk.doc_id == "zh/yongin.txt"
    top = hits[0]
    assert top.dense_rank is not None and top.bm25_rank is not None
    assert top.dense_score is not None and top.bm25_score is not None and top.bm25_score > 0
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    with pytest.raises(ValueError, match="mode"):
        index.retrieve("x", mode="sparse")


def test_retrieve_many_matches_retrieve(small):
    _, index = small
    queries = ["汉堡航空集群有哪些企业", "CHIPS Act funding", "工业4.0 自优化机器"]
    batched = index.retrieve_many(queries, top_k=3, mode="hybrid")
    for q, hits in zip(queries, batched):
        single = index.retrieve(q, top_k=3, mode="hybrid")
        assert [h.chunk.chunk_id for h in hits] == [h.chunk.chunk_id for h in single]


# --- persistence ---------------------------------------------------------------------

def test_persistence_round_trip(small):
    from index import open_index

    settings, index = small
    again = open_index(settings.index_dir, settings)
    assert again.stats()["chunks"] == index.stats()["chunks"] > 0
    assert [d.doc_id for d in again.documents()] == [d.doc_id for d in index.documents()]
    q = "Which companies are in the Hamburg aviation cluster?"
    a, b = index.retrieve(q, 4), again.retrieve(q, 4)
    assert [(h.chunk.chunk_id, round(h.score, 5)) for h in a] == [(h.chunk.chunk_id, round(h.score, 5)) for h in b]
    m = again.manifest
    assert m["model"]["dim"] == 384 and m["chunking"]["chunk_size"] == settings.chunk_size
    assert set(m["files"]) == set(DOCS) and all(len(h) == 64 for h in m["files"].values())
    assert m["counts"] == {"documents": 4, "chunks": again.stats()["chunks"]}
    doc = again.get_document("zh/owl.txt")
    assert doc is not None and all(doc.text[c.start : c.end] == c.text for c in again.chunks_of("zh/owl.txt"))


def _current_version(index_dir: Path) -> str:
    return (index_dir / "current").read_text().strip()


KILL_CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import settings as S
    S.apply_offline_defaults()
    from index import build_index, store
    corpus, index_dir, where = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]

    def progress(stage, done, total):
        if where == "embed" and stage == "embed" and done > 0:
            print("KILL-ME", flush=True); time.sleep(60)

    if where == "write":  # stall halfway through writing the new version's files
        real = store.write_jsonl
        def slow(path, rows):
            real(path, rows)
            if path.name == "chunks.jsonl":
                print("KILL-ME", flush=True); time.sleep(60)
        store.write_jsonl = slow
    s = S.load_settings(env={}, corpus_dir=corpus, index_dir=index_dir)
    build_index([corpus], s, index_dir=index_dir, progress=progress)
""")


@pytest.mark.parametrize("where", ["embed", "write"])
def test_killed_build_leaves_previous_index_loadable(small, tmp_path, where):
    from index import build_index, open_index

    settings, index = small
    before = _current_version(settings.index_dir)
    bigger = write_corpus(tmp_path / "bigger", {**DOCS, "zh/extra.txt": "新增文档：" + "集群发展。" * 400})
    child = subprocess.Popen([sys.executable, "-c", KILL_CHILD, str(bigger), str(settings.index_dir), where],
                             stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        line = child.stdout.readline()
        assert line.strip() == "KILL-ME", f"child never reached the {where} stage"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert _current_version(settings.index_dir) == before
    reopened = open_index(settings.index_dir, settings)
    assert reopened.stats()["documents"] == 4
    assert top_doc(reopened, "汉堡航空集群", "hybrid") == "zh/hamburg.txt"
    # The next build sweeps the killed writer's leftovers.
    build_index([settings.corpus_dir], settings, index_dir=settings.index_dir, embedder=index.embedder)
    versions = [p.name for p in settings.index_dir.iterdir() if p.is_dir()]
    assert len(versions) <= 2 and not any(v.endswith(".tmp") for v in versions)


def test_manifest_mismatch_is_reported_and_rebuilt(small, caplog):
    from index import IndexError_, load_or_build, open_index

    settings, index = small
    other = settings.replace(chunk_size=120, chunk_overlap=20)
    with pytest.raises(IndexError_, match=rf"chunk_size: index has {settings.chunk_size}, configuration wants 120"):
        open_index(settings.index_dir, other)
    with caplog.at_level("WARNING", logger="clusterqa.index"):
        rebuilt = load_or_build(other)
    assert "chunk_size" in caplog.text and "rebuilding" in caplog.text
    assert rebuilt.manifest["chunking"] == {"chunk_size": 120, "chunk_overlap": 20}
    assert rebuilt.stats()["chunks"] > index.stats()["chunks"]
    assert all(len(c.text) <= 120 + 40 for d in rebuilt.documents() for c in rebuilt.chunks_of(d.doc_id))

    # Another model: same story (here the manifest names a model this config does not use).
    manifest_path = settings.index_dir / _current_version(settings.index_dir) / "manifest.json"
    m = json.loads(manifest_path.read_text())
    m["model"]["id"] = "some/other-model"
    manifest_path.write_text(json.dumps(m))
    with pytest.raises(IndexError_, match="model: index has 'some/other-model'"):
        open_index(settings.index_dir, other)
    caplog.clear()
    with caplog.at_level("WARNING", logger="clusterqa.index"):
        again = load_or_build(other)
    assert "other-model" in caplog.text
    assert again.manifest["model"]["id"] == index.embedder.model_id

    # Vectors of another passage text (e.g. before titles were embedded): rebuilt too.
    manifest_path = settings.index_dir / _current_version(settings.index_dir) / "manifest.json"
    m = json.loads(manifest_path.read_text())
    m["dense_text"] = "text/0"
    manifest_path.write_text(json.dumps(m))
    with pytest.raises(IndexError_, match="dense_text: index has 'text/0'"):
        open_index(settings.index_dir, other)


def test_tokenizer_change_retokenises_without_reembedding(small, caplog):
    from index import open_index

    settings, index = small
    manifest_path = settings.index_dir / _current_version(settings.index_dir) / "manifest.json"
    m = json.loads(manifest_path.read_text())
    m["tokenizer"] = "old-tokenizer/0"
    manifest_path.write_text(json.dumps(m))
    counting = CountingEmbedder(index.embedder)
    with caplog.at_level("WARNING", logger="clusterqa.index"):
        again = open_index(settings.index_dir, settings, embedder=counting)
    assert "re-tokenising" in caplog.text and counting.passages == 0
    assert top_doc(again, "三星電子晶圓廠", "bm25") == "zh/yongin.txt"


@pytest.mark.parametrize("name", ["dense.faiss", "chunks.jsonl", "documents.jsonl", "manifest.json"])
def test_truncated_file_gives_error_naming_it(small, name):
    from index import IndexError_, open_index

    settings, _ = small
    path = settings.index_dir / _current_version(settings.index_dir) / name
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(IndexError_) as err:
        open_index(settings.index_dir, settings)
    assert name in str(err.value) and str(path) == err.value.path


def test_load_or_build_follows_corpus_changes(small):
    from index import load_or_build

    settings, index = small
    counting = CountingEmbedder(index.embedder)

    (settings.corpus_dir / "zh/owl.txt").unlink()
    (settings.corpus_dir / "en/new.txt").write_text("title: Hubs\n\nRegional tech hubs receive grants.", encoding="utf-8")
    synced = load_or_build(settings, embedder=counting)
    ids = {d.doc_id for d in synced.documents()}
    assert ids == {"zh/yongin.txt", "zh/hamburg.txt", "en/chips.txt", "en/new.txt"}
    assert counting.passages == len(synced.chunks_of("en/new.txt")) == 1


# --- incremental updates ---------------------------------------------------------------

def _consistent(index) -> set:
    """Dense and BM25 agree on the chunk set; returns the chunk ids."""
    state = index.store
    assert set(state.dense.labels().tolist()) == set(state.labels.tolist())
    assert state.keyword.size == len(state.chunks) == state.dense.size
    return {c.chunk_id for c in state.chunks}


def test_add_update_remove_reembed_only_changed_documents(small):
    from index import open_index

    settings, index = small
    counting = CountingEmbedder(index.embedder)
    index.embedder = counting
    corpus = settings.corpus_dir

    # Unchanged files: nothing embedded.
    summary = index.add_paths([corpus])
    assert summary["unchanged"] and not summary["added"] and not summary["updated"]
    assert counting.passages == 0

    # A new file: only its chunks.
    (corpus / "zh/new.txt").write_text("title: 苏州纳米城\n\n苏州工业园区纳米城集聚了六百多家纳米技术企业。", encoding="utf-8")
    summary = index.add_paths([corpus / "zh/new.txt"])
    assert summary["added"] == ["zh/new.txt"]
    assert counting.passages == summary["chunks_embedded"] == len(index.chunks_of("zh/new.txt"))
    assert top_doc(index, "纳米城", "bm25") == "zh/new.txt"

    # Same path, new content: only that document, old text gone from both indexes.
    counting.passages = 0
    (corpus / "zh/new.txt").write_text("title: 苏州纳米城\n\n苏州纳米城改名为苏州微纳制造创新中心，聚焦微机电系统。", encoding="utf-8")
    summary = index.add_paths([corpus / "zh/new.txt"])
    assert summary["updated"] == ["zh/new.txt"] and counting.passages == len(index.chunks_of("zh/new.txt"))
    assert "六百多家" not in " ".join(c.text for c in index.chunks_of("zh/new.txt"))
    assert all(h.chunk.doc_id != "zh/new.txt" or "微机电" in h.chunk.text
               for h in index.retrieve("六百多家纳米技术企业", 5, "bm25"))
    chunk_ids = _consistent(index)

    # Remove by path and by doc_id.
    assert index.remove([corpus / "zh/new.txt"]) == 1
    assert index.remove(["en/chips.txt"]) == 1
    assert index.remove(["no/such-doc"]) == 0
    remaining = _consistent(index)
    assert remaining < chunk_ids and not any(c.startswith(("zh/new.txt", "en/chips.txt")) for c in remaining)
    for mode in ("dense", "bm25", "hybrid"):
        assert all(h.chunk.doc_id not in ("zh/new.txt", "en/chips.txt")
                   for h in index.retrieve("CHIPS Act 52.7 billion dollars", 10, mode))

    # Every change was persisted atomically.
    reopened = open_index(settings.index_dir, settings)
    assert _consistent(reopened) == remaining
    assert set(reopened.manifest["files"]) == {"zh/yongin.txt", "zh/hamburg.txt", "zh/owl.txt"}


def test_bm25_scores_equal_bm25s_own_build_after_updates(small):
    """The incrementally built BM25 matrix gives bm25s's own scores, before and after add/remove."""
    import bm25s
    import numpy as np

    from index.keyword import B, K1, KeywordIndex
    from index.text import tokenize

    settings, index = small
    corpus = settings.corpus_dir
    (corpus / "zh/extra.txt").write_text("title: 苏州纳米城\n\n苏州纳米城集聚了六百多家纳米技术企业，半导体集群规模扩大。",
                                         encoding="utf-8")
    queries = ["龍仁半導體集群投資", "纳米技术企业", "semiconductor hubs", "集群"]

    def check():
        state = index.store
        reference = bm25s.BM25(k1=K1, b=B)
        reference.index(state.tokens, show_progress=False)
        for q in queries:
            tokens = [t for t in tokenize(q) if t in reference.vocab_dict]
            want = reference.get_scores(tokens)
            assert np.allclose(state.keyword.scores(tokenize(q)), want, rtol=1e-5, atol=1e-6), q
            assert np.allclose(KeywordIndex(state.tokens).scores(tokenize(q)), want, rtol=1e-5, atol=1e-6), q
        return state

    before = check()
    before_scores = before.keyword.scores(tokenize("纳米技术企业"))
    index.add_paths([corpus / "zh/extra.txt"])
    after_add = check()
    assert after_add.keyword.size == before.keyword.size + len(index.chunks_of("zh/extra.txt"))
    index.remove(["zh/yongin.txt"])
    check()
    # readers of the old snapshot still get its scores
    assert np.array_equal(before.keyword.scores(tokenize("纳米技术企业")), before_scores)


def test_retrieve_while_adding(small):
    settings, index = small
    errors, stop = [], threading.Event()

    def reader():
        while not stop.is_set():
            try:
                hits = index.retrieve("汉堡航空集群", 3, "hybrid")
                assert hits and hits[0].chunk.doc_id == "zh/hamburg.txt"
            except Exception as exc:  # noqa: BLE001 - collected and reported below
                errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for n in range(3):
            p = settings.corpus_dir / f"zh/more{n}.txt"
            p.write_text(f"title: 第{n}号\n\n集群资料{n}：先进制造业的集群化发展。", encoding="utf-8")
            index.add_paths([p])
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    assert index.stats()["documents"] == 7


# --- CLI -----------------------------------------------------------------------------

def _cli(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "index", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def test_cli_build_stats_search_add_remove(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", {k: v for k, v in DOCS.items() if k != "en/chips.txt"})
    index_dir = tmp_path / "idx"
    assert "3 documents" in _cli("build", corpus, "--index-dir", index_dir).stdout
    stats = json.loads(_cli("--index-dir", index_dir, "stats", "--json").stdout)
    assert stats["documents"] == 3 and stats["dim"] == 384
    hits = json.loads(_cli("--index-dir", index_dir, "search", "龍仁半導體", "-k", "2", "--json").stdout)
    assert hits[0]["chunk"]["doc_id"] == "zh/yongin.txt" and hits[0]["bm25_rank"] == 1
    extra = tmp_path / "chips.txt"
    extra.write_text(DOCS["en/chips.txt"], encoding="utf-8")
    assert "added 1" in _cli("--index-dir", index_dir, "add", extra).stdout
    assert "removed 1" in _cli("--index-dir", index_dir, "remove", "zh/owl.txt").stdout
    assert json.loads(_cli("--index-dir", index_dir, "stats", "--json").stdout)["documents"] == 3
    # Clear errors and non-zero exits.
    missing = _cli("--index-dir", tmp_path / "nothing", "stats", check=False)
    assert missing.returncode == 1 and "no index in" in missing.stderr
    bad = _cli("build", tmp_path / "does-not-exist", "--index-dir", index_dir, check=False)
    assert bad.returncode == 1 and "no such file" in bad.stderr
