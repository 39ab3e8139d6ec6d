#!/usr/bin/env bash
# bench/gpu_session.sh SCRIPTS_DIR DATA_DIR [PART...]: THE one device call (the only script for the
# GPU machine): it builds, checks and measures the tree when device time is short. Each part has its own time limit, so a slow part cannot starve
# the rest; logs go to $OUT/session.tgz after every part (they come back even if the call is cut).
# Parts, run in the order given (default: build kernels lua bench anchor):
#   build      cmake + build (skipped work when build/ is already there on a warm machine)
#   kernels    tests/test_gpu_registry, every registry row (CUDA launchers against their CPU references)
#   lua        the Lua GPU tests (tests/*/test_gpu_*.lua)
#   gpulua     the Lua GPU tests $GPU_LUA (default every tests/*/test_gpu_*.lua) run one by one with
#              build/speedrun (no ctest: works with `prebuilt`), each limited to 300 s
#   bench      bench_gpt2 (C kernels) and bench/gpt2_lua.lua (through Lua): GPT-2 124M, 32x1024
#   anchor     record 1 against its compiled PyTorch script (tasks/fidelity): the PyTorch anchor's
#              tokens/s and peak memory in the same call (anchors.md), and record 1's fidelity
#   fidelity   records $FID_RECORDS (default 2 3 4 5; any of 1-21) against their scripts, each record
#              its own part (fidelity_NN) limited to $FID_LIMIT s (default 280 for records 1-11: about
#              two records at the full global batch per 600-s call; ACCUM=1 runs fit ~150 s; 420 for
#              records 12+, whose flex compiles took 180-250 s cold on the H200); the summary lines
#              (record | batch | largest | mean | verdict | tokens/s and memory ratios) at the end;
#              NO_COMPILE, ACCUM and FID_EXPERIMENT pass through (tasks/fidelity/README.md); FID_GPUS=auto (or a
#              count) on a machine of several GPUs: the records in one part, one queue a GPU, each run alone on
#              its GPU (tasks/fidelity/gpu_queues.sh): several records' cold compiles (FID_TORCH_ONLY=1) in one call
#   fidwarm    PyTorch's compile caches filled for records $FID_RECORDS, $FID_WARM_PAR (default 4) at a
#              time (tasks/fidelity/warm.sh), before `fidelity`: a cold compile is 54 to >190 s a record
#   noise      the PyTorch-vs-PyTorch floor: record $NOISE_RECORD (default 2) compiled against
#              eager from the same weights and tokens (what two correct runs differ by)
#   flex       flex attention (issue 16): registry rows, tests/cuda/test_gpu_flex.lua, then
#              bench/flex_attention.lua next to bench/flex_anchor.py (compiled FlexAttention); carried
#              .prebuilt-base/speedrun.xz ($FLEX_BASE): that build's bench/flex_attention.lua too (an A/B)
#   flexprof   Nsight Compute (`ncu --set full`) on one launch of the flex backward and forward kernels
#              (bench/flex_attention.lua): throughputs, occupancy, stalls; $FLEXPROF_KERNELS names others,
#              regexes over the demangled names (with SR_FLEX_WGMMA=1: flex_backward_hopper_kernel
#              flex_forward_hopper_kernel; records 1-4's dense backward (D 64): "flash_attention_backward_kernel2<64");
#              FLEXPROF_SASS=1 adds each one's instruction-level page ($OUT/flexprof/*.csv, bench/sass_stalls.py)
#              FLEXPROF_RUN: another script and its arguments to profile instead, e.g. "bench/loss_head.lua 65536
#              768 50304 tanh 2" with FLEXPROF_KERNELS=sr_xent (the loss group's kernels)
#   wgmmatest  tests/cuda/test_gpu_wgmma alone (seconds): kernels/wgmma.cuh's products in the core-matrix and
#              the 128-byte swizzled layouts, and a TMA load (kernels/tma.cuh) against sw128_off
#   wgmma      tests/cuda/test_gpu_wgmma (kernels/wgmma.cuh's products: the building block of Hopper
#              attention kernels) against a host reference; then the wgmma flex forward and backward
#              (kernels/hopper/, SR_FLEX_WGMMA=1) in each of $WGMMA_VARIANTS (SR_FLEX_STAGES=2|3,
#              SR_FLEX_FWD_BK=64, SR_FLEX_BWD_SPLIT=1, SR_FLEX_FWD_OVERLAP=0, SR_FLEX_BWD_OVERLAP=1 (with the split);
#              SR_FLEX_WGMMA=bwd or fwd: one of the two Hopper kernels, the mma.sync one for the other (SR_FLEX_FWD_V2=0
#              with bwd or 0: the mma.sync forward's kernel 1; its kernel 2 is the default); ":" joins settings; the default four cover every kernel): the flex and dense attention registry rows, test_gpu_flex, bench/flex_attention.lua;
#              the mma.sync kernels' table and bench/flex_anchor.py (WGMMA_ANCHOR=0 skips it) in the same call
#   calibrate  speedrun calibrate --tasks 1-5 --scale proxy --runs 3 (the proxy ladder)
#   fp8        to_fp8 / scaled_mm registry rows, tests/cuda/test_gpu_fp8.lua, bench/fp8_mm.lua
#   jit        the step compiler's kernels compiled one at a time (SPEEDRUN_JIT_THREADS=1) against all at once
#              (the default: every core), each from an empty kernel cache: records $JIT_RECORDS (default 12 18)
#              at proxy, 40 steps (4 warm-up steps: the capture), the "planned and compiled in" and warm-up
#              "NVRTC / engine setup" lines and the run's wall of each
#   jittests   the JIT's ctest tests (test_jit, test_jit_args, test_gpu_jit; needs `build`, not `prebuilt`) and
#              `speedrun kernel check` / `kernel compile` on docs/examples (cold and warm kernel cache)
#   xent       cross-entropy (issue 20): the cross_entropy / cross_entropy_backward registry rows,
#              bench/xent.lua at the records' lm_head shapes (record 1's [32768, 50257] bf16, also with
#              SR_XENT_V2=1, the previous kernels; [65536, 50304] bf16 and f32: records 5-18, 21), then
#              its PyTorch anchor bench/xent_anchor.py on the same shapes
#   loss       the loss head (issue 20): bench/loss_head.lua at the records' micro-batch (65,536 x 768 x
#              50,304), tanh and sigmoid softcaps, one micro-batch and loss / 8 (the deferred loss group),
#              unfused against the step compiler's loss group, then
#              its PyTorch anchor bench/loss_head_anchor.py (eager and compiled) on the same shapes
#   prebuilt   use .prebuilt/speedrun.xz (a CUDA build made elsewhere, carried) instead of building:
#              on a machine with nvcc 13 and no GPU, scripts/prepare-gpu-carry.sh makes it (ignored; carry ".prebuilt")
#   tune       speedrun calibrate --tune-steps for the default recipe ($TUNE_DEFAULT=0 skips it) and
#              records $TUNE_RECORDS (default every tasks/record_NN), one part each ($TUNE_LIMIT s): the tuned
#              recipes come back as $OUT/tuned/<name>.lua, the ladder as $OUT/calibration.json;
#              $TUNE_TARGET: tune every recipe to that target and write it into them
#              $TUNE_BRACKET LO:HI: the first two probes (resume a search a time limit cut); $TUNE_BRACKET_<n>
#              (TUNE_BRACKET_default for the default recipe): record n's own, over TUNE_BRACKET;
#              auto: each recipe's last bracket from calibration.json (re-tuning near the old budget; a search a
#              limit cut resumes there, its recorded probes reused: copy the returned calibration.json back first);
#              TUNE_BRACKET_FROM=FILE: where none is given, the recipe's proxy budget in FILE +-$TUNE_BRACKET_PCT %
#              (default 8; e.g. FILE=tasks/calibration-h100.json for a move to another corpus);
#              $TUNE_PROBE_JOBS (TUNE_PROBE_JOBS_<n>, _default): --probe-jobs, a probe's runs N at a time (default all
#              3; record 21's proxy needs ~27 GB a run at its validation checks: 2 on an 80 GB card);
#              $TUNE_LIMIT_<n> (_default): that recipe's part limit, over TUNE_LIMIT; $TUNE_RUNS (TUNE_RUNS_<n>):
#              the runs of a score the budget is tuned for (default 3; a noisy record's cut is tight only with
#              more: a task's score then runs as many, tasks/CALIBRATION.md); $TUNE_RUNS_UP_TO: --runs-up-to, a
#              budget not tight for that many runs searched again for 2 more, then 4 ..., at most this many
#              (one recipe at a time: four searches at once on one H200 were slower than in turn,
#              12 processes time-slicing one GPU; measured 2026-12-03)
#   retime     plain calibrate of records $RETIME_RECORDS (default 1-5; "1-21", "1,7,9-11") and default ($RETIME_DEFAULT=0
#              skips it), each run alone, $RETIME_RUNS runs each (default: calibrate's, 3 or the runs a reference's
#              budget was tuned for: record 1's 10, records 2 and 3's 5; 1-11 at 3 runs took 123 s); RETIME_RUNS_<n>:
#              record n's own
#   pilot      records $PILOT_RECORDS (default $PILOT_RECORD, default 1) at each of $PILOT_STEPS_<n> (else
#              $PILOT_STEPS, default 1600 2400 3200 4000)
#              proxy steps, schedule scaled, seeds $PILOT_SEEDS (default 1 2 3) at once: the final validation losses, to
#              choose the ladder's target before `tune` (tasks/CALIBRATION.md); on each data dir of
#              $PILOT_DATA (default DATA_DIR), e.g. PILOT_DATA="data/whole/default data/default" to
#              compare whole documents (`data prepare --piece-bytes 0 --out data/whole`) with the pieces
#              `data prepare` cuts by default (tasks/CALIBRATION.md)
#              $PILOT_STREAM random: each run from its own random place in the training stream
#              (`train --stream random`, as calibrate's and score's runs: docs/harness.md)
#   fsr        speedrun score --task N (N in $FSR_TASKS, default every task) of the task's start
#              workspace (`task init`) and of its target record's recipe, against calibration.json
#   oracle     `speedrun agent run` on task $ORACLE_TASK (default 1), proxy scale, against
#              bench/oracle_server.py playing the oracle model; calibration $ORACLE_CALIBRATION
#              (default $OUT/calibration.json, from `tune` earlier in the call); run + report to $OUT
#   main       `speedrun train` with no arguments, seeds 1-3 (the README's main job)
#   restricted records $RESTRICT_RECORDS (default 1 12 19) at proxy in the score sandbox (`train
#              --restricted`), seeds $RESTRICT_SEEDS (default 1), stream $RESTRICT_STREAM (default fixed): the status, the checks (causality's logit and token-loss changes, eval's
#              state), eval's time per token against training's and setup's work against the train
#              time (the plausibility flags' ratios)
#   warmup     where the counted warm-up goes: records $WARMUP_RECORDS (default 2 19) at proxy, seeds 1-3 one
#              at a time, with the CUDA runtime's default lazy kernel loading and with
#              CUDA_MODULE_LOADING=EAGER (every kernel loaded at start-up, off the clock): the warm-up
#              lines (per-step ms; setup: cudaMalloc, cudaFree, GEMM plans, ...), the wall line's start,
#              the train time (EAGER did not shorten step 1, 2026-12-06: kernel loading is not its cost);
#              then step 1 of each record profiled (bench/profile_recipe.lua --first: its ops by time,
#              the setup in it), what of step 1 is not setup; WARMUP_MODES (default lazy; "lazy eager" adds EAGER)
#   profile    bench/profile_recipe.lua on records $PROF_RECORDS (default 1 5) at full scale: where
#              a step's kernel time goes, per op
#   gemmalgos  bench/gemm_algos.cu: each GEMM of a record-12 step (fwd, dX with beta 0 and 1, dW f32 beta 1) under
#              each of cuBLASLt's heuristic's algorithms (up to 16) against its first; the step's GEMM time both ways
#              (carried in .prebuilt as gemm_algos.xz; $GEMM_ALGOS_M tokens, default 65536)
#   ab         engine settings side by side: for each of $AB_SETTINGS ("-": the default; ":" joins variables,
#              e.g. AB_SETTINGS="- SR_DOT_V1=1:SR_NORM_ACC=0") the registry rows $AB_ROWS, then records
#              $AB_RECORDS' (default 12; AB_RECORDS="" none) full step profiled (--fuse on: the graph replayed), rows
#              matching $AB_PATTERN; AB_LOSS="ARGS": bench/loss_head.lua ARGS under each (the loss group's kernels);
#              AB_FLEX=1: also bench/flex_attention.lua under each setting (its record-12 row, documents only, the
#              op-by-op lines, the dense rows), then bench/flex_anchor.py once (compiled FlexAttention, same call;
#              AB_FLEX_ANCHOR=0 skips it): a flex kernel A/B
#   lend       graph memory lending (the default; SR_GRAPH_LEND=0 off, docs/cuda.md "Lending"): tests/cuda/test_gpu_memlimit, then
#              records $LEND_RECORDS (default 19) against eager PyTorch (tasks/fidelity, NO_COMPILE=1 ACCUM=1, $FID_STEPS
#              default 30) without and with lending, under a cap of $LEND_CAP bytes (default 79,000,000,000 on a
#              card of more than 100 GB: an H100's room on an H200): whether the harness's graph survives beside the
#              eager work (results.json cuda_graph) and the tokens/s it buys; needs runs/scripts
#   rotary     kernels/rotary.cu's kernel 2 against kernel 1 (SR_ROTARY_V1=1): registry rows, then the
#              rotary rows of record $ROT_RECORD's (default 5) full step profiled both ways
#   ew         kernels/elementwise.cu's unary kernels with the function compiled in against the run-time
#              function (SR_EW_V1=1): the unary / unary_backward registry rows, then record $EW_RECORD's
#              (default 1: GELU is 9 % of its step) full step profiled both ways, same call
#   speed      issue 20's table: for each of $SPEED_RECORDS (default 1 5), the record against its compiled
#              script (tasks/fidelity, $ACCUM default 1, $FID_STEPS default 30: tokens/s and peak memory of
#              both in the same call), then its full step profiled (bench/profile_recipe.lua: eager
#              ms/step, the fused graph's ms/step, the top ops of the fused step: each fused group a
#              `fused.<ops>` row); one `speed:` line per record at the end
#   scale      autograd's scale fusion: record $SCALE_RECORD's (default 1) full step with SPEEDRUN_GRAD_SCALE=0,
#              then 1 (the cross-entropy's upstream 1/n as the lm_head GEMMs' alpha), same call
#   fuse       the step compiler (docs/cuda.md): tests/cuda/test_gpu_fuse.lua (every generated kernel
#              against the unfused kernels, whole steps, the harness's fused graph), then
#              bench/profile_recipe.lua on records $FUSE_RECORDS (default 1 5) at full scale with the
#              step replayed as a CUDA graph, fusion off then $FUSE_MODES (default on; noloss: a plan
#              without loss groups, e.g. FUSE_MODES="noloss on" FUSE_RECORDS="9 19") (the plan printed): before/after
# CALIB_FROM=FILE: the parts that write $OUT/calibration.json (tune, retime, fsr, oracle) start from
# a copy of FILE (e.g. tasks/calibration-h100.json: the ladder grows across calls and sessions,
# `TUNE_BRACKET=auto` finds earlier searches); copy the returned file back over it.
# SCRIPTS_DIR holds record_N/train_gpt2.py (the benchmark's scripts, brought by you).
# The fidelity parts keep PyTorch's compile artifacts in $OUT/cc/record_N.bin.xz.NN (FID_COMPILE_CACHE,
# parts of <= 15 MiB; at most 8 files come back from a call); copy them into runs/cc and carry it to
# skip the cold compiles (2-6 minutes a record from 12 on) in the next call.
set -uo pipefail
SCRIPTS=${1:?dir with record_N/train_gpt2.py (or - when no part needs them)}; DATA=${2:?data dir (or -)}; shift 2
PARTS=${*:-build kernels lua bench anchor}
ROOT=$(cd "$(dirname "$0")/.." && pwd); cd "$ROOT"
LOG=/tmp/session; mkdir -p "$LOG"; OUTDIR=${OUT:-runs/session}; mkdir -p "$OUTDIR"
# not the weight files; written then renamed, so a call cut while it writes keeps the last whole one
finish() { tar czf "$OUTDIR/session.tgz.tmp" --exclude="*.srw" -C "$LOG" . 2>/dev/null && mv "$OUTDIR/session.tgz.tmp" "$OUTDIR/session.tgz"; }
trap finish EXIT
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
t0=$(date +%s)
# PyTorch's compile artifacts per record (tasks/fidelity/torch_side.py): saved under $OUTDIR/cc (they
# come back from the call), read first from runs/cc when carried there from an earlier call (those
# are not written again, so they do not come back a second time)
if [ -n "${CALIB_FROM:-}" ] && [ ! -f "$OUTDIR/calibration.json" ]; then
  cp "$CALIB_FROM" "$OUTDIR/calibration.json" || { echo "gpu_session: CALIB_FROM=$CALIB_FROM cannot be copied" >&2; exit 2; }
