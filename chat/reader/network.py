"""The reader's network and its weights file, shared by inference (chat/reader/reading.py) and
training (eval/train_reader.py): the e5 BERT with a span head and an answerability head, which
layers are trained, the base model's fingerprint, and the int8 packing of the trained layers."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

READER_DIR = Path(__file__).resolve().parent  # the committed reader: weights and card live in this package
WEIGHTS_FILE = "reader.safetensors"
CARD_FILE = "reader.json"
RETRAIN_HINT = "run `.venv/bin/python -m eval.train_reader` to train a reader for this base model"


class ReaderModelError(RuntimeError):
    """The reader's weights are missing or were trained on another base model."""


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


def keep_layers(net, layers: list[int] | None) -> None:
    """Keep only these transformer layers, in order (a distilled reader: every other layer of
    its teacher). None keeps all."""
    from torch import nn

    if layers is None:
        return
    net.bert.encoder.layer = nn.ModuleList([net.bert.encoder.layer[i] for i in layers])
    net.bert.config.num_hidden_layers = len(layers)


def load_network(base_path: str | Path, directory: Path = READER_DIR):
    """The reader saved in `directory`, ready to run (float32, eval mode): the base model's
    embeddings and frozen layers, the card's layers kept, the trained ones from the weights file.
    Refuses a reader trained on another base model or whose weights do not fit its card."""
    from safetensors.torch import load_file

    directory = Path(directory)
    card = read_card(directory)
    cfg = card["config"]
    weights = directory / WEIGHTS_FILE
    if not weights.exists():
        raise ReaderModelError(f"reader weights {weights} missing: {RETRAIN_HINT}")
    net = build_network(base_path)
    keep_layers(net, cfg.get("layers"))
    freeze_lower(net, int(cfg["n_frozen"]))
    found = base_fingerprint(net, int(cfg["n_frozen"]))
    if found != card["base_fingerprint"]:
        raise ReaderModelError(
            f"the reader in {directory} was trained on another base model (fingerprint "
            f"{card['base_fingerprint']}, this one {found}): {RETRAIN_HINT}")
    state = unpack_state(load_file(str(weights)))
    expected = set(trained_state(net))
    if set(state) != expected:
        raise ReaderModelError(f"{weights} does not match the reader network "
                               f"({len(set(state) ^ expected)} tensors differ): {RETRAIN_HINT}")
    net.load_state_dict(state, strict=False)
    net.eval()
    return net, card


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
