#!/usr/bin/env bash
# Bundle what the GPU machine (no package access) lacks into the ignored folder .gpu-deps/:
# Lua 5.4 and cJSON (../shared/gpu-host/prepare-deps.sh), utf8proc for the tokenizer and the zlib
# headers (static libz.a) for the large corpus reader, in case the machine lacks them. On
# the GPU machine, `source .gpu-deps/env.sh` unpacks every .deb there into /tmp/gpudeps.
set -euo pipefail
root=$(git rev-parse --show-toplevel)
bash "$root/../shared/gpu-host/prepare-deps.sh" >/dev/null
( cd "$root/.gpu-deps" && apt-get download -q libutf8proc-dev libutf8proc2 zlib1g-dev >/dev/null )
ls "$root/.gpu-deps"
