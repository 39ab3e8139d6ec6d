#!/usr/bin/env bash
# tasks/fidelity/all.sh SCRIPTS_DIR DATA_DIR [STEPS] [RECORDS...]
# One GPU-machine call: builds speedrun (CUDA, sm_90, Release) unless build/speedrun exists, then
# runs tasks/fidelity/run.sh for each record (default 1 2 3 4 5; any of 1-21) with SCRIPTS_DIR/
# record_N/train_gpt2.py (the benchmark's scripts, brought by you; nothing is fetched) and prints
# each comparison. Logs and JSON go to $OUT (or runs/fidelity) as record_NN.{log,torch.json,ours.json}.
# FID_LIMIT: seconds per record (default 280; a record cut by it reports rc=124 and the next one
# starts). FID_PAR: records run at once (default 1). FID_GPUS (a count, or auto: every GPU
# nvidia-smi lists): the records spread over that many GPUs, one queue a GPU (gpu_queues.sh), each run
# alone on its GPU (CUDA_VISIBLE_DEVICES): PyTorch's cold compiles of several records in the time of
# one, their artifacts kept (FID_COMPILE_CACHE); their tokens/s are marked as measured beside the
# other GPUs' runs (compare.py). ACCUM, NO_COMPILE and FID_TORCH_ONLY pass through to run.sh.
set -uo pipefail
SCRIPTS=${1:?dir with record_N/train_gpt2.py}; DATA=${2:?data dir}; STEPS=${3:-50}; shift 3 || true
RECORDS=${*:-1 2 3 4 5}
ROOT=$(cd "$(dirname "$0")/../.." && pwd); cd "$ROOT"
OUTDIR=${OUT:-runs/fidelity}; mkdir -p "$OUTDIR"
FID_GPUS=${FID_GPUS:-1}; ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU'); [ "$FID_GPUS" = auto ] && FID_GPUS=$ngpu
if ! [[ "$FID_GPUS" =~ ^[1-9][0-9]*$ ]] || { [ "$FID_GPUS" != 1 ] && [ "$FID_GPUS" -gt "$ngpu" ]; }; then
  echo "all.sh: FID_GPUS=$FID_GPUS: a count from 1 to this machine's $ngpu GPU(s), or auto" >&2; exit 2
fi
export FID_GPUS
if [ ! -x build/speedrun ]; then
  t0=$(date +%s)
  cmake -S . -B build -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_BUILD_TYPE=Release >"$OUTDIR/build.log" 2>&1 &&
    cmake --build build -j16 --target speedrun >>"$OUTDIR/build.log" 2>&1 || { tail -30 "$OUTDIR/build.log"; exit 1; }
  echo "build: $(( $(date +%s) - t0 )) s"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1
export TORCHINDUCTOR_FX_GRAPH_CACHE=1 TORCHINDUCTOR_AUTOGRAD_CACHE=1  # warm.sh fills them
one() {  # one N [GPU]: run.sh for record N (on GPU alone), its log and JSON into $OUTDIR; prints the comparison
  local n=$1 nn; nn=$(printf %02d "$1"); local t0; t0=$(date +%s); local dir=/tmp/fidelity/record_$nn
  [ -z "${2:-}" ] || export CUDA_VISIBLE_DEVICES=$2
  (cd /tmp && MASTER_PORT=$((29500 + n)) timeout "${FID_LIMIT:-280}" bash "$ROOT/tasks/fidelity/run.sh" "$n" \
      "$(cd "$ROOT" && realpath "$SCRIPTS")/record_$n/train_gpt2.py" \
      "$(cd "$ROOT" && realpath "$DATA")" "$STEPS" "$dir") >"$OUTDIR/record_$nn.log" 2>&1
  local r=$?
  { echo "== record $n${2:+ (GPU $2 of $FID_GPUS)}"
    grep -vE "^step [0-9]+/" "$OUTDIR/record_$nn.log" | grep -vE "^\s*$" | tail -25
    echo "rc=$r ($(( $(date +%s) - t0 )) s)"; } >"$OUTDIR/record_$nn.summary"
  cp "$dir/torch.json" "$OUTDIR/record_$nn.torch.json" 2>/dev/null
  cp "$dir/ours.json" "$OUTDIR/record_$nn.ours.json" 2>/dev/null
  return $r
}
# FID_PAR > 1 runs that many records at once (distinct ports and folders): their losses compare as
# well as alone, but their tokens/s come from a shared GPU and are marked so, not ratios to report
export -f one; export ROOT SCRIPTS DATA STEPS OUTDIR
[ "${FID_PAR:-1}" -gt 1 ] && export FID_CONTENDED=1
rc=0
if [ "$FID_GPUS" != 1 ]; then
  source "$ROOT/tasks/fidelity/gpu_queues.sh"
  gpu_queues "$FID_GPUS" one $RECORDS || rc=1
else
  for n in $RECORDS; do echo "$n"; done | xargs -P "${FID_PAR:-1}" -I{} bash -c 'one {}' || rc=1
fi
for n in $RECORDS; do cat "$OUTDIR/record_$(printf %02d "$n").summary" 2>/dev/null; done
exit $rc
