#!/usr/bin/env bash
# A spattn-tune killed at any moment leaves the previous profile intact:
# tune a first shape, then start tunes of a second shape and kill them
# (SIGKILL) at increasing delays, the last ones inside the save itself (the
# save is slowed by SPATTN_PROFILE_TEST_SAVE_PAUSE_MS). After every kill the
# profile must load and still hold the first entry; stale temp files are the
# only debris allowed.
#   tune_killed.sh <spattn-tune> <spattn-eval> <work dir>
set -euo pipefail
tune=$1 eval=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
prof=$work/profile.yaml
small=(--heads 2 --head-dim 32 --steps 6 --block-sizes 16,32 --warmup-fractions 0,0.2
       --q-tiles 64 --threads 1 --reps 1 --samples 2 --no-table --out "$prof")
"$tune" --seq-len 128 "${small[@]}" >/dev/null 2>&1
grep -q "seq_len: 128" "$prof" || { echo "first tune wrote no entry"; exit 1; }
check() {
  "$eval" --profile "$prof" --seq-len 64 --heads 2 --head-dim 32 --steps 1 --quiet >/dev/null 2>"$work/err" ||
    { echo "profile does not load after a kill at $1:"; cat "$work/err"; exit 1; }
  grep -q "seq_len: 128" "$prof" || { echo "first entry lost after a kill at $1"; exit 1; }
}
kills=0 in_save=0
for delay in 0.05 0.2 0.5 1.0 1.5 2.0 2.5 3.0; do
  SPATTN_PROFILE_TEST_SAVE_PAUSE_MS=1500 "$tune" --seq-len 256 "${small[@]}" >/dev/null 2>&1 &
  pid=$!
  sleep "$delay"
  if kill -9 "$pid" 2>/dev/null; then kills=$((kills + 1)); fi
  wait "$pid" 2>/dev/null || true
  # A half-written temp file left behind: this kill landed inside the save.
  if compgen -G "$prof.tmp.*" >/dev/null; then in_save=$((in_save + 1)); rm -f "$prof".tmp.*; fi
  check "${delay}s"
done
[[ $kills -ge 4 ]] || { echo "only $kills tunes were still running when killed"; exit 1; }
[[ $in_save -ge 1 ]] || { echo "no kill landed inside a save (tune too fast or slow here?)"; exit 1; }
# An uninterrupted second tune merges: both shapes are in the file.
"$tune" --seq-len 256 "${small[@]}" >/dev/null 2>&1
grep -q "seq_len: 128" "$prof" && grep -q "seq_len: 256" "$prof" || { echo "second tune clobbered the first entry"; exit 1; }
echo "tune_killed: $kills tunes killed ($in_save inside the save); the profile loaded and kept its entry every time"
