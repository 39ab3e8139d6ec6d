#!/usr/bin/env bash
# tasks/fidelity/warm.sh SCRIPTS_DIR DATA_DIR [RECORDS...]
# Fills PyTorch's compile caches (Inductor's FX-graph and AOTAutograd caches, Triton's kernels) for
# several records at once, so the timed fidelity runs after it (run.sh, one record at a time) start
# from a warm cache: each record's script runs 2 steps through torch_side.py, $FID_WARM_PAR
# (default 4) of them at a time on the one GPU, each limited to $FID_WARM_LIMIT s (default 280).
# Their compiles overlap on the CPU cores, where one after the other a cold compile costs a record
# 150-200 s on the H200 machine (record 6, 2026-12-04). ACCUM and NO_COMPILE as in run.sh; the
# graphs must be the ones the timed run compiles, so the shapes (ACCUM x micro-batch) are the same.
# Nothing it measures is kept: its losses and tokens/s come from a contended GPU.
set -uo pipefail
SCRIPTS=${1:?dir with record_N/train_gpt2.py}; DATA=${2:?data dir}; shift 2
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/../.." && pwd)
SR=${SPEEDRUN:-$ROOT/build/speedrun}
S=$(realpath "$SCRIPTS"); D=$(realpath "$DATA")
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1
export TORCHINDUCTOR_FX_GRAPH_CACHE=1 TORCHINDUCTOR_AUTOGRAD_CACHE=1 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
one() {  # one N: init weights, then 2 steps of the script; its log in /tmp/fidelity-warm/record_NN.log
  local n=$1 nn; nn=$(printf %02d "$1"); local dir=/tmp/fidelity-warm/record_$nn; mkdir -p "$dir"
  local t0; t0=$(date +%s)
  ( cd /tmp && MASTER_PORT=$((29550 + n)) timeout "${FID_WARM_LIMIT:-280}" bash -c '
      "$0" run "$1/ours.lua" init "$2/tasks/record_$3/recipe.lua" "$4/init.srw" --scale full --device cuda &&
      python3 "$1/torch_side.py" --script "$5/record_$6/train_gpt2.py" --record "$6" --weights "$4/init.srw" \
        --train-files "$7/*_train_*.bin" --val-files "$7/*_val_*.bin" --steps 2 --accum "${ACCUM:-8}" \
        --out "$4/torch.json" $( [ "${NO_COMPILE:-0}" = 1 ] && echo --no-compile )' \
      "$SR" "$HERE" "$ROOT" "$nn" "$dir" "$S" "$n" "$D" ) >"$dir.log" 2>&1
  echo "warm record $n: rc=$? ($(( $(date +%s) - t0 )) s)"
}
export -f one; export SR HERE ROOT S D
for n in ${*:-6 7 8 9 10 11}; do echo "$n"; done | xargs -P "${FID_WARM_PAR:-4}" -I{} bash -c 'one {}'
