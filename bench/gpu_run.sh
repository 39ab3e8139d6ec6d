#!/bin/bash
# One device call: build, run the GPU kernel tests, and (with "bench") the benchmark + anchor.
# usage (on the GPU machine, from the checkout root): bench/gpu_run.sh [tests|bench|all] [test-group]
set -o pipefail
what=${1:-tests}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
t0=$(date +%s)
cmake -S . -B build -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_BUILD_TYPE=Release >"$OUT/cmake.log" 2>&1 || { tail -30 "$OUT/cmake.log"; exit 1; }
targets="test_gpu_kernels"
[ -f bench/bench_gpt2.c ] && targets="$targets bench_gpt2"
for t in $targets; do
  cmake --build build -j16 --target $t >"$OUT/build_$t.log" 2>&1 || { grep -E "error" "$OUT/build_$t.log" | head -30; tail -5 "$OUT/build_$t.log"; exit 1; }
done
echo "build: $(( $(date +%s) - t0 )) s"
if [ "$what" = tests ] || [ "$what" = all ]; then
  ./build/tests/test_gpu_kernels $2 2>&1 | tee "$OUT/test_gpu_kernels.log" | grep -v "^ok" | tail -80
fi
if [ "$what" = bench ] || [ "$what" = all ]; then
  [ -x bench/bench.sh ] && bench/bench.sh 2>&1 | tee "$OUT/bench.log"
fi
