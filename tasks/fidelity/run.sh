#!/usr/bin/env bash
# tasks/fidelity/run.sh N SCRIPT DATA_DIR [STEPS] [OUT_DIR]
# Fidelity of tasks/record_0N/recipe.lua against the benchmark's PyTorch record_N script (a local
# path; nothing is fetched) on one GPU: same initial weights, same token windows, STEPS steps
# (default 50). DATA_DIR holds *_train_*.bin and *_val_*.bin shards (FineWeb from `speedrun data fetch`, or
# the embedded corpus of `speedrun data prepare`, e.g. data/default).
# Needs: a CUDA build of speedrun (./build/speedrun) and python3 with torch (+ tiktoken for
# record 1, which imports it). Writes OUT_DIR/{init.srw,torch.json,ours.json} and prints the table.
set -euo pipefail
N=${1:?record number}; SCRIPT=${2:?path to train_gpt2.py}; DATA=${3:?data dir}
STEPS=${4:-50}; OUT=${5:-runs/fidelity/record_0$N}
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/../.." && pwd)
SR=${SPEEDRUN:-$ROOT/build/speedrun}
RECIPE=$ROOT/tasks/record_0$N/recipe.lua
# records 4-8 accumulate 8 micro-batches of 64x1024 per step on one GPU, as the script does;
# ACCUM=1 patches their global batch down to one micro-batch (a cheaper run of the same code)
case $N in 4|5|6|7|8) ACCUM=${ACCUM:-8} ;; *) ACCUM=1 ;; esac
EXTRA=(); [ "${NO_COMPILE:-0}" = 1 ] && EXTRA+=(--no-compile)   # PyTorch eager: no compile time
mkdir -p "$OUT"
"$SR" run "$HERE/ours.lua" init "$RECIPE" "$OUT/init.srw" --scale full --device cuda
python3 "$HERE/torch_side.py" --script "$SCRIPT" --weights "$OUT/init.srw" \
  --train-files "$DATA/*_train_*.bin" --val-files "$DATA/*_val_*.bin" \
  --steps "$STEPS" --accum "$ACCUM" --out "$OUT/torch.json" "${EXTRA[@]}"
"$SR" run "$HERE/ours.lua" train "$RECIPE" --weights "$OUT/init.srw" --batches "$OUT/torch.json" \
  --train-files "$DATA/*_train_*.bin" --out "$OUT/ours.json" --scale full --device cuda
python3 "$HERE/compare.py" "$OUT/torch.json" "$OUT/ours.json"
