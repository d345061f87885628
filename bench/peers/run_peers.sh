#!/usr/bin/env bash
# Side by side, one command: for each dtype, spattn-compare (dense flash and
# SparseD, exporting its masks and inputs), then PyTorch's CPU SDPA and
# FlexAttention (compiled) on the very same tensors and masks in that dtype,
# with the same thread count; then one table of both (peers_table.py).
#
#   bench/peers/run_peers.sh [--bin PATH] [--out DIR] [--threads T] [--heads LIST] [--dtypes LIST]
#                            [--seq-lens LIST] [--head-dim D] [--reps R] [--rounds K]
#                            [-- extra spattn-compare flags]
#
# Defaults: build/release/bench/spattn-compare, out/peers, all cores, heads 8,
# dtypes fp32,bf16, N 4096,16384,65536, head_dim 128, 3 reps, 1 round, spattn
# methods flash,sparsed (pass -- --methods ... for more). The export writes
# q/k/v and two outputs per shape and dtype (5 x heads x N x d x 4 bytes:
# 1.25 GiB at heads 8, N 64K), replaced on each run. --rounds K runs the
# spattn / PyTorch pair K times in turn (results in OUT/<dtype>/round-<i>);
# the table then gives each ratio as the median of the K rounds' ratios, so
# a machine whose speed drifts during the command moves both sides alike.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${SPATTN_COMPARE:-build/release/bench/spattn-compare}
out=out/peers
threads=$(nproc)
heads=8
dtypes=fp32,bf16
seq_lens=4096,16384,65536
head_dim=128
reps=3
rounds=1
extra=(--methods flash,sparsed)
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --heads) heads=$2; shift 2 ;;
    --dtypes) dtypes=$2; shift 2 ;;
    --seq-lens) seq_lens=$2; shift 2 ;;
    --head-dim) head_dim=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "run_peers.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ -x $bin ]] || { echo "run_peers.sh: $bin is not an executable (build spattn-compare or pass --bin)" >&2; exit 2; }
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "run_peers.sh: --rounds: '$rounds' is not a positive count" >&2; exit 2; }
mkdir -p "$out"
IFS=, read -r -a dtype_list <<< "$dtypes"
for dt in "${dtype_list[@]}"; do
  case "$dt" in fp32|bf16|fp16) ;; *) echo "run_peers.sh: --dtypes: '$dt' is not fp32, bf16 or fp16" >&2; exit 2 ;; esac
  rm -rf "$out/$dt"  # no rounds of an earlier run mixed into this one's table
done
for ((round = 1; round <= rounds; ++round)); do
  for dt in "${dtype_list[@]}"; do
    d="$out/$dt"
    if (( rounds > 1 )); then d="$out/$dt/round-$round"; fi
    mkdir -p "$d"
    echo "== spattn-compare $dt ($threads threads, round $round of $rounds)"
    "$bin" --dtype "$dt" --heads "$heads" --seq-lens "$seq_lens" --head-dim "$head_dim" --threads "$threads" \
      --reps "$reps" --export-mask "$d/export" --json "$d/spattn.json" --csv "$d/spattn.csv" \
      ${extra[@]+"${extra[@]}"} | tee "$d/spattn.txt"
    echo
    echo "== PyTorch $dt ($threads threads, round $round of $rounds)"
    python3 "$here/torch_peers.py" "$d/export" --threads "$threads" --reps "$reps" --json "$d/torch.json" \
      | tee "$d/torch.txt"
    rm -rf "$d/export"  # gigabytes at 64K; the tables above keep what was measured
    echo
  done
done
echo "== spattn against PyTorch"
python3 "$here/peers_table.py" "$out" | tee "$out/table.txt"
echo "run_peers.sh: results in $out (table.txt; per dtype, and per round with --rounds, spattn.{txt,json,csv} and torch.{txt,json})"
