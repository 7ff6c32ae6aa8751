#!/usr/bin/env bash
# The figures of the reader issue, each on data nothing was fitted on.
#   bash bench/eval_reader.sh            # ~30 min on 2 cores
# Full runs (per-question JSONL, charts) go to build/eval/<run> (untracked); their summaries
# (summary.json + the markdown table) are then copied into bench/results/<run>.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
BENCH=$($PY -c "from eval.shared_bench import bench_dir; print(bench_dir())")
H=$($PY -c "from settings import Settings; print(Settings().cache_dir)")/heldout
R=build/eval
$PY -m eval split --out "$H"
# CMRC 2018 dev (evaluation-only), full, chat path
$PY -m eval squad $BENCH/cmrc2018_dev.json --out $R/eval_cmrc_chat --quiet
# held-out split of the SQuAD half (6 articles)
$PY -m eval squad "$H/squad_held_out.json" --out $R/eval_squad_heldout_chat --quiet
# held-out split of the XQuAD half: the four language pairs (question > paragraph)
$PY -m eval squad "$H/xquad_en_held_out.json" --out $R/eval_xquad_heldout_en-en --quiet
$PY -m eval squad "$H/xquad_zh_held_out.json" --out $R/eval_xquad_heldout_zh-zh --quiet
$PY -m eval squad "$H/xquad_zh_held_out.json" --questions-from "$H/xquad_en_held_out.json" --out $R/eval_xquad_heldout_en-zh --quiet
$PY -m eval squad "$H/xquad_en_held_out.json" --questions-from "$H/xquad_zh_held_out.json" --out $R/eval_xquad_heldout_zh-en --quiet
# refusal: 30 % of the articles left out of the index, their questions must be refused
$PY -m eval squad $BENCH/cmrc2018_dev.json --unindexed-share 0.3 --limit 600 --out $R/eval_cmrc_unindexed --quiet
$PY -m eval squad "$H/squad_held_out.json" --unindexed-share 0.34 --out $R/eval_squad_heldout_unindexed --quiet
# the dev question set (evaluation-only)
$PY -m eval run data/questions/dev.jsonl --out $R/eval_dev --quiet

for run in eval_cmrc_chat eval_squad_heldout_chat eval_xquad_heldout_en-en eval_xquad_heldout_zh-zh \
           eval_xquad_heldout_en-zh eval_xquad_heldout_zh-en eval_cmrc_unindexed eval_squad_heldout_unindexed eval_dev; do
    $PY bench/keep_summary.py "$R/$run" "bench/results/$run"
done
