#!/bin/bash
# One device call after merges: build, every GPU test (ctest -L gpu), then each record recipe and
# the default recipe for a few steps at proxy scale on the GPU (does it run; ms/step for planning
# the proxy ladder). Usage on the GPU machine, from the checkout root, with data/default carried:
#   source .gpu-deps/env.sh && bash bench/device_check.sh [steps]
set -o pipefail
steps=${1:-20}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
t0=$(date +%s)
cmake -S . -B build -DCMAKE_CUDA_ARCHITECTURES=90 >"$OUT/cmake.log" 2>&1 || { tail -30 "$OUT/cmake.log"; exit 1; }
cmake --build build -j16 >"$OUT/build.log" 2>&1 || { grep -E "error" "$OUT/build.log" | head -30; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
(cd build && timeout "${CTEST_TIMEOUT:-300}" ctest -L gpu --output-on-failure >"$OUT/ctest_gpu.log" 2>&1)
grep -E "tests passed|Test +#|FAIL" "$OUT/ctest_gpu.log" | tail -20
for r in tasks/record_0*/recipe.lua tasks/default/recipe.lua; do
  name=$(basename "$(dirname "$r")")
  timeout "${TRAIN_TIMEOUT:-60}" ./build/speedrun train "$r" --scale proxy --device cuda --steps "$steps" \
    --quiet --out "$OUT/$name" >"$OUT/$name.txt" 2>&1
  echo "$name rc=$? $(grep -E '^result|error' "$OUT/$name.txt" | head -2 | tr '\n' ' ')"
  grep -oE 'step:[0-9]+/[0-9]+ .*step_avg:[0-9.]+ms' "$OUT/$name/log.txt" 2>/dev/null | tail -1
done
echo "total: $(( $(date +%s) - t0 )) s"
