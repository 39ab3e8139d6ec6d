#!/usr/bin/env bash
# tasks/fidelity/gpu_queues.sh: records spread over the GPUs of one machine, one queue a GPU.
# Sourced (all.sh with FID_GPUS), it defines gpu_queues GPUS FUNC ITEM...: item k joins queue
# k % GPUS, each queue runs `FUNC ITEM GPU` for its items one after another, the queues at the same
# time; returns 1 when any run failed. A GPU never holds two runs at once: PyTorch's autotuning
# times its candidates alone, as it would on a machine of its own. Run as a script
# (tests/harness/test_fidelity_names.lua), `bash gpu_queues.sh GPUS CMD ITEM...` does the same with
# `CMD ITEM GPU` run by bash -c.
gpu_queues() {
  local gpus=$1 fn=$2; shift 2
  local items=("$@") g k pids=() rc=0
  [[ "$gpus" =~ ^[1-9][0-9]*$ ]] || { echo "gpu_queues: GPUS must be a positive integer, not '$gpus'" >&2; return 2; }
  for ((g = 0; g < gpus && g < ${#items[@]}; g++)); do
    ( q=0
      for ((k = g; k < ${#items[@]}; k += gpus)); do "$fn" "${items[k]}" "$g" || q=1; done
      exit $q ) &
    pids+=($!)
  done
  for k in "${pids[@]}"; do wait "$k" || rc=1; done
  return $rc
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -uo pipefail
  run_cmd() { bash -c "$CMD \"\$1\" \"\$2\"" _ "$1" "$2"; }
  GPUS=${1:?GPUS}; CMD=${2:?CMD}; shift 2
  gpu_queues "$GPUS" run_cmd "$@"
fi
