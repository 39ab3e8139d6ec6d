#!/usr/bin/env bash
# bench/gpu_session.sh SCRIPTS_DIR DATA_DIR: one device call that checks and measures the merged
# tree when device time is short. In order (each part with its own time limit, so a slow part
# cannot starve the rest): build; the GEMM kernel checks (incl. the padded path for odd sizes);
# the Lua GPU tests; fidelity of records 2-5 against their PyTorch scripts run eagerly with one
# micro-batch per step (NO_COMPILE=1 ACCUM=1, see tasks/fidelity/README.md); the kernel and Lua
# GPT-2 benchmarks; fidelity of record 1 against its compiled PyTorch script (whose tokens/s is the
# PyTorch anchor of the same call, anchors.md). Logs to $OUT/session.tgz.
set -uo pipefail
SCRIPTS=${1:?dir with record_N/train_gpt2.py}; DATA=${2:?data dir}
ROOT=$(cd "$(dirname "$0")/.." && pwd); cd "$ROOT"
LOG=/tmp/session; mkdir -p "$LOG"; OUTDIR=${OUT:-runs/session}; mkdir -p "$OUTDIR"
finish() { tar czf "$OUTDIR/session.tgz" -C "$LOG" . 2>/dev/null; }
trap finish EXIT
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
t0=$(date +%s)
cmake -S . -B build -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_BUILD_TYPE=Release >"$LOG/build.log" 2>&1 &&
  cmake --build build -j16 >>"$LOG/build.log" 2>&1 || { tail -30 "$LOG/build.log"; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
part() {  # part NAME SECONDS CMD...: runs CMD with a limit, log in $LOG/NAME.log, prints its tail
  local name=$1 lim=$2; shift 2; local t=$(date +%s)
  timeout "$lim" "$@" >"$LOG/$name.log" 2>&1; local rc=$?
  echo "== $name rc=$rc ($(( $(date +%s) - t )) s)"; finish   # logs so far reach $OUT even if the call is cut
}
part gemm 90 ./build/tests/test_gpu_kernels gemm; grep -E "FAIL|checks" "$LOG/gemm.log" | tail -5
for t in cuda graph model ops kernel memlimit; do
  part "lua_$t" 45 bash -c "cd tests && ../build/speedrun run test_gpu_$t.lua"
  grep -E "FAIL|passed|failed|error" "$LOG/lua_$t.log" | tail -4
done
part fidelity_2to5 300 env NO_COMPILE=1 ACCUM=1 OUT="$LOG" bash tasks/fidelity/all.sh "$SCRIPTS" "$DATA" 50 2 3 4 5
grep -E "== record|largest|tokens/s:|verdict|rc=|Error|error" "$LOG/fidelity_2to5.log"
part bench_c 60 ./build/bench_gpt2 30 32 1024 1; tail -12 "$LOG/bench_c.log"
part bench_lua 90 env SR_T0="$(date +%s.%N)" ./build/speedrun run bench/gpt2_lua.lua 60 32 1024 12; tail -12 "$LOG/bench_lua.log"
part fidelity_1 240 env OUT="$LOG" bash tasks/fidelity/all.sh "$SCRIPTS" "$DATA" 50 1
grep -E "== record|largest|tokens/s:|verdict|rc=|Error|error" "$LOG/fidelity_1.log"
echo "total: $(( $(date +%s) - t0 )) s"
