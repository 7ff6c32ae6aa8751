"""The trained reader: reads the question together with each passage and returns an answer
span (character offsets into the passage), a span score and an answerability score.

The classic retriever-reader (BERTserini; Haystack's ExtractiveReader): multilingual-e5-small
(the embedding model the index already converts, MIT) with two heads, fine-tuned on the
training files of ../shared/bench (`python -m eval.train_reader`):

- span head: a start and an end logit per passage token; span score = start + end logit;
- answerability head: one logit from the first token's vector: does this passage answer?

Only the top layers and the heads are trained, so the weights file holds just those
(int8 matrices with per-row scales, fp16 rest: reader.safetensors here, < 25 MB);
the embedding matrix and the frozen lower layers come from the converted e5 model at load. `reader.json` beside the file records the
base model's fingerprint (checked at load), the training configuration, the training data's
hashes and the figures the model reached; `calibration.json` beside them what its scores mean
(index/fitted.py ReaderParams, fitted by `python -m eval.calibrate_reader`, refused at load for
other weights).

The package: network.py (the network and its weights file, shared with training),
reading.py (windows, the forward, span decoding; `Reader`, `get_reader`), batching.py
(micro-batching, forward widths, memory release).
"""

from .batching import return_freed_memory
from .network import (CARD_FILE, READER_DIR, RETRAIN_HINT, WEIGHTS_FILE, ReaderModelError, base_fingerprint,
                      build_network, freeze_lower, keep_layers, load_network, pack_state, read_card, save_weights, trained_state, unpack_state,
                      use_bfloat16)
from .reading import Reader, SpanPrediction, _strip, best_span, encode_windows, get_reader

__all__ = ["CARD_FILE", "READER_DIR", "RETRAIN_HINT", "WEIGHTS_FILE", "Reader", "ReaderModelError", "SpanPrediction",
           "_strip", "base_fingerprint", "best_span", "build_network", "encode_windows", "freeze_lower", "get_reader", "keep_layers", "load_network",
           "pack_state", "read_card", "return_freed_memory", "save_weights", "trained_state", "unpack_state",
           "use_bfloat16"]