fi
export FID_COMPILE_CACHE=${FID_COMPILE_CACHE:-$(realpath "$OUTDIR")/cc}; mkdir -p "$FID_COMPILE_CACHE"
[ -d runs/cc ] && export FID_COMPILE_CACHE_FROM=$ROOT/runs/cc
from_bracket() {  # from_bracket NAME: LO:HI around NAME's proxy budget in $TUNE_BRACKET_FROM (+-$TUNE_BRACKET_PCT %, default 8)
  python3 - "$TUNE_BRACKET_FROM" "$1" "${TUNE_BRACKET_PCT:-8}" <<'PY'
import json, sys
d, name, pct = json.load(open(sys.argv[1])), sys.argv[2], float(sys.argv[3]) / 100
for card in d.get("entries", {}).values():
    e = (card.get("proxy") or {}).get(name)
    if e and e.get("steps"):
        print(f"{max(1, round(e['steps'] * (1 - pct)))}:{round(e['steps'] * (1 + pct))}")
        break
PY
}
part() {  # part NAME SECONDS CMD...: runs CMD with a limit, log in $LOG/NAME.log, prints its time
  local name=$1 lim=$2; shift 2; local t=$(date +%s)
  timeout "$lim" "$@" >"$LOG/$name.log" 2>&1; local rc=$?
  echo "== $name rc=$rc ($(( $(date +%s) - t )) s)"; finish
}
unxz_to() {  # unxz_to FILE.xz DEST: decompressed, executable (xz, else Python's lzma)
  { if command -v xz >/dev/null; then xz -dc "$1"; else python3 -c 'import lzma,sys; sys.stdout.buffer.write(lzma.open(sys.argv[1]).read())' "$1"; fi; } > "$2" && chmod +x "$2"
}
ab_kernel() {  # ab_kernel NAME VAR RECORD "GROUPS" PATTERN: a kernel's registry rows, then RECORD's full
  # step profiled with VAR=1 (the kernels before) and VAR=0, same call; the rows matching PATTERN
  local name=$1 var=$2 r; r=$(printf record_%02d "$3")
  part "${name}_rows" 180 env SR_TEST_DEVICE=cuda SR_TEST_VERBOSE=1 ./build/tests/test_gpu_registry $4
  grep -vE "^ok" "$LOG/${name}_rows.log" | tail -10
  for v in 1 0; do
    part "${name}_v1_$v" 240 env "$var=$v" ./build/speedrun run bench/profile_recipe.lua "tasks/$r/recipe.lua" \
      --scale full --device cuda --warmup 2 --steps 3 --top 40
    grep -E "^ms/step|$5|^total" "$LOG/${name}_v1_$v.log" | head -14
  done
}
ab_settings() {  # the ab part: each of $AB_SETTINGS ("-" the default engine; ":" joins variables) runs the
  # registry rows $AB_ROWS, then records $AB_RECORDS' (default 12; "" none) full step profiled, replayed fused;
  # AB_FLEX=1 bench/flex_attention.lua too; AB_LOSS="ARGS": bench/loss_head.lua ARGS too (the loss group)
  local var tag n r
  for var in ${AB_SETTINGS:?AB_SETTINGS: the engine settings to compare, e.g. "- SR_DOT_V1=1:SR_NORM_ACC=0"}; do
    tag=$(echo "$var" | tr -c 'A-Za-z0-9\n' _); [ "$var" = - ] && var=""
    [ -z "${AB_ROWS:-}" ] || { part "ab_rows_$tag" 180 env ${var//:/ } SR_TEST_DEVICE=cuda ./build/tests/test_gpu_registry $AB_ROWS
                               tail -"$(( $(wc -w <<<"$AB_ROWS") + 1 ))" "$LOG/ab_rows_$tag.log"; }
    for n in ${AB_RECORDS-12}; do
      r=$(printf record_%02d "$n")
      part "ab_${n}_$tag" 240 env ${var//:/ } ./build/speedrun run bench/profile_recipe.lua "tasks/$r/recipe.lua" \
        --scale full --device cuda --fuse on --warmup 2 --steps 3 --top 40
      echo "-- $r ${var:-default}"; grep -E "^ms/step|${AB_PATTERN:-^total}" "$LOG/ab_${n}_$tag.log" | head -12
    done
    [ -z "${AB_LOSS:-}" ] || { part "ab_loss_$tag" 150 env ${var//:/ } ./build/speedrun run bench/loss_head.lua $AB_LOSS
                               echo "-- loss head ${var:-default}"; grep -E "^\| |^fused against|^  fused\." "$LOG/ab_loss_$tag.log"; }
    [ "${AB_FLEX:-0}" = 1 ] || continue
    part "ab_flex_$tag" 120 env ${var//:/ } ./build/speedrun run bench/flex_attention.lua 20
    echo "-- flex ${var:-default}"; grep -E "^\| window|^\| documents|^  flex|^dense" "$LOG/ab_flex_$tag.log"
  done
  [ "${AB_FLEX:-0}" = 1 ] && [ "${AB_FLEX_ANCHOR:-1}" = 1 ] || return 0
  part ab_flex_anchor 240 python3 bench/flex_anchor.py 20
  grep -E "^\| window|^\| documents|^dense" "$LOG/ab_flex_anchor.log"
}
expand_list() { local p; for p in ${1//,/ }; do case $p in *-*) seq "${p%-*}" "${p#*-}" ;; *) echo "$p" ;; esac; done; }
retime_calibrate() {  # the retime part: records with RETIME_RUNS_<n> one calibrate each, the rest in one
  local plain="" n rv rc=0 c=(--scale proxy --device cuda --data "$DATA" --calibration "$OUTDIR/calibration.json" --out /tmp/retime)
  local runs=(${RETIME_RUNS:+--runs "$RETIME_RUNS"})   # unset: calibrate's own (3, or the runs a reference was tuned for)
  for n in $(expand_list "${RETIME_RECORDS:-1-5}"); do
    rv="RETIME_RUNS_$n"
    if [ -n "${!rv:-}" ]; then ./build/speedrun calibrate --tasks "$n" --runs "${!rv}" "${c[@]}" || rc=1
    else plain="$plain${plain:+,}$n"; fi
  done
  [ -z "$plain" ] || ./build/speedrun calibrate --tasks "$plain" "${runs[@]}" "${c[@]}" || rc=1
  [ "${RETIME_DEFAULT:-1}" = 0 ] ||
    ./build/speedrun calibrate --recipe tasks/default/recipe.lua --name default "${runs[@]}" "${c[@]}" || rc=1
  return $rc
}
fidelity_summary() { grep -hE "== record|patches:|largest|tokens/s:|peak GPU|start-up|verdict|rc=|Error|error" "$@"; }
for p in $PARTS; do
  case $p in
    prebuilt)   # a CUDA build of this checkout's binaries carried xz-compressed in .prebuilt/ (skips the build part)
      mkdir -p build/tests && unxz_to .prebuilt/speedrun.xz build/speedrun && ./build/speedrun --version &&
        { [ ! -f .prebuilt/test_gpu_registry.xz ] || unxz_to .prebuilt/test_gpu_registry.xz build/tests/test_gpu_registry; } &&
        { [ ! -f .prebuilt/test_gpu_wgmma.xz ] || unxz_to .prebuilt/test_gpu_wgmma.xz build/tests/test_gpu_wgmma; } &&
        { [ ! -f .prebuilt/gemm_algos.xz ] || unxz_to .prebuilt/gemm_algos.xz build/gemm_algos; } ||
        { part build 300 cmake -S . -B build -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_BUILD_TYPE=Release &&
          part build2 300 cmake --build build -j16 --target speedrun; [ -x build/speedrun ] || exit 1; } ;;
    build)
      part build 300 bash -c "cmake -S . -B build -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_BUILD_TYPE=Release &&
                               cmake --build build -j16" || true
      grep -E "error|Error" "$LOG/build.log" | head -20; [ -x build/speedrun ] || exit 1 ;;
    kernels)
      part kernels 300 env SR_TEST_DEVICE=cuda SR_TEST_VERBOSE=1 ./build/tests/test_gpu_registry ${KERNEL_GROUPS:-}
      grep -vE "^ok" "$LOG/kernels.log" | tail -30 ;;
    lua)
      part lua 560 ctest --test-dir build -L gpu -E '^test_gpu_registry$' --timeout 300 --output-on-failure
      grep -E "Test +#|tests passed|FAIL|Error" "$LOG/lua.log" | tail -30 ;;
    gpulua) # the Lua GPU tests by name, without ctest (a prebuilt binary has no test tree)
      for t in ${GPU_LUA:-$(cd tests && ls */test_gpu_*.lua | sed 's/\.lua$//')}; do
        part "gpulua_${t##*/}" 300 bash -c "cd tests && SPEEDRUN_TEST_TMP=/tmp/srtest ../build/speedrun run $t.lua"
        tail -4 "$LOG/gpulua_${t##*/}.log"
      done ;;
    attn)
      part attn 300 bash -c 'cd tests && SR_TEST_DEVICE=cuda SR_TEST_VERBOSE=1 ../build/tests/test_gpu_registry attention attention_backward &&
        for shape in "32 12 1024 64 1" "16 12 1024 64 1" "32 6 1024 128 1" "32 12 1024 64 0"; do
          ../build/bench_attention $shape; python3 ../bench/attention_anchor.py $shape; done'
      grep -vE "^ok" "$LOG/attn.log" | tail -30 ;;
    flex)   # flex attention (issue 16): its registry rows, its GPU test, the speed table and its anchor;
      # each setting of $FLEX_VARIANTS (default: the mma.sync kernels everywhere, SR_FLEX_WGMMA=0, and the
      # Hopper ones everywhere, narrow windows too, SR_FLEX_WGMMA=1; a variant's settings joined by ":") checked (the registry rows $FLEX_VARIANT_ROWS,
      # default flex_attention_backward: a forward variant names flex_attention too; test_gpu_flex)
      # and timed beside the default; with $FLEX_BASE (default .prebuilt-base/speedrun.xz, when
      # carried: an earlier build's binary, ignored by git) its speed table too, in the same call: an
      # A/B of kernel changes (the default's table, the base's and PyTorch's first, the variants' after:
      # a part cut by its limit loses a variant's table, not the comparison)
      base=${FLEX_BASE:-.prebuilt-base/speedrun.xz}; [ -f "$base" ] && unxz_to "$base" /tmp/speedrun-base || rm -f /tmp/speedrun-base
      export FLEX_VARIANTS=${FLEX_VARIANTS-SR_FLEX_WGMMA=0 SR_FLEX_WGMMA=1}
      part flex 560 bash -c 'cd tests && SR_TEST_DEVICE=cuda SR_TEST_VERBOSE=1 ../build/tests/test_gpu_registry flex_block_mask \
          flex_block_mask_lists flex_attention flex_attention_backward; echo "registry rc=$?"
        ../build/speedrun run cuda/test_gpu_flex.lua; echo "test_gpu_flex rc=$?"
        for var in $FLEX_VARIANTS; do
          env ${var//:/ } SR_TEST_DEVICE=cuda ../build/tests/test_gpu_registry ${FLEX_VARIANT_ROWS:-flex_attention_backward} | tail -1
          echo "registry ($var) rc=${PIPESTATUS[0]}"
          env ${var//:/ } ../build/speedrun run cuda/test_gpu_flex.lua | tail -1; echo "test_gpu_flex ($var) rc=${PIPESTATUS[0]}"
        done
        cd .. && ./build/speedrun run bench/flex_attention.lua 20
        [ ! -x /tmp/speedrun-base ] || { echo "== the base build ($(/tmp/speedrun-base --version | head -1))"; /tmp/speedrun-base run bench/flex_attention.lua 20; }
        python3 bench/flex_anchor.py 20; python3 bench/attention_anchor.py 32 12 1024 64 1 20
        for var in $FLEX_VARIANTS; do echo "== $var"; env ${var//:/ } ./build/speedrun run bench/flex_attention.lua 20; done'
      grep -vE "^ok" "$LOG/flex.log" | tail -80 ;;
    flexprof)  # Nsight Compute on the flex kernels at the record-12 mask (one launch each): where their time goes
      export NCU_ONE="--kernel-name-base demangled --launch-skip 1 --launch-count 1 --clock-control none"  # the second launch of a name
      part flexprof 400 bash -c 'for kn in ${FLEXPROF_KERNELS:-flex_backward_kernel flex_forward_kernel}; do
          ncu $NCU_ONE --kernel-name "regex:$kn" --set full \
            ./build/speedrun run ${FLEXPROF_RUN:-bench/flex_attention.lua 2}; done'
      grep -E "flex_|Duration|Throughput|Pipe|Occupancy|Registers|Shared Memory Config|Bank|Warp Cycles|Stall|Issued|L2 Hit|Block Limit|Est. Speedup|    [A-Z][a-z]+.*Stall" "$LOG/flexprof.log" | head -120
      # FLEXPROF_SASS=1: each kernel's instructions with their issue counts and stall samples (the
      # source page) to $OUT/flexprof/<kernel>.csv, read with bench/sass_stalls.py
      [ "${FLEXPROF_SASS:-0}" = 1 ] && { mkdir -p "$OUTDIR/flexprof"; part flexsass 300 bash -c 'for kn in ${FLEXPROF_KERNELS:-flex_backward_kernel flex_forward_kernel}; do
          fn=$(echo "$kn" | tr -c "A-Za-z0-9_\n" _)
          ncu $NCU_ONE --kernel-name "regex:$kn" --section SourceCounters \
            --section WarpStateStats --section LaunchStats --section Occupancy --import-source no \
            -f -o "/tmp/sass_$fn" ./build/speedrun run ${FLEXPROF_RUN:-bench/flex_attention.lua 2} >/dev/null
          ncu -i "/tmp/sass_$fn.ncu-rep" --page source --csv --print-source sass > "'"$OUTDIR"'/flexprof/$fn.csv"
          echo "$kn: $(wc -l < "'"$OUTDIR"'/flexprof/$fn.csv") lines ($fn.csv)"; done'
        cat "$LOG/flexsass.log" | tail -8; } ;;
    wgmmatest)  # tests/cuda/test_gpu_wgmma alone: the products in both shared-memory layouts, a TMA load
      part wgmmatest 60 ./build/tests/test_gpu_wgmma
      cat "$LOG/wgmmatest.log" ;;
    wgmma)  # Hopper's warpgroup MMA (kernels/wgmma.cuh) against a host reference, then the flex
      # kernels built on it (kernels/hopper/, SR_FLEX_WGMMA=1), each variant of $WGMMA_VARIANTS its own part
      # (a variant's settings joined by ":"): registry rows, test_gpu_flex and the speed table; the
      # mma.sync kernels' table (SR_FLEX_WGMMA=0) and PyTorch's compiled FlexAttention on the same masks
      # (bench/flex_anchor.py; WGMMA_ANCHOR=0 skips it) first, then the attention rows through them
      # (WGMMA_DENSE=0 skips them). About 140 s a variant: the default four and the rest need ~12 min,
      # two calls (WGMMA_VARIANTS picks)
      part wgmma 60 ./build/tests/test_gpu_wgmma
      cat "$LOG/wgmma.log"
      part wgmma_base 200 bash -c 'echo "== SR_FLEX_WGMMA=0"; SR_FLEX_WGMMA=0 ./build/speedrun run bench/flex_attention.lua 10
        [ "${WGMMA_ANCHOR:-1}" = 0 ] || python3 bench/flex_anchor.py 10'
      grep -vE "^ok" "$LOG/wgmma_base.log" | tail -20
      # dense attention through the same kernels (attention.cu: a mask of no lists), both dQ paths
      [ "${WGMMA_DENSE:-1}" = 0 ] || { part wgmma_dense 240 bash -c 'cd tests && for split in 0 1; do
          SR_FLEX_WGMMA=1 SR_FLEX_BWD_SPLIT=$split SR_TEST_DEVICE=cuda ../build/tests/test_gpu_registry attention \
            attention_backward | tail -1; echo "registry (dense, split $split) rc=${PIPESTATUS[0]}"; done'
        grep -vE "^ok" "$LOG/wgmma_dense.log" | tail -8; }
      for var in ${WGMMA_VARIANTS:-SR_FLEX_FWD_OVERLAP=0:SR_FLEX_STAGES=2 SR_FLEX_FWD_OVERLAP=0:SR_FLEX_STAGES=3 SR_FLEX_FWD_BK=64:SR_FLEX_BWD_SPLIT=1 SR_FLEX_BWD_SPLIT=1:SR_FLEX_BWD_OVERLAP=1}; do
        tag=$(echo "$var" | tr -c 'A-Za-z0-9\n' _); var=${var//:/ }
        part "wgmma_$tag" 240 env SR_FLEX_WGMMA=1 $var bash -c 'echo "== SR_FLEX_WGMMA=1 '"$var"'"
          (cd tests && SR_TEST_DEVICE=cuda ../build/tests/test_gpu_registry flex_attention flex_attention_backward attention attention_backward | tail -1
           echo "registry rc=${PIPESTATUS[0]}"
           ../build/speedrun run cuda/test_gpu_flex.lua | tail -1; echo "test_gpu_flex rc=${PIPESTATUS[0]}")
          ./build/speedrun run bench/flex_attention.lua 10'
        grep -vE "^ok" "$LOG/wgmma_$tag.log" | tail -14
      done ;;
    jit)
      for rn in ${JIT_RECORDS:-12 18}; do
        r=$(printf "record_%02d" "$rn")
        for th in 1 default; do
          cache=$(mktemp -d); w0=$(date +%s.%N)
          ( [ "$th" = default ] || export SPEEDRUN_JIT_THREADS=$th; export SPEEDRUN_KERNEL_CACHE=$cache
            timeout 200 ./build/speedrun train "tasks/$r/recipe.lua" --scale proxy --device cuda --data "$DATA" --steps 40 \
              --val-every 1000000000 --out "/tmp/jit-$r-$th" > "$LOG/jit-$r-$th.log" 2>&1 )
          echo "$r, SPEEDRUN_JIT_THREADS=$th: $(grep -hoE "planned and compiled in [0-9]+ms|NVRTC [0-9]+ms and engine setup [0-9]+ms" \
            "$LOG/jit-$r-$th.log" 2>/dev/null | tr '\n' ';'), run wall $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $w0}") s"
          rm -rf "$cache"
        done
      done; finish ;;
    fp8)    # float8 (issue 17): the cast and scaled_mm registry rows, their GPU test, FP8 vs bf16 lm_head GEMMs
      part fp8 400 bash -c 'cd tests && SR_TEST_DEVICE=cuda SR_TEST_VERBOSE=1 ../build/tests/test_gpu_registry to_fp8 scaled_mm copy
        echo "registry rc=$?"; ../build/speedrun run cuda/test_gpu_fp8.lua; echo "test_gpu_fp8 rc=$?"
        cd .. && ./build/speedrun run bench/fp8_mm.lua'
      grep -vE "^ok" "$LOG/fp8.log" | tail -40 ;;
    xent)   # cross-entropy (issue 20): registry rows, then GB/s of ours (kernel 3; kernel 2 for A/B) and PyTorch's
      part xent_rows 240 env SR_TEST_DEVICE=cuda SR_TEST_VERBOSE=1 ./build/tests/test_gpu_registry cross_entropy cross_entropy_backward
      grep -vE "^ok" "$LOG/xent_rows.log" | tail -30
      part xent_bench 300 bash -c './build/speedrun run bench/xent.lua 32768 50257 bfloat16; echo "xent rc=$?"
        SR_XENT_V2=1 ./build/speedrun run bench/xent.lua 32768 50257 bfloat16 5; echo "xent v2 rc=$?"
        ./build/speedrun run bench/xent.lua 65536 50304 bfloat16 10; echo "xent 50304 rc=$?"
        ./build/speedrun run bench/xent.lua 65536 50304 float32 10; echo "xent f32 rc=$?"'
      grep -E "^cross_entropy|^\||rc=|ms a step|GB/s|rror" "$LOG/xent_bench.log" | tail -90
      part xent_anchor 560 bash -c 'python3 bench/xent_anchor.py 32768 50257 bfloat16
        python3 bench/xent_anchor.py 65536 50304 bfloat16 10; python3 bench/xent_anchor.py 65536 50304 float32 10'
      grep -vE "^\s*$" "$LOG/xent_anchor.log" | tail -30 ;;
    loss)   # the loss head (issue 20): ours unfused and fused (the loss group), then PyTorch's eager and compiled
      part loss_bench 300 bash -c 'for cap in tanh sigmoid; do for n in 1 8; do
          ./build/speedrun run bench/loss_head.lua 65536 768 50304 $cap 10 $n; echo "loss $cap /$n rc=$?"; done; done'
      grep -E "^loss head|^fused plan|cross_entropy|^unfused|^fused |kernels:|^fused against|^\||rc=|rror" "$LOG/loss_bench.log" | tail -40
      part loss_anchor 400 bash -c 'for cap in tanh sigmoid; do for n in 1 8; do
          python3 bench/loss_head_anchor.py 65536 768 50304 $cap 10 $n; done; done'
      grep -vE "^\s*$" "$LOG/loss_anchor.log" | tail -20 ;;
    harness)
      part harness 400 ctest --test-dir build -R '^test_(harness|cheats_.*|task_cli|cli)$' -j8 --timeout 300 --output-on-failure
      grep -E "Test +#|tests passed|FAIL|Error" "$LOG/harness.log" | tail -30 ;;
    jittests)
      part jit 300 bash -c 'export SPEEDRUN_KERNEL_CACHE=/tmp/srk-cache
        ctest --test-dir build -R "^test_(jit|jit_args|gpu_jit)$" --output-on-failure
        for r in "docs/examples/gelu.cu --op gelu" "docs/examples/gelu.cu --op gelu --kernel gelu_bf16 --dtype bfloat16" \
                 "docs/examples/rms_norm.cu --op rms_norm" "docs/examples/rms_norm.cu --op rms_norm --kernel rms_norm_bf16 --dtype bfloat16"; do
          echo "### speedrun kernel check $r"; ./build/speedrun kernel check $r; echo "rc=$?"; done
        rm -rf /tmp/srk-cold
        for i in 1 2; do SPEEDRUN_KERNEL_CACHE=/tmp/srk-cold ./build/speedrun kernel compile docs/examples/rms_norm.cu --kernel rms_norm; done'
      grep -E "tests passed|FAIL|###|rc=|compiled|ok \(" "$LOG/jit.log" | tail -30 ;;
    bench)
      part bench_c 90 ./build/bench_gpt2 30 32 1024 1; tail -12 "$LOG/bench_c.log"
      part bench_lua 120 env SR_T0="$(date +%s.%N)" ./build/speedrun run bench/gpt2_lua.lua 60 32 1024 12
      tail -12 "$LOG/bench_lua.log" ;;
    anchor)
      part anchor 300 env OUT="$LOG/anchor" bash tasks/fidelity/all.sh "$SCRIPTS" "$DATA" 50 1
      fidelity_summary "$LOG/anchor.log" ;;
    fidwarm)
      part fidwarm "$(( ${FID_WARM_LIMIT:-280} * 2 + 20 ))" env OUT="$LOG/fidwarm" bash tasks/fidelity/warm.sh "$SCRIPTS" \
        "$DATA" ${FID_RECORDS:-2 3 4 5}
      cat "$LOG/fidwarm.log" ;;
    fidelity)   # one part per record, so a slow record cannot starve the next; summary lines at the end
      if [ "${FID_GPUS:-1}" != 1 ]; then  # a machine of several GPUs: one part, the records in GPU queues
        recs=${FID_RECORDS:-2 3 4 5}; lim=${FID_LIMIT:-420}
        ng=$FID_GPUS; [ "$ng" = auto ] && ng=$(nvidia-smi -L | grep -c '^GPU')
        per=$(( ($(wc -w <<<"$recs") + ng - 1) / ng ))  # records a queue
        part fidelity_gpus "$(( per * (lim + 45) ))" env OUT="$LOG/fidelity" FID_LIMIT="$lim" FID_GPUS="$ng" \
          bash tasks/fidelity/all.sh "$SCRIPTS" "$DATA" "${FID_STEPS:-50}" $recs
        fidelity_summary "$LOG/fidelity_gpus.log"
        grep -h "^summary:" "$LOG"/fidelity/record_*.log 2>/dev/null
        continue
      fi
      for n in ${FID_RECORDS:-2 3 4 5}; do
        nn=$(printf %02d "$n"); lim=${FID_LIMIT:-$( [ "$n" -ge 12 ] && echo 420 || echo 280 )}
        part "fidelity_$nn" "$(( lim + 45 ))" env OUT="$LOG/fidelity" FID_LIMIT="$lim" \
          bash tasks/fidelity/all.sh "$SCRIPTS" "$DATA" "${FID_STEPS:-50}" "$n"
        fidelity_summary "$LOG/fidelity_$nn.log"
      done
      grep -h "^summary:" "$LOG"/fidelity/record_*.log 2>/dev/null ;;
    noise)
      part noise 400 bash tasks/fidelity/noise.sh "$SCRIPTS" "$DATA" "${NOISE_RECORD:-2}" 50 "$LOG/noise"
      tail -14 "$LOG/noise.log" ;;
    calibrate)
      part calibrate 560 ./build/speedrun calibrate --tasks 1-5 --scale proxy --runs 3 --device cuda \
        --data "$DATA" --calibration "$LOG/calibration.json"
      grep -vE "^step|^\s*$" "$LOG/calibrate.log" | tail -30 ;;
    tune)
      items=""; [ "${TUNE_DEFAULT:-1}" = 1 ] && items="default"
      all=$(ls tasks | sed -n 's/^record_0*\([0-9][0-9]*\)$/\1/p' | sort -n | tr '\n' ' ')
      for n in ${TUNE_RECORDS:-$all}; do items="$items $(printf record_%02d "$n")"; done
      mkdir -p "$OUTDIR/tuned"
      for name in $items; do
        what="--recipe tasks/default/recipe.lua --name default" bv=TUNE_BRACKET_default
        [ "$name" = default ] || { what="--tasks $((10#${name#record_}))"; bv="TUNE_BRACKET_$((10#${name#record_}))"; }
        bracket=${!bv:-${TUNE_BRACKET:-}}
        [ -z "$bracket" ] && [ -n "${TUNE_BRACKET_FROM:-}" ] && bracket=$(from_bracket "$name")
        jv="TUNE_PROBE_JOBS_${bv#TUNE_BRACKET_}"; jobs=${!jv:-${TUNE_PROBE_JOBS:-}}
        target="${TUNE_TARGET:+--target $TUNE_TARGET} ${bracket:+--bracket $bracket} ${jobs:+--probe-jobs $jobs}"
        lv="TUNE_LIMIT_${bv#TUNE_BRACKET_}" rv="TUNE_RUNS_${bv#TUNE_BRACKET_}"
        part "tune_$name" "${!lv:-${TUNE_LIMIT:-560}}" ./build/speedrun calibrate --tune-steps $what $target --scale proxy \
          --runs "${!rv:-${TUNE_RUNS:-3}}" ${TUNE_RUNS_UP_TO:+--runs-up-to $TUNE_RUNS_UP_TO} \
          --device cuda --data "$DATA" --calibration "$OUTDIR/calibration.json" --out "/tmp/tune-$name"
        cp "tasks/$name/recipe.lua" "$OUTDIR/tuned/$name.lua"; cp "$LOG/tune_$name.log" "$OUTDIR/tuned/"
        grep -E "^-- |tuned to|ms mean|speedrun:" "$LOG/tune_$name.log" | tail -20
      done ;;
    retime) # the plain calibrate of records $RETIME_RECORDS (default 1-5) and the default recipe, each
            # run alone, in one call (their `tune` records kept where the budget is the tuned one)
      export DATA OUTDIR; export -f retime_calibrate expand_list
      part retime "${RETIME_LIMIT:-400}" bash -c retime_calibrate
      grep -vE "^step|^\s*$" "$LOG/retime.log" | tail -24 ;;
    restricted)
      for rn in ${RESTRICT_RECORDS:-1 12 19}; do for sd in ${RESTRICT_SEEDS:-1}; do
        r=$(printf "record_%02d" "$rn")
        part "restricted_${rn}_$sd" 120 ./build/speedrun train "tasks/$r/recipe.lua" --scale proxy --restricted --device cuda \
          --data "$DATA" --seed "$sd" --stream "${RESTRICT_STREAM:-fixed}" --quiet --out "/tmp/restricted/$r-$sd"
        python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); m=r.get("metrics") or {}; c=r.get("checks") or {}
