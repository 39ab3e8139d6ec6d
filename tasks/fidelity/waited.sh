#!/usr/bin/env bash
# tasks/fidelity/waited.sh CMD...: runs CMD and exits with its status; a SIGTERM (all.sh's time limit,
# sent to the whole process group, CMD included) waits for CMD to finish first. torch_side.py saves
# the compile artifacts made so far on SIGTERM (keep_on_term: seconds of serialising and xz); a
# shell that died at once would let its caller's `timeout` return, the device call end and $OUT go
# back without them (record 17's cold compile, 2026-12-07: 520 s cut, nothing saved)
"$@" & pid=$!
trap 'wait "$pid"; exit 143' TERM
wait "$pid"
