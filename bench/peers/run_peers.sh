#!/usr/bin/env bash
# Side by side: spattn-compare (exporting its SparseD masks and inputs), then
# PyTorch's CPU SDPA and FlexAttention on the very same tensors and masks, with
# the same thread count. Prints both tables; writes everything under --out.
#
#   bench/peers/run_peers.sh [--bin PATH] [--out DIR] [--threads T] [--heads LIST]
#                            [--seq-lens LIST] [--head-dim D] [--reps R] [-- extra spattn-compare flags]
#
# Defaults: build/release/bench/spattn-compare, out/peers, all cores, heads 8,
# N 4096,8192,16384, head_dim 128, 5 reps. The export writes q/k/v and two
# outputs per shape (5 x heads x N x d x 4 bytes: 320 MiB at heads 8, N 16K).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${SPATTN_COMPARE:-build/release/bench/spattn-compare}
out=out/peers
threads=$(nproc)
heads=8
seq_lens=4096,8192,16384
head_dim=128
reps=5
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --heads) heads=$2; shift 2 ;;
    --seq-lens) seq_lens=$2; shift 2 ;;
    --head-dim) head_dim=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "run_peers.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ -x $bin ]] || { echo "run_peers.sh: $bin is not an executable (build spattn-compare or pass --bin)" >&2; exit 2; }
mkdir -p "$out"
rm -rf "$out/export"

echo "== spattn-compare ($threads threads)"
"$bin" --heads "$heads" --seq-lens "$seq_lens" --head-dim "$head_dim" --threads "$threads" --reps "$reps" \
  --export-mask "$out/export" --json "$out/spattn.json" --csv "$out/spattn.csv" --plot "$out/spattn.svg" \
  ${extra[@]+"${extra[@]}"} | tee "$out/spattn.txt"

echo
echo "== PyTorch ($threads threads)"
python3 "$here/torch_peers.py" "$out/export" --threads "$threads" --reps "$reps" --json "$out/torch.json" \
  | tee "$out/torch.txt"
echo
echo "run_peers.sh: results in $out (spattn.{txt,json,csv,svg}, torch.{txt,json})"
