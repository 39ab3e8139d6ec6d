#!/usr/bin/env bash
# tasks/fidelity/warm.sh SCRIPTS_DIR DATA_DIR [RECORDS...]
# Fills PyTorch's compile caches (Inductor's FX-graph and AOTAutograd caches, Triton's kernels, and
# FID_COMPILE_CACHE's artifacts when set) for several records at once, so the timed fidelity runs
# after it (all.sh, one record at a time) start from a warm cache: all.sh with the PyTorch side
# alone (FID_TORCH_ONLY), 2 steps, $FID_WARM_PAR (default 4) records at a time on the one GPU
# (FID_PAR), each limited to $FID_WARM_LIMIT s (default 280). Their compiles overlap on the CPU
# cores, where one after the other a cold compile costs a record 54 to more than 190 s on the H200
# machine (records 8 and 6, 2026-12-04). ACCUM and NO_COMPILE as in run.sh: the graphs must be the
# ones the timed run compiles, so the shapes (ACCUM x micro-batch) are the same. Nothing it
# measures is kept: its logs go to $OUT (default /tmp/fidelity-warm), not beside the results.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
[ $# -gt 2 ] || set -- "${1:?dir with record_N/train_gpt2.py}" "${2:?data dir}" 6 7 8 9 10 11
SCRIPTS=$1 DATA=$2; shift 2
PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True FID_TORCH_ONLY=1 FID_PAR=${FID_WARM_PAR:-4} \
  FID_LIMIT=${FID_WARM_LIMIT:-280} OUT=${OUT:-/tmp/fidelity-warm} bash "$HERE/all.sh" "$SCRIPTS" "$DATA" 2 "$@"
