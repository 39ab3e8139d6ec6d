#!/bin/bash
# One device call: build, run the GPU kernel tests, the GPT-2 benchmark and the PyTorch anchor.
# usage (on the GPU machine, from this checkout's root):
#   bench/gpu_run.sh [tests|bench|all] [bench steps]      anchor: ANCHOR=/path/run_anchor.sh
set -o pipefail
what=${1:-tests}
steps=${2:-50}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
t0=$(date +%s)
cmake -S . -B build -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_BUILD_TYPE=Release >"$OUT/cmake.log" 2>&1 || { tail -30 "$OUT/cmake.log"; exit 1; }
cmake --build build -j16 --target speedrun_core test_gpu_kernels >"$OUT/build.log" 2>&1 || { grep -E "error" "$OUT/build.log" | head -30; exit 1; }
cudainc=$(dirname "$(dirname "$(command -v nvcc)")")
gcc -O2 -std=gnu11 bench/bench_gpt2.c -Ihost -Ikernels -I"$cudainc/include" build/libspeedrun_core.a -L"$cudainc/lib64" \
  -lcudart -lcublasLt -lcublas -lm -lstdc++ -o build/bench_gpt2 2>>"$OUT/build.log" || { tail -20 "$OUT/build.log"; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
if [ "$what" = tests ] || [ "$what" = all ]; then
  t1=$(date +%s)
  for g in ${TEST_GROUPS:-""}; do
    SR_TEST_VERBOSE=1 ./build/tests/test_gpu_kernels $g 2>&1 | tee -a "$OUT/test_gpu_kernels.log" | grep -v "^ok"
  done
  [ -z "$TEST_GROUPS" ] && SR_TEST_VERBOSE=1 ./build/tests/test_gpu_kernels 2>&1 | tee "$OUT/test_gpu_kernels.log" | grep -v "^ok"
  echo "tests: $(( $(date +%s) - t1 )) s"
fi
if [ "$what" = bench ] || [ "$what" = all ]; then
  ./build/bench_gpt2 "$steps" 32 1024 1 2>&1 | tee "$OUT/bench_gpt2.log"
  if [ -n "$ANCHOR" ] && [ -x "$ANCHOR" ]; then
    "$ANCHOR" 2>&1 | tee "$OUT/anchor.log"
  fi
fi
