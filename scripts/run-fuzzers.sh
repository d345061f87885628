#!/usr/bin/env bash
# Builds the libFuzzer harnesses (clang, ASan+UBSan, build/fuzz) and runs each
# for SECONDS seconds (default 60) over a scratch copy of its seed corpus in
# fuzz/corpus/<harness>/, so new inputs never land in the repository. Fails on
# the first crash, leak, timeout or out-of-memory; the reproducer is left in
# the scratch folder (path printed). Prints libFuzzer's executions per harness.
#
#   scripts/run-fuzzers.sh [SECONDS]      env: JOBS (build jobs, default nproc),
#                                          FUZZ_BUILD (default build/fuzz),
#                                          FUZZ_WORK (scratch, default a mktemp dir)
set -euo pipefail
seconds=${1:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
build=${FUZZ_BUILD:-$root/build/fuzz}
jobs=${JOBS:-$(nproc)}
cd "$root"

cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DSPATTN_BUILD_FUZZERS=ON -DSPATTN_BUILD_TESTS=OFF -DSPATTN_BUILD_BENCH=OFF \
  -DSPATTN_BUILD_TOOLS=OFF >/dev/null
cmake --build "$build" -j "$jobs" --target fuzz_profile_yaml fuzz_npy fuzz_block_mask

work=${FUZZ_WORK:-$(mktemp -d -t spattn-fuzz.XXXXXX)}
mkdir -p "$work"
# max_len per harness: a profile with a few entries, a header plus a few
# hundred values, a mask of 4 heads x 19 query blocks of 64-bit bitmaps.
declare -A max_len=([fuzz_profile_yaml]=4096 [fuzz_npy]=4096 [fuzz_block_mask]=1024)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OMP_NUM_THREADS=1  # one thread per run: libFuzzer runs inputs one at a time
status=0
summary=()
for h in fuzz_profile_yaml fuzz_npy fuzz_block_mask; do
  corpus="$work/$h/corpus"
  artifacts="$work/$h/artifacts/"
  rm -rf "$corpus" && mkdir -p "$corpus" "$artifacts"
  cp -r "fuzz/corpus/$h/." "$corpus/"
  log="$work/$h/log.txt"
  echo "== $h: ${seconds}s, corpus copy in $corpus"
  set +e
  "$build/fuzz/$h" "$corpus" -max_total_time="$seconds" -max_len="${max_len[$h]}" \
    -timeout=20 -rss_limit_mb=2048 -malloc_limit_mb=1024 -print_final_stats=1 \
    -artifact_prefix="$artifacts" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  if ((rc != 0)); then
    tail -n 60 "$log"
    echo "== $h: FAILED (exit $rc); reproducer(s): $(ls "$artifacts" | tr '\n' ' ')in $artifacts"
    status=1
    summary+=("$h: FAILED after ${execs:-?} executions")
  else
    summary+=("$h: ${execs:-?} executions in ${seconds}s, no crash")
  fi
done
echo "== fuzz summary"
printf '  %s\n' "${summary[@]}"
exit $status
