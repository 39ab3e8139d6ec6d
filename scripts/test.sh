#!/usr/bin/env bash
# Build and run every test (CTest). GPU tests skip (exit 77) where no GPU is usable.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure -j"$(nproc)"
