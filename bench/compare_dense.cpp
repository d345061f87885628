// spattn-compare-dense: the dense baselines side by side (naive, OpenBLAS
// GEMM-softmax-GEMM, our flash kernel on the active ISA), medians of repeated
// runs taken in one process, so the ratios are comparable on a noisy machine.
//   spattn-compare-dense [--heads H] [--head-dim D] [--max-n N] [--reps R] [--threads T]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "spattn/lab/timing.hpp"

namespace {

long parse_flag(int argc, char** argv, int& i) {
  if (i + 1 >= argc) {
    std::fprintf(stderr, "spattn-compare-dense: %s needs a value\n", argv[i]);
    std::exit(2);
  }
  char* end = nullptr;
  const long v = std::strtol(argv[++i], &end, 10);
  if (*end != '\0' || v <= 0) {
    std::fprintf(stderr, "spattn-compare-dense: %s: '%s' is not a positive integer\n", argv[i - 1], argv[i]);
    std::exit(2);
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  long heads = 8, d = 128, max_n = 4096, reps = 5, threads = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--heads") heads = parse_flag(argc, argv, i);
    else if (a == "--head-dim") d = parse_flag(argc, argv, i);
    else if (a == "--max-n") max_n = parse_flag(argc, argv, i);
    else if (a == "--reps") reps = parse_flag(argc, argv, i);
    else if (a == "--threads") threads = parse_flag(argc, argv, i);
    else {
      std::fprintf(stderr, "usage: spattn-compare-dense [--heads H] [--head-dim D] [--max-n N] [--reps R] [--threads T]\n");
      return 2;
    }
  }
  using namespace spattn;
  using lab::median_ms;
  KernelOptions opts;
  opts.threads = static_cast<int>(threads);
  std::printf("dense baselines: heads %ld, head_dim %ld, threads %d, ISA %s, median of %ld runs\n",
              heads, d, resolve_threads(opts), isa_name(active_isa()), reps);
  std::printf("%7s  %-10s %12s %10s %14s\n", "N", "method", "ms/call", "GFLOP/s", "flash speedup");
  for (long n = 1024; n <= max_n; n *= 2) {
    bench::Inputs in(heads, n, d);
    const double flops = in.dense_flops();
    const double flash = median_ms(static_cast<int>(reps), [&] {
      dense_attention(in.shape, in.qv(), in.kv(), in.vv(), in.ov(), opts);
    });
    auto row = [&](const char* name, double ms) {
      std::printf("%7ld  %-10s %12.2f %10.1f %13.2fx\n", n, name, ms, flops / ms / 1e6, ms / flash);
    };
    if (n <= 2048) {  // naive is minutes beyond this
      row("naive", median_ms(std::min<int>(3, static_cast<int>(reps)), [&] {
            naive_attention(in.shape, in.qv(), in.kv(), in.vv(), in.ov(), opts);
          }));
    }
    if (have_blas()) {
      row("openblas", median_ms(static_cast<int>(reps), [&] {
            blas_attention(in.shape, in.qv(), in.kv(), in.vv(), in.ov(), opts);
          }));
    }
    row("flash", flash);
  }
  std::printf("(flash speedup = method time / flash time, same run)\n");
  return 0;
}
