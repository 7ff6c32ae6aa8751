"""Reading: a question and passages -> one answer span per passage (windows of question +
passage tokens, the network's start/end/answerability logits, the best span decoded back to
character offsets), and the process-wide reader."""

from __future__ import annotations

import re
import threading
import time
from bisect import bisect_left
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .batching import MicroBatcher, ReadJob, rounded_width
from .network import CARD_FILE, READER_DIR, RETRAIN_HINT, ReaderModelError, load_network, read_card, use_bfloat16


@dataclass
class SpanPrediction:
    passage: int  # index into the passages given to read()
    start: int  # character offsets into that passage
    end: int
    text: str
    span_score: float  # start + end logit of the best span
    answerable: float  # answerability logit (max over the passage's windows)


# the selected window's length, question included (bench/read_cost.py, docs/benchmarks.md:
# against whole passages in 256-token windows, 192 read 27 % fewer tokens on the question bank)
SELECTED_WINDOW_TOKENS = 192


# windows: question + passage pieces of at most max_len tokens

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


def select_window(tokenizer, question: str, passage: str, max_len: int) -> tuple[int, int]:
    """The characters of `passage` to read when question and passage do not fit one window of
    `max_len` tokens: the sentence sharing most of the question's words and numbers (a word
    weighing more the fewer sentences hold it), and its neighbours (the one sharing more first,
    the following one on a tie) while they fit. The whole passage (overlapping windows) when it
    fits, when one sentence alone does not, when no sentence shares a word with the question, or
    when question and passage are in different languages (nothing to choose by)."""
    from ingest.chunking import split_sentences

    q_tokens = min(len(tokenizer(question, add_special_tokens=False)["input_ids"]), 64)
    budget = max_len - q_tokens - 3  # [CLS] question [SEP] passage [SEP]
    starts = [a for a, _ in tokenizer(passage, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]]
    whole = (0, len(passage))
    spans = split_sentences(passage)
    if len(starts) <= budget or len(spans) < 2 or _is_chinese(question) != _is_chinese(passage):
        return whole  # across languages only numbers could match: too little to choose by
    counts = [bisect_left(starts, b) - bisect_left(starts, a) for a, b in spans]
    # a shared word counts less the more sentences hold it (the law's name in every sentence
    # says little about which one holds the answer)
    held = [{u for u in _question_units(question) if u in passage[a:b].lower()} for a, b in spans]
    spread = {u: sum(u in h for h in held) for u in set().union(*held)}
    scores = [sum(1 / spread[u] for u in h) for h in held]
    best = max(range(len(spans)), key=lambda i: (scores[i], -i))
    if scores[best] == 0 or counts[best] > budget:
        return whole
    lo = hi = best
    used = counts[best]
    while True:
        left = lo > 0 and used + counts[lo - 1] <= budget
        right = hi + 1 < len(spans) and used + counts[hi + 1] <= budget
        if right and (not left or scores[hi + 1] >= scores[lo - 1]):
            hi += 1
            used += counts[hi]
        elif left:
            lo -= 1
            used += counts[lo]
        else:
            return spans[lo][0], spans[hi][1]


def _is_chinese(text: str) -> bool:
    """Mostly Chinese characters among the letters (a Chinese passage quoting English names is)."""
    han = len(re.findall(r"[\u4e00-\u9fff]", text))
    return han >= 0.3 * max(1, len(re.findall(r"[\u4e00-\u9fffA-Za-z]", text)))


def _question_units(question: str) -> set[str]:
    """What a sentence shares with the question: Chinese character pairs, words of 3+ letters,
    numbers (the question is Simplified already: the engine converts it before reading)."""
    text = question.lower()
    units = {m for m in re.findall(r"[a-z][a-z'\-]{2,}|\d+(?:\.\d+)?", text) if m not in _STOPWORDS}
    for run in re.findall(r"[\u4e00-\u9fff]+", text):
        units.update(run[i:i + 2] for i in range(len(run) - 1))
    return units - _STOP_PAIRS


