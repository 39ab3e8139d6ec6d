#!/bin/bash
# bench/cpu_vs_llmc.sh: CPU training speed of speedrun against karpathy/llm.c's train_gpt2.c at
# the same GPT-2 shape, in one run on this machine. Builds train_gpt2 in a scratch copy of the
# given llm.c checkout (its own Makefile: -Ofast, -march=native, -fopenmp), gives it a random-init
# checkpoint written by bench/cpu_train.lua (so both start from the same weights) and random token
# shards, patches B/T/steps there, runs it, then runs bench/cpu_train.lua at the identical shape
# and prints a table. Nothing is fetched and nothing is written outside a temp dir.
#
# usage: bench/cpu_vs_llmc.sh LLMC_DIR [threads...]      (default threads: 1 and all cores)
#   env: B=4 T=128 L=2 NH=2 C=128 STEPS=10 WARMUP=2 REPEAT=1 SPEEDRUN=./build/speedrun KEEP=1 (keep scratch)
# Each (system, threads) runs REPEAT times, alternating llm.c and speedrun; ms/step is the median
# of all timed steps (steps after WARMUP of each run), tokens/s = B*T / that. The median keeps a
# busy neighbour on a shared machine from skewing the number; the mean is printed too.
set -eo pipefail
llmc=${1:?usage: bench/cpu_vs_llmc.sh LLMC_DIR [threads...]}
shift
[ -f "$llmc/train_gpt2.c" ] && [ -f "$llmc/Makefile" ] || { echo "$llmc: no train_gpt2.c/Makefile" >&2; exit 1; }
llmc=$(cd "$llmc" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
B=${B:-4} T=${T:-128} L=${L:-2} NH=${NH:-2} C=${C:-128} STEPS=${STEPS:-10} WARMUP=${WARMUP:-2} REPEAT=${REPEAT:-1}
V=50257 Vp=50304 maxT=128
threads=("$@")
[ ${#threads[@]} -gt 0 ] || threads=(1 $(nproc))
[ "${threads[0]}" = "${threads[1]:-}" ] && threads=("${threads[0]}")
sr=${SPEEDRUN:-$root/build/speedrun}
[ -x "$sr" ] || { echo "build speedrun first: cmake -S . -B build -DSPEEDRUN_CUDA=OFF && cmake --build build -j --target speedrun" >&2; exit 1; }

work=$(mktemp -d /tmp/cpu_vs_llmc.XXXXXX)
[ -n "${KEEP:-}" ] || trap 'rm -rf "$work"' EXIT
cp -r "$llmc/." "$work/llmc"
cd "$work/llmc"

# train_gpt2.c: our B, T and step count; val loss only at step 0 with one batch, no sampling
# (neither is inside llm.c's timed region, they only cost wall time)
sed -i -e "s/^\(\s*int B = \)[0-9]*;/\1$B;/" -e "s/^\(\s*int T = \)[0-9]*;/\1$T;/" \
       -e "s/for (int step = 0; step <= 40; step++)/for (int step = 0; step < $STEPS; step++)/" \
       -e "s/int val_num_batches = 5;/int val_num_batches = 1;/" \
       -e "s/if (step > 0 \&\& step % 20 == 0)/if (0)/" train_gpt2.c
for pat in "int B = $B;" "int T = $T;" "step < $STEPS;" "if (0)"; do
  grep -qF "$pat" train_gpt2.c || { echo "patching train_gpt2.c failed ($pat); llm.c changed?" >&2; exit 1; }
done
make train_gpt2 >"$work/make.log" 2>&1 || { tail -20 "$work/make.log" >&2; exit 1; }
cflags=$(grep -m1 -oE "(cc|gcc|clang) .*train_gpt2\.c.*" "$work/make.log" || true)

data=$work/llmc/dev/data/tinyshakespeare
mkdir -p "$data"
"$sr" run "$root/bench/cpu_train.lua" write_llmc="$work/llmc" B=$B T=$T L=$L NH=$NH C=$C V=$V Vp=$Vp maxT=$maxT >/dev/null

cpu=$(grep -m1 "model name" /proc/cpuinfo | sed 's/.*: //')
# the "(took X ms)" values of the timed steps (after WARMUP) of one log
timed() { grep -oE "took [0-9.]+ ms" "$1" | awk -v w="$WARMUP" '{ if (n++ >= w) print $2 }'; }
# median and mean of numbers on stdin
stats() { sort -g | awk '{ v[n++] = $1; s += $1 } END { m = n % 2 ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2; printf "%.1f %.1f %d", m, s / n, n }'; }

rows=()
for th in "${threads[@]}"; do
  : >"$work/llmc_$th.ms"; : >"$work/sr_$th.ms"
  for rep in $(seq "$REPEAT"); do
    echo "== threads=$th run $rep/$REPEAT: llm.c train_gpt2 ($STEPS steps)" >&2
    OMP_NUM_THREADS=$th ./train_gpt2 >"$work/llmc_$th.$rep.log" 2>&1 || { tail -20 "$work/llmc_$th.$rep.log" >&2; exit 1; }
    grep -E "^val loss|^step" "$work/llmc_$th.$rep.log" | head -3 >&2
    timed "$work/llmc_$th.$rep.log" >>"$work/llmc_$th.ms"
    echo "== threads=$th run $rep/$REPEAT: speedrun bench/cpu_train.lua ($STEPS steps)" >&2
    OMP_NUM_THREADS=$th "$sr" run "$root/bench/cpu_train.lua" B=$B T=$T L=$L NH=$NH C=$C V=$V maxT=$maxT \
      steps=$STEPS warmup=$WARMUP threads=$th data="$data/tiny_shakespeare_train.bin" \
      $([ "$rep" = 1 ] && echo val="$data/tiny_shakespeare_val.bin") \
      >"$work/sr_$th.$rep.log" 2>&1 || { tail -20 "$work/sr_$th.$rep.log" >&2; exit 1; }
    grep -E "^val loss|^step" "$work/sr_$th.$rep.log" | head -3 >&2
    timed "$work/sr_$th.$rep.log" >>"$work/sr_$th.ms"
  done
  rows+=("$th $(stats <"$work/llmc_$th.ms") $(stats <"$work/sr_$th.ms")")
done

echo
echo "CPU: $cpu ($(nproc) cores)"
echo "shape: B=$B T=$T L=$L NH=$NH C=$C V=$V (llm.c pads V to $Vp), AdamW, $STEPS steps per run, first $WARMUP not timed, $REPEAT run(s) each"
echo "same weights: val loss llm.c $(grep -m1 -oE "val loss [0-9.]+" "$work/llmc_${threads[0]}.1.log" | cut -d' ' -f3), speedrun $(grep -m1 -oE "val loss [0-9.]+" "$work/sr_${threads[0]}.1.log" | cut -d' ' -f3) (GELU tanh vs erf)"
echo "llm.c: $(git -C "$llmc" rev-parse --short HEAD 2>/dev/null || echo "$llmc (not a git checkout)"), built with: ${cflags:-see make.log}"
echo
printf "| %-8s | %-7s | %14s | %14s | %9s | %7s | %15s |\n" system threads "ms/step (med)" "ms/step (mean)" tokens/s "steps" "vs llm.c tok/s"
printf "|----------|---------|----------------|----------------|-----------|---------|-----------------|\n"
for r in "${rows[@]}"; do
  read -r th l_med l_mean l_n s_med s_mean s_n <<<"$r"
  awk -v th="$th" -v lm="$l_med" -v la="$l_mean" -v ln="$l_n" -v sm="$s_med" -v sa="$s_mean" -v sn="$s_n" -v bt=$((B * T)) 'BEGIN {
    printf "| %-8s | %-7s | %14.1f | %14.1f | %9.0f | %7d | %15s |\n", "llm.c", th, lm, la, bt / lm * 1000, ln, "1.00x"
    printf "| %-8s | %-7s | %14.1f | %14.1f | %9.0f | %7d | %14.2fx |\n", "speedrun", th, sm, sa, bt / sm * 1000, sn, lm / sm }'
done