print(sys.argv[2], r.get("status"), "val_loss", m.get("val_loss"), "causality", (c.get("causality") or {}).get("max_diff"),
      (c.get("causality") or {}).get("max_loss_change"), "eval_state", c.get("eval_state"),
      "eval/train time per token", round(m["eval_time_ms"]/m["val_tokens"]/(m["train_time_ms"]/m["tokens"]), 2) if m.get("val_tokens") else None,
      "setup work/train time", round((m.get("setup_work_ms") or 0)/max(m["train_time_ms"], 1e-9), 3),
      (r.get("failure") or {}).get("message"))' "/tmp/restricted/$r-$sd/results.json" "$r seed $sd" 2>&1 | tail -3
      done; done ;;
    warmup)
      for rn in ${WARMUP_RECORDS:-2 19}; do for mode in ${WARMUP_MODES:-lazy}; do for sd in 1 2 3; do
        r=$(printf "record_%02d" "$rn")
        env $([ $mode = eager ] && echo CUDA_MODULE_LOADING=EAGER) timeout 120 ./build/speedrun train "tasks/$r/recipe.lua" \
          --scale proxy --device cuda --data "$DATA" --seed "$sd" --stream random --out "/tmp/warmup/$r-$mode-$sd" \
          > "$LOG/warmup-$r-$mode-$sd.log" 2>&1
        echo "$r $mode seed $sd: $(grep -E '^warm-up:' "$LOG/warmup-$r-$mode-$sd.log" | sed 's/, NVRTC.*counted/ counted/')"
        echo "   $(grep -E '^wall:|^result:' "$LOG/warmup-$r-$mode-$sd.log" | tr '\n' ' ')"
      done; done; done
      for rn in ${WARMUP_RECORDS:-2 19}; do
        r=$(printf "record_%02d" "$rn")
        part "first_$r" 120 ./build/speedrun run bench/profile_recipe.lua "tasks/$r/recipe.lua" --scale proxy --device cuda \
          --first --warmup 3 --steps 3 --top 25
        sed -n '/^step 1 under/,/^total/p' "$LOG/first_$r.log"
      done; finish ;;
    pilot)
      for dd in ${PILOT_DATA:-$DATA}; do
        tag=$(echo "$dd" | tr -c 'A-Za-z0-9\n' _)
        for rn in ${PILOT_RECORDS:-${PILOT_RECORD:-1}}; do
          r=$(printf "record_%02d" "$rn"); sv="PILOT_STEPS_$rn"
          for n in ${!sv:-${PILOT_STEPS:-1600 2400 3200 4000}}; do
            for s in ${PILOT_SEEDS:-1 2 3}; do
              ./build/speedrun train "tasks/$r/recipe.lua" --scale proxy --device cuda --data "$dd" --steps "$n" \
                --scale-schedule --seed "$s" --val-every 1000000000 --stream "${PILOT_STREAM:-fixed}" --quiet --out "/tmp/pilot/$tag-$r-$n-$s" \
                > "$LOG/pilot-$tag-$r-$n-$s.log" 2>&1 &
            done; wait
            # each seed: its final validation loss, and eval's time per token over training's
            echo "$dd $r $n steps: $(for s in ${PILOT_SEEDS:-1 2 3}; do python3 -c 'import json,sys; m=json.load(open(sys.argv[1]))["metrics"]
