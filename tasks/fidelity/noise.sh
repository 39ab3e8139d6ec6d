#!/usr/bin/env bash
# tasks/fidelity/noise.sh SCRIPTS_DIR DATA_DIR N [STEPS] [OUT_DIR]
# The noise floor of the fidelity comparison: the benchmark's PyTorch record_N script run twice
# from the same initial weights and token windows, once compiled (torch.compile) and once eager.
# Both are correct, so their largest loss difference over STEPS steps is what bf16 rounding and
# kernel choice alone produce; a speedrun-vs-PyTorch difference of that size is noise, not a bug.
# ACCUM passes through as in run.sh (default 8 micro-batches per step; records 1-3 and 15: 1).
set -euo pipefail
SCRIPTS=${1:?dir with record_N/train_gpt2.py}; DATA=${2:?data dir}; N=${3:?record number}
NN=$(printf %02d "$N")
STEPS=${4:-50}; OUT=${5:-runs/fidelity/noise_$NN}
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/../.." && pwd)
SR=${SPEEDRUN:-$ROOT/build/speedrun}
SCRIPT=$(realpath "$SCRIPTS/record_$N/train_gpt2.py"); DATA=$(realpath "$DATA")
ACCUM=${ACCUM:-8}
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1
mkdir -p "$OUT"; OUT=$(realpath "$OUT")
"$SR" run "$HERE/ours.lua" init "$ROOT/tasks/record_$NN/recipe.lua" "$OUT/init.srw" --scale full --device cuda
for mode in compiled eager; do
  extra=(); [ $mode = eager ] && extra=(--no-compile)
  (cd /tmp && python3 "$HERE/torch_side.py" --script "$SCRIPT" --record "$N" --weights "$OUT/init.srw" \
    --train-files "$DATA/*_train_*.bin" --val-files "$DATA/*_val_*.bin" \
    --steps "$STEPS" --accum "$ACCUM" --out "$OUT/$mode.json" "${extra[@]}")
done
python3 "$HERE/compare.py" "$OUT/compiled.json" "$OUT/eager.json" --names compiled,eager
