#!/usr/bin/env bash
# tasks/fidelity/run.sh N SCRIPT DATA_DIR [STEPS] [OUT_DIR]
# Fidelity of tasks/record_NN/recipe.lua (N = 1..21) against the benchmark's PyTorch record_N script
# (a local path; nothing is fetched) on one GPU: same initial weights, same token windows, STEPS
# steps (default 50). DATA_DIR holds *_train_*.bin and *_val_*.bin shards (FineWeb from `speedrun
# data fetch`, or the embedded corpus of `speedrun data prepare`, e.g. data/default).
# Needs: a CUDA build of speedrun (./build/speedrun) and python3 with torch (+ tiktoken for
# record 1, which imports it). Writes OUT_DIR/{init.srw,torch.json,ours.json} and prints the table.
# ACCUM: micro-batches per step (default 8 = the records' 8-GPU global batch, accumulated; records
# 1-3 and 15 always run 1: their scripts have no accumulation on one GPU). NO_COMPILE=1: PyTorch
# eager (flex attention stays compiled). FID_TORCH_ONLY=1: stop after the PyTorch side (warm.sh).
# FID_EXPERIMENT="NAME...": experiment patches of patches.py (e.g. rope_fp32, rope_compiled: records
# 14-16's rotary arithmetic changed; records they do not name run unpatched).
# The patches per record: patches.py, README.md.
set -euo pipefail
N=${1:?record number}; SCRIPT=${2:?path to train_gpt2.py}; DATA=${3:?data dir}
NN=$(printf %02d "$N")
STEPS=${4:-50}; OUT=${5:-runs/fidelity/record_$NN}
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/../.." && pwd)
SR=${SPEEDRUN:-$ROOT/build/speedrun}
RECIPE=$ROOT/tasks/record_$NN/recipe.lua
[ -f "$RECIPE" ] || { echo "run.sh: no recipe $RECIPE" >&2; exit 2; }
ACCUM=${ACCUM:-8}
EXTRA=(); [ "${NO_COMPILE:-0}" = 1 ] && EXTRA+=(--no-compile)
for x in ${FID_EXPERIMENT:-}; do EXTRA+=(--experiment "$x"); done   # patches.py EXPERIMENTS
mkdir -p "$OUT"
"$SR" run "$HERE/ours.lua" init "$RECIPE" "$OUT/init.srw" --scale full --device cuda
bash "$HERE/waited.sh" python3 "$HERE/torch_side.py" --script "$SCRIPT" --record "$N" --weights "$OUT/init.srw" \
  --train-files "$DATA/*_train_*.bin" --val-files "$DATA/*_val_*.bin" \
  --steps "$STEPS" --accum "$ACCUM" --out "$OUT/torch.json" "${EXTRA[@]}"
[ "${FID_TORCH_ONLY:-0}" = 1 ] && exit 0
"$SR" run "$HERE/ours.lua" train "$RECIPE" --weights "$OUT/init.srw" --batches "$OUT/torch.json" \
  --train-files "$DATA/*_train_*.bin" --out "$OUT/ours.json" --scale full --device cuda
python3 "$HERE/compare.py" "$OUT/torch.json" "$OUT/ours.json"
