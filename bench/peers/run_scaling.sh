#!/usr/bin/env bash
# Thread scaling of spattn's steps, one table: for each thread count, dense
# flash and the UniSparse step (its selection apart) from `spattn-compare
# --workload prefill --causal 0`, and the SparseD block-sparse step from
# `spattn-compare` (diffusion workload); speedups against the first count.
#
#   bench/peers/run_scaling.sh [--bin PATH] [--threads LIST] [--seq-len N] [--heads H] [--dtype T] [--reps R]
#                              [--rounds K]
#
# Defaults: build/release/bench/spattn-compare, threads 1,<nproc>, N 8192,
# heads 8, fp32, 3 reps, 1 round. With K rounds the thread counts are
# measured in turn K times (1, 16, 1, 16, ...) and the table shows the median
# of each time over the rounds: a shared machine's speed drifts over minutes,
# and one thread's run is the longest exposed to it. One thread at N 8K,
# heads 8 takes about a minute per round.
set -euo pipefail
bin=${SPATTN_COMPARE:-build/release/bench/spattn-compare}
threads=1,$(nproc)
n=8192
heads=8
dtype=fp32
reps=3
rounds=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --seq-len) n=$2; shift 2 ;;
    --heads) heads=$2; shift 2 ;;
    --dtype) dtype=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "run_scaling.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ -x $bin ]] || { echo "run_scaling.sh: $bin is not an executable (build spattn-compare or pass --bin)" >&2; exit 2; }
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "run_scaling.sh: --rounds must be a positive integer, got '$rounds'" >&2; exit 2; }
IFS=, read -r -a tlist <<< "$threads"
measured=()  # "t flash sparsed unisparse select", one per (round, thread count)
for ((round = 1; round <= rounds; ++round)); do
for t in "${tlist[@]}"; do
  pre=$("$bin" --workload prefill --causal 0 --methods unisparse --dtype "$dtype" --heads "$heads" \
        --seq-lens "$n" --reps "$reps" --threads "$t" 2>/dev/null)
  flash=$(awk '/bidirectional flash/ {for (i = 1; i <= NF; ++i) if ($i == "flash") {print $(i + 1); exit}}' <<< "$pre")
  read -r uni sel < <(awk '$1 == "unisparse" {print $2, $4; exit}' <<< "$pre")
  sp=$("$bin" --methods sparsed --dtype "$dtype" --heads "$heads" --seq-lens "$n" --reps "$reps" --threads "$t" \
       --quiet | awk '$1 == "sparsed" {print $5; exit}')
  [[ -n $flash && -n $uni && -n $sel && -n $sp ]] || { echo "run_scaling.sh: could not read the tables at $t threads" >&2; exit 1; }
  measured+=("$t $flash $sp $uni $sel")
  echo "round $round, threads $t: flash $flash ms, sparsed $sp ms, unisparse $uni ms (select $sel ms)" >&2
done
done
# Per thread count, the median over rounds of each column.
rows=()
for t in "${tlist[@]}"; do
  med=()
  for col in 2 3 4 5; do
    med+=("$(printf '%s\n' "${measured[@]}" | awk -v t="$t" -v c="$col" '$1 == t {print $c}' | sort -g |
             awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}')")
  done
  rows+=("$t ${med[*]}")
done
echo "spattn thread scaling: N $n, heads $heads, head_dim 128, $dtype, median of $reps reps, median of $rounds round(s) (ms; x = speedup over ${tlist[0]} thread(s))"
printf '%7s  %12s %7s  %14s %7s  %14s %7s  %16s %7s\n' threads "dense flash" x "sparsed step" x "unisparse step" x "unisparse select" x
base=(${rows[0]})
for r in "${rows[@]}"; do
  set -- $r
  awk -v t="$1" -v f="$2" -v s="$3" -v u="$4" -v l="$5" -v f0="${base[1]}" -v s0="${base[2]}" -v u0="${base[3]}" -v l0="${base[4]}" \
    'BEGIN {printf "%7s  %12.1f %6.2fx  %14.1f %6.2fx  %14.1f %6.2fx  %16.1f %6.2fx\n", t, f, f0 / f, s, s0 / s, u, u0 / u, l, l0 / l}'
done
echo "sparsed: the SparseD block-sparse step on its recorded mask (diffusion workload, top-k 0.1); unisparse step: selection included"
