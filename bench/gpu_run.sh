#!/bin/bash
# One device call: build, run the GPU tests (C kernel tests and the Lua front-end tests), the
# GPT-2 benchmarks (C kernels: bench_gpt2; through Lua: bench/gpt2_lua.lua) and the PyTorch anchor.
# usage (on the GPU machine, from this checkout's root):
#   bench/gpu_run.sh [tests|bench|all] [bench steps] [lua bench steps]   anchor: ANCHOR=/path/run_anchor.sh
#   bench/gpu_run.sh attn: the attention tests, bench_attention and PyTorch SDPA at the same shapes
set -o pipefail
what=${1:-tests}
steps=${2:-50}
lsteps=${3:-100}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
t0=$(date +%s)
cmake -S . -B build -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_BUILD_TYPE=Release >"$OUT/cmake.log" 2>&1 || { tail -30 "$OUT/cmake.log"; exit 1; }
cmake --build build -j16 --target speedrun_core speedrun test_gpu_registry bench_gpt2 bench_attention >"$OUT/build.log" 2>&1 || { grep -E "error" "$OUT/build.log" | head -30; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
if [ "$what" = attn ]; then
  SR_TEST_VERBOSE=1 ./build/tests/test_gpu_registry attention attention_backward 2>&1 | tee "$OUT/test_attention.log" | grep -v "^ok"
  for shape in "32 12 1024 64 1" "16 12 1024 64 1" "32 6 1024 128 1" "32 12 1024 64 0"; do
    ./build/bench_attention $shape
    python3 bench/attention_anchor.py $shape
  done
fi
if [ "$what" = tests ] || [ "$what" = all ]; then
  t1=$(date +%s)
  for g in ${TEST_GROUPS:-}; do
    SR_TEST_DEVICE=cuda SR_TEST_VERBOSE=1 ./build/tests/test_gpu_registry $g 2>&1 | tee -a "$OUT/test_gpu_registry.log" | grep -v "^ok"
  done
  [ -z "$TEST_GROUPS" ] && SR_TEST_DEVICE=cuda SR_TEST_VERBOSE=1 ./build/tests/test_gpu_registry 2>&1 | tee "$OUT/test_gpu_registry.log" | grep -v "^ok"
  for t in tests/*/test_gpu_*.lua; do
    echo "== $t"
    t2=$(date +%s)
    # from tests/, as CTest runs them (tests open files relative to it)
    (cd tests && timeout "${LUA_TEST_TIMEOUT:-300}" ../build/speedrun run "../$t") > "$OUT/$(basename "$t" .lua).log" 2>&1
    echo "rc=$? ($(( $(date +%s) - t2 )) s)"; grep -E "FAIL|passed|rel err|step [0-9]|comparisons" -A2 "$OUT/$(basename "$t" .lua).log" | head -60
  done
  echo "tests: $(( $(date +%s) - t1 )) s"
fi
if [ "$what" = bench ] || [ "$what" = all ]; then
  ./build/bench_gpt2 "$steps" 32 1024 1 2>&1 | tee "$OUT/bench_gpt2.log"
  SR_T0=$(date +%s.%N) timeout 400 ./build/speedrun run bench/gpt2_lua.lua "$lsteps" 32 1024 12 2>&1 | tee "$OUT/gpt2_lua.log"
  if [ -n "$ANCHOR" ] && [ -x "$ANCHOR" ]; then
    "$ANCHOR" 2>&1 | tee "$OUT/anchor.log"
  fi
fi