_STOPWORDS = {"the", "and", "what", "which", "who", "whom", "how", "many", "much", "does", "did", "was", "were",
              "are", "for", "with", "from", "that", "this", "these", "those", "when", "where", "why", "its", "has",
              "have", "had", "into", "about", "there", "their", "they"}
_STOP_PAIRS = {"什么", "哪些", "哪个", "多少", "是否", "怎么", "如何", "为什", "么是", "是什", "有哪", "有多", "哪一"}


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


class Reader:
    """Loads the trained reader once; `read()` is thread-safe and batches concurrent reads."""

    def __init__(self, base_path: str | Path, directory: Path = READER_DIR, select_sentences: bool = False,
                 lanes: int = 1):
        from index.embedding import shared_tokenizer

        self.directory = Path(directory)
        self.card = read_card(directory)
        cfg = self.card["config"]
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
        net, _ = load_network(base_path, directory)
        # bfloat16 matrix products where the CPU has them natively (AVX512-BF16/AMX); int8
        # dynamic quantisation was tried and halved CMRC F1 (chat/README.md)
        self.bf16 = use_bfloat16(bool(cfg.get("infer_bf16", True)))
        self.net = net
        # a passage longer than one window is read as the one window of its sentences that share
        # most of the question's words (select_window), not as overlapping windows of all of it
        self.select_sentences = select_sentences
        self.select_tokens = SELECTED_WINDOW_TOKENS
        self._batcher = MicroBatcher(self._run, lanes)
        # called after every forward with (windows, tokens, seconds), tokens = windows x the
        # forward's width, padding included (what the network ran on): the server's metrics,
        # bench/read_cost.py
        self.forward_observers: list = []

    def read(self, question: str, passages: list[str]) -> list[SpanPrediction]:
        """One prediction per passage (same order)."""
        if not passages:
            return []
        windows = []  # (passage index, ids, mask, context mask, offsets)
        for p, text in enumerate(passages):
            # a fast tokenizer's truncation settings are state on one shared object: two threads
            # tokenising at once can drop each other's truncation (a 1,253-token window was seen)
            with self._tokenizer_lock:
                begin, stop = (select_window(self.tokenizer, question, text, self.select_tokens)
                               if self.select_sentences else (0, len(text)))
                enc = encode_windows(self.tokenizer, question, text[begin:stop], self.max_len, self.stride)
            for i in range(len(enc["input_ids"])):
                offsets = [(a + begin, b + begin) for a, b in enc["offset_mapping"][i]] if begin else enc["offset_mapping"][i]
                windows.append((p, enc["input_ids"][i], enc["attention_mask"][i], enc["context_mask"][i], offsets))
        start, end, answerable = self._batcher.forward([w[1] for w in windows], [w[2] for w in windows])
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

    def _run(self, batch: list[ReadJob]) -> None:
        import torch

        started = time.perf_counter()
        rows = [(i, m) for job in batch for i, m in zip(job.ids, job.masks)]
        # pad (or trim padding) to the longest window, rounded up: padded positions are masked out
        width = rounded_width(max(sum(m) for _, m in rows), max(len(i) for i, _ in rows))
        pad = self.tokenizer.pad_token_id
        try:
            ids = torch.tensor([(i + [pad] * width)[:width] for i, _ in rows])
            mask = torch.tensor([(m + [0] * width)[:width] for _, m in rows])
            # intra-op threads: the batcher sets them (lanes, chat/reader/batching.py)
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
                start, end, answerable = self.net(ids, mask)
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
        for observe in self.forward_observers:
            try:
                observe(len(rows), len(rows) * width, time.perf_counter() - started)
            except Exception:  # a metrics failure must not fail the answers
                pass


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


def get_reader(base_path: str | Path, directory: Path = READER_DIR, select_sentences: bool = False,
               lanes: int = 1) -> Reader:
    """One Reader per (base model, weights, window choice, lanes) in the process."""
    key = (str(base_path), str(Path(directory).resolve()), select_sentences, lanes)
    with _cached_lock:
        if key not in _cached:
            _cached[key] = Reader(base_path, directory, select_sentences=select_sentences, lanes=lanes)
        return _cached[key]