print("val_loss %.4f (eval/train time per token %.2f)" % (m["val_loss"], m["eval_time_ms"]/m["val_tokens"]/(m["train_time_ms"]/m["tokens"])))' \
              "/tmp/pilot/$tag-$r-$n-$s/results.json" 2>&1 | tail -1; done | tr '\n' ' ')"
          done
        done
      done; finish ;;
    fsr)
      for n in ${FSR_TASKS:-$(./build/speedrun task list | awk '$1 ~ /^[0-9]+$/ {print $1}')}; do
        rm -rf "/tmp/fsr/start$n" "/tmp/fsr/target$n"; mkdir -p "/tmp/fsr/target$n"
        ./build/speedrun task init "$n" "/tmp/fsr/start$n" >/dev/null && cp "tasks/$(printf record_%02d $((n + 1)))/recipe.lua" "/tmp/fsr/target$n/"
        for ws in start target; do
          part "fsr_${ws}$n" 300 ./build/speedrun score "/tmp/fsr/$ws$n" --task "$n" --scale proxy --device cuda --data "$DATA" \
            --calibration "$OUTDIR/calibration.json" --out "/tmp/fsr/score-$ws$n"
          echo "task $n, $ws recipe:"; grep -E "^[0-9]|^val_loss|verdict|FSR|flag|^warm-up:" "$LOG/fsr_${ws}$n.log"
        done
      done ;;
    oracle) # issue 18: `speedrun agent run` on task $ORACLE_TASK (default 1) at proxy scale against
            # bench/oracle_server.py playing the oracle model (record N+1's change as SEARCH/REPLACE
            # blocks); its report.html, summary.json and the packed run folder come back in $OUT/agent-task<N>
      n=${ORACLE_TASK:-1}; cal=${ORACLE_CALIBRATION:-$OUTDIR/calibration.json}
      ./build/speedrun run bench/oracle_reply.lua "$n" > "$LOG/oracle_reply.txt" || exit 1
      python3 bench/oracle_server.py "$LOG/oracle_reply.txt" > "$LOG/oracle_port" 2> "$LOG/oracle_server.log" &
      spid=$!; sleep 2; port=$(head -1 "$LOG/oracle_port")
      part oracle "${ORACLE_LIMIT:-560}" ./build/speedrun agent run --task "$n" --model oracle \
        --base-url "http://127.0.0.1:$port/v1" --scale proxy --max-nodes "${ORACLE_NODES:-1}" --n-initial 1 \
        --no-llm-summary --device cuda --data "$DATA" --calibration "$cal" --out "/tmp/agent-task$n"
      kill "$spid"; ./build/speedrun agent report "/tmp/agent-task$n"
      # the run folder holds more files than a call brings back: the report and summary, and the rest packed
      mkdir -p "$OUTDIR/agent-task$n"; cp /tmp/agent-task$n/{report.html,summary.json,state.json} "$OUTDIR/agent-task$n/"
      tar czf "$OUTDIR/agent-task$n/run.tgz" --exclude="*.srw" -C /tmp "agent-task$n"
      grep -vE "^step" "$LOG/oracle.log" | tail -30 ;;
    main)
      for s in 1 2 3; do
        part "main_$s" 300 ./build/speedrun train --seed "$s" --device cuda --out "/tmp/main-$s"
        grep -E "valid|invalid|val_loss" "$LOG/main_$s.log" | tail -3
      done ;;
    gemmalgos) # cuBLASLt's candidates timed against its heuristic's first (bench/gemm_algos.cu), record 12's GEMMs
      part gemmalgos 240 ./build/gemm_algos ${GEMM_ALGOS_M:-65536}
      cat "$LOG/gemmalgos.log" ;;
    lend)   # graph memory lending (SR_GRAPH_LEND=0 off; docs/cuda.md): the memlimit test, then records $LEND_RECORDS off and on
      part lend_test 120 bash -c "cd tests && SPEEDRUN_TEST_TMP=/tmp/srtest ../build/speedrun run cuda/test_gpu_memlimit.lua"
      tail -4 "$LOG/lend_test.log"
      cap=${LEND_CAP:-}
      [ -n "$cap" ] || { [ "$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits | head -1)" -gt 100000 ] && cap=79000000000; }
      for n in ${LEND_RECORDS:-19}; do
        nn=$(printf %02d "$n")
        for v in 0 1; do
          part "lend_${nn}_$v" 300 env OUT="$LOG/lend_$v" SR_GRAPH_LEND=$v ${cap:+SPEEDRUN_CUDA_MEM_LIMIT=$cap} NO_COMPILE=1 ACCUM=1 \
            PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True FID_LIMIT=280 bash tasks/fidelity/all.sh "$SCRIPTS" "$DATA" "${FID_STEPS:-30}" "$n"
          echo "-- record $n, SR_GRAPH_LEND=$v${cap:+, cap $cap}"
          fidelity_summary "$LOG/lend_${nn}_$v.log"
          grep -hE "^speedrun steps:" "$LOG/lend_${nn}_$v.log" | head -2
        done
      done ;;
    ab)     # engine settings side by side (ab_settings): rows and full steps under each of $AB_SETTINGS
      ab_settings ;;
    rotary) # rotary kernel 2 (16-byte accesses) against kernel 1 (SR_ROTARY_V1=1), record $ROT_RECORD (default 5)
      ab_kernel rotary SR_ROTARY_V1 "${ROT_RECORD:-5}" "rotary" "rotary" ;;
    ew)     # unary kernels with fn compiled in against the run-time fn (SR_EW_V1=1), record $EW_RECORD (default 1)
      ab_kernel ew SR_EW_V1 "${EW_RECORD:-1}" "unary unary_backward" "unary" ;;
    scale)  # autograd's scale fusion (docs/cuda.md): record $SCALE_RECORD's (default 1) full step, SPEEDRUN_GRAD_SCALE=0 then 1
      r=$(printf record_%02d "${SCALE_RECORD:-1}")
      for v in 0 1; do
        part "scale_$v" 240 env SPEEDRUN_GRAD_SCALE=$v ./build/speedrun run bench/profile_recipe.lua "tasks/$r/recipe.lua" \
          --scale full --device cuda --warmup 2 --steps 3 --top 30
        grep -E "^ms/step|bwd:cross_entropy|^total" "$LOG/scale_$v.log" | head -8
      done ;;
    profile)
      for n in ${PROF_RECORDS:-1 5}; do
        part "profile_$(printf %02d "$n")" 240 ./build/speedrun run bench/profile_recipe.lua "tasks/$(printf record_%02d "$n")/recipe.lua" --scale full \
          --device cuda --warmup 2 --steps 3 --top 30
        head -60 "$LOG/profile_$(printf %02d "$n").log"
      done ;;
    speed)
      for n in ${SPEED_RECORDS:-1 5}; do
        nn=$(printf %02d "$n")
        part "speed_fid_$nn" "$(( ${FID_LIMIT:-280} + 45 ))" env OUT="$LOG/speed" ACCUM="${ACCUM:-1}" FID_LIMIT="${FID_LIMIT:-280}" \
          bash tasks/fidelity/all.sh "$SCRIPTS" "$DATA" "${FID_STEPS:-30}" "$n"
        fidelity_summary "$LOG/speed_fid_$nn.log"
        part "speed_prof_$nn" 240 ./build/speedrun run bench/profile_recipe.lua "tasks/record_$nn/recipe.lua" --scale full \
          --device cuda --warmup 2 --steps 3 --top 60 --fuse on
        grep -E "^ms/step|^peak|^fused groups" "$LOG/speed_prof_$nn.log"
        sed -n '/^by op (totals/,/^total/p' "$LOG/speed_prof_$nn.log" | head -16
      done
      for n in ${SPEED_RECORDS:-1 5}; do
        nn=$(printf %02d "$n")
        echo "speed: $(grep -h '^summary:' "$LOG/speed/record_$nn.log" 2>/dev/null | sed 's/^summary: //') |" \
          "$(grep -hE '^ms/step replayed' "$LOG/speed_prof_$nn.log" | sed 's/.*fusion on: /full step fused /') ms"
      done ;;
    fuse)
      if [ -f build/CTestTestfile.cmake ]; then
        part fuse_test 600 ctest --test-dir build -R "^test_gpu_fuse$|^test_fuse$|^test_fuse_records$" --timeout 590 -V
      else  # a prebuilt binary has no test tree: the GPU test by name
        part fuse_test 300 bash -c "cd tests && SPEEDRUN_TEST_TMP=/tmp/srtest ../build/speedrun run cuda/test_gpu_fuse.lua"
      fi
      tail -5 "$LOG/fuse_test.log"
      for n in ${FUSE_RECORDS:-1 5}; do
        for f in off ${FUSE_MODES:-on}; do
          part "fuse_$(printf %02d "$n")_$f" 300 ./build/speedrun run bench/profile_recipe.lua "tasks/$(printf record_%02d "$n")/recipe.lua" --scale full \
            --device cuda --warmup 2 --steps 5 --top 25 --fuse "$f" --dump-plan
          grep -E "^fused plan|ms/step|fused groups|disabled" "$LOG/fuse_$(printf %02d "$n")_$f.log"
        done
      done ;;
    *) echo "unknown part $p"; exit 2 ;;
  esac
done
echo "total: $(( $(date +%s) - t0 )) s"
