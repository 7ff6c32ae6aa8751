"""The trained reader: reads the question together with each passage and returns an answer
span (character offsets into the passage), a span score and an answerability score.

The classic retriever-reader (BERTserini; Haystack's ExtractiveReader): multilingual-e5-small
(the embedding model the index already converts, MIT) with two heads, fine-tuned on the
training files of ../shared/bench (`python -m eval.train_reader`):

- span head: a start and an end logit per passage token; span score = start + end logit;
- answerability head: one logit from the first token's vector: does this passage answer?

Only the top layers and the heads are trained, so the weights file holds just those
(int8 matrices with per-row scales, fp16 rest: chat/reader/reader.safetensors, < 25 MB);
the embedding matrix and the frozen lower layers come from the converted e5 model at load. `reader.json` beside the file records the
base model's fingerprint (checked at load), the training configuration, the training data's
hashes and the figures the model reached.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

READER_DIR = Path(__file__).with_name("reader")
WEIGHTS_FILE = "reader.safetensors"
CARD_FILE = "reader.json"
RETRAIN_HINT = "run `.venv/bin/python -m eval.train_reader` to train a reader for this base model"


class ReaderModelError(RuntimeError):
    """The reader's weights are missing or were trained on another base model."""


@dataclass
class SpanPrediction:
    passage: int  # index into the passages given to read()
    start: int  # character offsets into that passage
    end: int
    text: str
    span_score: float  # start + end logit of the best span
    answerable: float  # answerability logit (max over the passage's windows)


# --- the network -----------------------------------------------------------------------

def build_network(base_path: str | Path):
    """The e5 BERT with a span head and an answerability head (torch module)."""
    import torch
    from torch import nn
    from transformers import AutoModel

    class ReaderNet(nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert
            hidden = bert.config.hidden_size
            self.span = nn.Linear(hidden, 2)
            self.answerable = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1))

        def forward(self, input_ids, attention_mask):
            h = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            start, end = self.span(h).float().unbind(-1)
            return start, end, self.answerable(h[:, 0]).float().squeeze(-1)

    bert = AutoModel.from_pretrained(str(base_path))
    torch.manual_seed(0)  # head initialisation is part of what the seed fixes
    return ReaderNet(bert)


def freeze_lower(net, n_frozen: int) -> None:
    """Freeze the embeddings and the bottom `n_frozen` transformer layers."""
    for p in net.bert.embeddings.parameters():
        p.requires_grad = False
    for layer in net.bert.encoder.layer[:n_frozen]:
        for p in layer.parameters():
            p.requires_grad = False


def trained_state(net) -> dict:
    """The parameters that training changes (what the weights file holds)."""
    return {k: v for k, v in net.named_parameters() if v.requires_grad}


