#!/bin/bash
# One device call for the agent-kernel work: build, the kernel tests (CPU and GPU labels), and
# `speedrun kernel check` tables kept under $OUT. Run from the checkout root.
set -o pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
t0=$(date +%s)
cmake -S . -B build -DCMAKE_CUDA_ARCHITECTURES=90 >/dev/null && cmake --build build -j16 2>&1 | grep -E "error|warning" | tee "$OUT/build.txt"
echo "build: $(( $(date +%s) - t0 )) s"
export SPEEDRUN_KERNEL_CACHE=/tmp/srk-cache
cd build
ctest -R 'test_kernel_|test_gpu_kernel$' --output-on-failure -V 2>&1 | tee "$OUT/ctest_kernel.txt" | grep -E "^[0-9]+/|passed|failed|FAIL|Test +#|compiled for|SKIP" 
cd ..
for r in "docs/examples/gelu.cu --op gelu" "docs/examples/gelu.cu --op gelu --kernel gelu_bf16 --dtype bfloat16" \
         "docs/examples/gelu.cu --op gelu --kernel gelu_x4 --no-time" \
         "docs/examples/rms_norm.cu --op rms_norm" "docs/examples/rms_norm.cu --op rms_norm --kernel rms_norm_bf16 --dtype bfloat16"; do
  echo "### speedrun kernel check $r"
  ./build/speedrun kernel check $r
  echo "rc=$?"
done 2>&1 | tee "$OUT/check.txt"
# compile time cold vs warm cache (cubin for this GPU)
rm -rf /tmp/srk-cold
for i in 1 2; do SPEEDRUN_KERNEL_CACHE=/tmp/srk-cold ./build/speedrun kernel compile docs/examples/rms_norm.cu --kernel rms_norm; done 2>&1 | tee "$OUT/compile.txt"
