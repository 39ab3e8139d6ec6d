#!/usr/bin/env bash
# scripts/prepare-gpu-carry.sh [LLM_SPEEDRUNNER_GIT_DIR]: everything a device call carries, made on
# this machine (no GPU needed; nvcc 13 at /usr/local/cuda): .gpu-deps (prepare-gpu-deps.sh), a CUDA
# sm_90 build of speedrun and of the registry test (test_gpu_registry), with test_gpu_wgmma (sm_90a),
# xz-compressed in .prebuilt/ (bench/gpu_session.sh's `prebuilt` part), data/default (`speedrun data
# prepare --corpus default`: pieces of 3 KiB, the ladder's data) and data/pieces/large (the large corpus, same cut)
# and, given the benchmark's repository (a git dir, e.g. the mirror `fetch
# github:facebookresearch/llm-speedrunner` brings), its record scripts in
# runs/scripts/record_N/train_gpt2.py (and with BASE_REV=<commit>, .prebuilt-base/speedrun.xz: that
# commit's build, for an A/B). All are ignored by git; then carry
# [".gpu-deps", "data/default", ".prebuilt", "runs/scripts"] and start the command with
# `source .gpu-deps/env.sh; export SPEEDRUN_HOME=$PWD; bash bench/gpu_session.sh runs/scripts data/default prebuilt ...`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d .gpu-deps ] || bash scripts/prepare-gpu-deps.sh >/dev/null
NVCC=${NVCC:-/usr/local/cuda/bin/nvcc}
[ -x "$NVCC" ] || { echo "prepare-gpu-carry: no nvcc at $NVCC (set NVCC)" >&2; exit 1; }
cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_CUDA_COMPILER="$NVCC" >/dev/null
cmake --build build-cuda --target speedrun test_gpu_registry test_gpu_wgmma gemm_algos -j"$(nproc)" >/dev/null
# xz-compressed (19 MB each -> ~3 MB): what a call carries is at most 64 MiB, PyTorch's compile caches included
rm -rf .prebuilt && mkdir -p .prebuilt
xz -T0 -6 -c build-cuda/speedrun > .prebuilt/speedrun.xz
xz -T0 -6 -c build-cuda/tests/test_gpu_registry > .prebuilt/test_gpu_registry.xz
xz -T0 -6 -c build-cuda/tests/test_gpu_wgmma > .prebuilt/test_gpu_wgmma.xz
xz -T0 -6 -c build-cuda/gemm_algos > .prebuilt/gemm_algos.xz
# BASE_REV=<commit>: that commit's speedrun too, in .prebuilt-base/ (the `flex` part's A/B: an earlier
# build through the same bench in the same call), built in a worktree of its own (a full CUDA build;
# on the device it runs with this tree's Lua libraries, SPEEDRUN_HOME: a base whose C core lacks what
# they call fails there, so pick one with the same bindings)
if [ -n "${BASE_REV:-}" ]; then
  base=$(mktemp -d /tmp/speedrun-base.XXXXXX)
  git worktree add -q --detach "$base" "$BASE_REV"
  trap 'git worktree remove --force "$base"' EXIT   # also when its build fails
  cmake -S "$base" -B "$base/build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_CUDA_COMPILER="$NVCC" >/dev/null
  cmake --build "$base/build" --target speedrun -j"$(nproc)" >/dev/null
  rm -rf .prebuilt-base && mkdir -p .prebuilt-base
  xz -T0 -6 -c "$base/build/speedrun" > .prebuilt-base/speedrun.xz
fi
./build-cuda/speedrun data prepare --corpus default >/dev/null
# the large corpus (tasks/CALIBRATION.md) where the Debian packages can be fetched (docs/data.md; a warning otherwise)
./build-cuda/speedrun data prepare --corpus large --out data/pieces >/dev/null ||
  echo "prepare-gpu-carry: no data/pieces/large (the large corpus's Debian packages: docs/data.md)" >&2
if [ $# -ge 1 ]; then
  for n in $(seq 1 21); do
    mkdir -p "runs/scripts/record_$n"
    git --git-dir="$1" show "HEAD:workspace_templates/nanogpt_speedrun/record_$n/train_gpt2.py" \
      > "runs/scripts/record_$n/train_gpt2.py" || { echo "prepare-gpu-carry: no record_$n script in $1" >&2; exit 1; }
  done
fi
du -sh .gpu-deps .prebuilt data/default data/pieces/large ${1:+runs/scripts} 2>/dev/null || true