def base_fingerprint(net, n_frozen: int) -> str:
    """sha256 over a strided sample of the frozen weights: identifies the base model."""
    import torch

    h = hashlib.sha256()
    frozen = list(net.bert.embeddings.named_parameters())
    for layer in net.bert.encoder.layer[:n_frozen]:
        frozen += list(layer.named_parameters())
    for name, p in frozen:
        flat = p.detach().reshape(-1).to(torch.float32)
        h.update(name.encode())
        h.update(flat[:: max(1, flat.numel() // 4096)].numpy().tobytes())
    return h.hexdigest()[:16]


SCALE_SUFFIX = ".int8_scale"


def pack_state(state: dict) -> dict:
    """Transformer-layer matrices as int8 with one fp16 scale per output row (weight-only:
    activations stay bf16/fp32, so the loss is small, unlike dynamic quantisation); the rest
    (biases, layer norms, heads) in fp16. Nine trained layers fit in 17 MB instead of 32."""
    import torch

    out = {}
    for k, v in state.items():
        v = v.detach().to("cpu", torch.float32)
        if v.ndim == 2 and k.startswith("bert.encoder."):
            scale = v.abs().amax(dim=1, keepdim=True).clamp(min=1e-8) / 127.0
            out[k] = torch.round(v / scale).clamp(-127, 127).to(torch.int8).contiguous()
            out[k + SCALE_SUFFIX] = scale.half().contiguous()
        else:
            out[k] = v.half().contiguous()
    return out


def unpack_state(packed: dict) -> dict:
    """The inverse of pack_state: float32 tensors named as in the network."""
    out = {}
    for k, v in packed.items():
        if k.endswith(SCALE_SUFFIX):
            continue
        scale = packed.get(k + SCALE_SUFFIX)
        out[k] = v.float() * scale.float() if scale is not None else v.float()
    return out


def save_weights(net, directory: Path, card: dict) -> None:
    """Write the trained layers (int8 matrices, fp16 rest) and their card atomically."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    state = pack_state(trained_state(net))
    tmp = directory / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(tmp))
    tmp.replace(directory / WEIGHTS_FILE)
    card_tmp = directory / (CARD_FILE + ".tmp")
    card_tmp.write_text(json.dumps(card, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    card_tmp.replace(directory / CARD_FILE)


def use_bfloat16(wanted: bool = True) -> bool:
    """Whether the reader computes in bfloat16 (inference and training): where the CPU does it
    natively (AVX512-BF16/AMX); elsewhere it is emulated, about 5x slower than float32.
    CLUSTERQA_READER_BF16=1 / 0 forces one or the other (the tests are run both ways: no
    expectation may depend on the CPU)."""
    from index.embedding import native_bfloat16

    forced = os.environ.get("CLUSTERQA_READER_BF16", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    return wanted and native_bfloat16()


def read_card(directory: Path = READER_DIR) -> dict:
    path = Path(directory) / CARD_FILE
    if not path.exists():
        raise ReaderModelError(f"no reader at {directory} ({CARD_FILE} missing): {RETRAIN_HINT}")
    return json.loads(path.read_text(encoding="utf-8"))


# --- windows: question + passage pieces of at most max_len tokens ----------------------

def encode_windows(tokenizer, question: str, passage: str, max_len: int, stride: int, max_question_tokens: int = 64):
    """Tokenise (question, passage) into overlapping windows with character offsets.

    Returns the tokenizer's BatchEncoding with `offset_mapping`, `overflow_to_sample_mapping`
    and, per window, a context mask (1 on passage tokens)."""
    q_ids = tokenizer(question, add_special_tokens=False)["input_ids"]
    if len(q_ids) > max_question_tokens:  # long questions: keep the end (the question word)
        question = tokenizer.decode(q_ids[-max_question_tokens:])
    enc = tokenizer(question, passage, truncation="only_second", max_length=max_len, stride=stride,
                    return_overflowing_tokens=True, return_offsets_mapping=True, padding="max_length")
    masks = []
    for i in range(len(enc["input_ids"])):
        seq = enc.sequence_ids(i)
        masks.append([1 if s == 1 else 0 for s in seq])
    enc["context_mask"] = masks
    return enc


def best_span(start_logits, end_logits, context_mask, offsets, max_answer_tokens: int):
    """(score, start_char, end_char) of the best span inside the passage tokens."""
    mask = np.asarray(context_mask, dtype=bool)
    s = np.where(mask, start_logits, -1e9)
    e = np.where(mask, end_logits, -1e9)
    starts = np.argsort(-s)[:20]
    ends = np.argsort(-e)[:20]
    best = (-np.inf, 0, 0)
    for i in starts:
        if not mask[i]:
            continue
        for j in ends:
            if not mask[j] or j < i or j - i + 1 > max_answer_tokens:
                continue
            score = float(s[i] + e[j])
            if score > best[0]:
                best = (score, int(offsets[i][0]), int(offsets[j][1]))
    return best


# --- inference -------------------------------------------------------------------------

class Reader:
    """Loads the trained reader once; `read()` is thread-safe and batches concurrent reads."""

    def __init__(self, base_path: str | Path, directory: Path = READER_DIR, threads: int | None = None):
        from safetensors.torch import load_file

        from index.embedding import shared_tokenizer

        self.card = read_card(directory)
        cfg = self.card["config"]
        weights = Path(directory) / WEIGHTS_FILE
        if not weights.exists():
            raise ReaderModelError(f"reader weights {weights} missing: {RETRAIN_HINT}")
        # the windows and span length the reader was trained and evaluated with: from its card
        # only (a fallback here once disagreed with training: 384 / 30 against 256 / 40)
        missing = [k for k in ("infer_max_len", "infer_stride", "max_answer_tokens") if k not in cfg]
        if missing:
            raise ReaderModelError(f"{directory / CARD_FILE} lacks {', '.join(missing)}: {RETRAIN_HINT}")
        self.max_len = int(cfg["infer_max_len"])
        self.stride = int(cfg["infer_stride"])
        self.max_answer_tokens = int(cfg["max_answer_tokens"])
        # the query encoder's tokenizer (the same base model): shared, with its lock
        self.tokenizer, self._tokenizer_lock = shared_tokenizer(base_path)
        net = build_network(base_path)
        freeze_lower(net, int(cfg["n_frozen"]))
        found = base_fingerprint(net, int(cfg["n_frozen"]))
        if found != self.card["base_fingerprint"]:
            raise ReaderModelError(
                f"the reader in {directory} was trained on another base model (fingerprint "
                f"{self.card['base_fingerprint']}, this one {found}): {RETRAIN_HINT}")
        state = unpack_state(load_file(str(weights)))
        expected = set(trained_state(net))
        if set(state) != expected:
            raise ReaderModelError(f"{weights} does not match the reader network "
                                   f"({len(set(state) ^ expected)} tensors differ): {RETRAIN_HINT}")
        net.load_state_dict(state, strict=False)
        net.eval()
        # bfloat16 matrix products where the CPU has them natively (AVX512-BF16/AMX); int8
        # dynamic quantisation was tried and halved CMRC F1 (chat/README.md)
        self.bf16 = use_bfloat16(bool(cfg.get("infer_bf16", True)))
        self.net = net
        self.threads = threads
        self._lock = threading.Lock()  # one forward at a time
        self._pending_lock = threading.Lock()
        self._pending: list[_ReadJob] = []
        self._last_trim = time.monotonic()
        # what the reader has computed since load (bench/read_cost.py): forwards, windows, and
        # tokens (windows x forward width, padding included: what the network really ran on)
        self.counters = {"forwards": 0, "windows": 0, "tokens": 0}

    def read(self, question: str, passages: list[str]) -> list[SpanPrediction]:
        """One prediction per passage (same order)."""
        if not passages:
            return []
        windows = []  # (passage index, ids, mask, context mask, offsets)
        for p, text in enumerate(passages):
            # a fast tokenizer's truncation settings are state on one shared object: two threads
            # tokenising at once can drop each other's truncation (a 1,253-token window was seen)
            with self._tokenizer_lock:
                enc = encode_windows(self.tokenizer, question, text, self.max_len, self.stride)
            for i in range(len(enc["input_ids"])):
                windows.append((p, enc["input_ids"][i], enc["attention_mask"][i], enc["context_mask"][i],
                                enc["offset_mapping"][i]))
        start, end, answerable = self._forward_batched([w[1] for w in windows], [w[2] for w in windows])
        out: list[SpanPrediction | None] = [None] * len(passages)
        for k, (p, _, _, cmask, offsets) in enumerate(windows):
            width = min(len(start[k]), len(cmask))  # the batch may be wider than this window
            score, cs, ce = best_span(start[k][:width], end[k][:width], cmask[:width], offsets[:width],
                                      self.max_answer_tokens)
            cs, ce = _strip(passages[p], cs, ce)
            prev_pred = out[p]
            ans = float(answerable[k])
            if prev_pred is None or score > prev_pred.span_score:
                out[p] = SpanPrediction(p, cs, ce, passages[p][cs:ce], score,
                                        max(ans, prev_pred.answerable) if prev_pred else ans)
            else:
                prev_pred.answerable = max(prev_pred.answerable, ans)
        return out

    def _forward_batched(self, ids: list[list[int]], masks: list[list[int]]):
        """Runs the network on these windows, together with the windows other threads are
        waiting to have read (leader/follower micro-batching): on 2 cores one forward of 8
        windows costs 5.4 windows' time, so concurrent requests share forwards instead of
        queueing for the lock one window at a time. A lone request runs alone, unchanged."""
        job = _ReadJob(ids, masks)
        with self._pending_lock:
            self._pending.append(job)
        with self._lock:
            while job.result is None:  # whoever holds the lock reads what is pending
                with self._pending_lock:
                    batch, taken = [], 0
                    while self._pending and (not batch or taken + len(self._pending[0].ids) <= MAX_BATCH_WINDOWS):
                        batch.append(self._pending.pop(0))
                        taken += len(batch[-1].ids)
                self._run(batch)
                if time.monotonic() - self._last_trim > TRIM_EVERY_S:
                    return_freed_memory()
                    self._last_trim = time.monotonic()
        if isinstance(job.result, BaseException):
            raise job.result
        return job.result

    def _run(self, batch: list["_ReadJob"]) -> None:
        import torch

        rows = [(i, m) for job in batch for i, m in zip(job.ids, job.masks)]
        # pad (or trim padding) to the longest window, rounded up: padded positions are masked out
        width = _rounded_width(max(sum(m) for _, m in rows), max(len(i) for i, _ in rows))
        pad = self.tokenizer.pad_token_id
        try:
            ids = torch.tensor([(i + [pad] * width)[:width] for i, _ in rows])
            self.counters["forwards"] += 1
            self.counters["windows"] += len(rows)
            self.counters["tokens"] += len(rows) * width
            mask = torch.tensor([(m + [0] * width)[:width] for _, m in rows])
            with torch.inference_mode():
                prev = torch.get_num_threads()
                if self.threads:
                    torch.set_num_threads(self.threads)
                try:
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
                        start, end, answerable = self.net(ids, mask)
                finally:
                    if self.threads:
                        torch.set_num_threads(prev)
            start, end, answerable = start.float().numpy(), end.float().numpy(), answerable.float().numpy()
        except BaseException as exc:  # every waiting request gets the error, none hangs
            for job in batch:
                job.result = exc
            return
        k = 0
        for job in batch:
            n = len(job.ids)
            job.result = (start[k:k + n], end[k:k + n], answerable[k:k + n])
            k += n


MAX_BATCH_WINDOWS = 16  # per forward; more only adds latency to the requests already waiting
WIDTH_STEP = 64  # forward widths are multiples of this (_rounded_width)
TRIM_EVERY_S = 2.0  # at most this often, after a forward, freed memory goes back to the kernel


def _rounded_width(longest: int, limit: int) -> int:
    """A forward's width rounded up to a multiple of WIDTH_STEP (at most the windows' padded
    length): oneDNN keeps a compiled kernel and its buffers per input shape, and in bfloat16
    the shapes of a free width never stop coming. 400 forwards of random shapes (1-8 windows,
    24-512 tokens, memory trimmed after each) grew a process 1,277 -> 1,707 MB; rounded to 64
    it stayed at 1,230 MB from the 200th on, in the same time (2026-12-03, chat/README.md)."""
    return min(limit, -(-longest // WIDTH_STEP) * WIDTH_STEP)


def _load_release():
    """The call that hands freed memory back to the kernel for the allocator in use: jemalloc's
    purge of every arena where it is preloaded (training re-executes under it), else glibc's
    malloc_trim; None where neither exists."""
    import ctypes

    process = ctypes.CDLL(None)
    if hasattr(process, "mallctl"):  # jemalloc
        mallctl = process.mallctl
        return lambda: mallctl(b"arena.4096.purge", None, None, None, ctypes.c_size_t(0))  # 4096: all
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    return lambda: trim(0)


_release = _load_release()


def return_freed_memory() -> None:
    """glibc keeps the freed activations of every differently shaped forward inside its heaps
    (a batch's shape is its windows x its widest window, so shapes rarely repeat): a server
    grew 3,713 -> 4,302 MB over a 10-minute soak, and 500 forwards of random shapes grew a
    process 1.2 -> 2.4 GB; with `malloc_trim(0)` every 10 forwards it stayed at 1.08 GB
    (chat/README.md, memory). jemalloc and fewer arenas did not help. Training, which keeps
    jemalloc's freed pages for speed, calls this at every checkpoint."""
    if _release is not None:
        _release()


class _ReadJob:
    """Windows one request waits to have read; `result` is set by whichever thread ran them."""

    def __init__(self, ids: list[list[int]], masks: list[list[int]]):
        self.ids, self.masks = ids, masks
        self.result = None


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    """Drop whitespace and dangling punctuation at the span's edges, and a trailing 的: of the
    4,526 CMRC-trial and DRCD training answers 5 end in 的, while the reader's spans often run
    on into it (held-out training split: +1.2 % EM on DRCD, +1.0 % on CMRC trial)."""
    edge = " \t\n\r，。、；：,.;:!?！？"
    while start < end and text[start] in edge:
        start += 1
    while end > start and text[end - 1] in edge:
        end -= 1
    if end - start > 1 and text[end - 1] == "的":
        end -= 1
    return start, end


_cached: dict = {}
_cached_lock = threading.Lock()


def get_reader(base_path: str | Path, directory: Path = READER_DIR) -> Reader:
    """One Reader per (base model, weights) in the process."""
    key = (str(base_path), str(directory))
    with _cached_lock:
        if key not in _cached:
            _cached[key] = Reader(base_path, directory)
        return _cached[key]
