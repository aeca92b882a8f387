#!/bin/bash
# Rotating-order series of bench/metrics-overhead.ts runs, to compare builds and settings on a
# shared machine: each round runs every configuration once, starting one later than the round
# before; `sync` and a 1 s pause before each run; 3,000,000 records of 100 B, default node flags.
# Prints every run, then the median per configuration (broker CPU-s per million records, and the
# main thread's alone).
#
#   bench/metrics-overhead-series.sh ROUNDS "LABEL|BUILD_DIR|ARGS" ...
#   bench/metrics-overhead-series.sh 9 "off|.|--http-off" "default|.|" "s15|.|--http --scrape-ms 15000"
#
# BUILD_DIR is a built checkout (npm run build); ARGS go to dist/bench/metrics-overhead.js.
set -u
rounds=$1; shift
configs=("$@"); n=${#configs[@]}
out=$(mktemp)
for ((r = 0; r < rounds; r++)); do
  for ((k = 0; k < n; k++)); do
    IFS='|' read -r label dir args <<< "${configs[$(((r + k) % n))]}"
    sync; sleep 1
    line=$(cd "$dir" && node dist/bench/metrics-overhead.js --records 3000000 --runs 1 $args 2>/dev/null | grep '^run')
    printf '%-10s %s\n' "$label" "$line" | tee -a "$out"
  done
done
echo
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.4f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
for config in "${configs[@]}"; do
  label=${config%%|*}
  values=$(grep "^$label " "$out" | sed -E 's/.* = ([0-9.]+) CPU-s.*main thread ([0-9.]+).*/\1 \2/')
  printf '%-10s median %s CPU-s per million records (main thread %s), %d runs\n' "$label" \
    "$(cut -d' ' -f1 <<< "$values" | median)" "$(cut -d' ' -f2 <<< "$values" | median)" "$(grep -c . <<< "$values")"
done
rm -f "$out"
