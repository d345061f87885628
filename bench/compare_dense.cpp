// spattn-compare-dense: the dense baselines side by side (naive, OpenBLAS
// GEMM-softmax-GEMM, our flash kernel on the active ISA), medians of repeated
// runs taken in one process, so the ratios are comparable on a noisy machine.
// The sgemm row is the ceiling the OpenBLAS baseline is held to: attention's
// two GEMMs alone (QK^T into an N x N buffer, then PV, no softmax) as
// OpenBLAS-threaded calls on all T threads.
//   spattn-compare-dense [--heads H] [--head-dim D] [--max-n N] [--reps R] [--threads T]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "spattn/config.h"
#include "bench_common.hpp"
#include "spattn/lab/timing.hpp"
#include "tools/cli.hpp"

#if SPATTN_HAS_BLAS
#include <cblas.h>
#endif

namespace {

#if SPATTN_HAS_BLAS
// Attention's two products per head as plain OpenBLAS calls on `threads`
// threads: S = Q K^T (n x n, one head's buffer reused), then O = S V.
void sgemm_products(const spattn::bench::Inputs& in, std::vector<float>& s, std::vector<float>& out, int threads) {
  openblas_set_num_threads(threads);
  const long n = static_cast<long>(in.shape.q_len), d = static_cast<long>(in.shape.head_dim);
  s.resize(static_cast<size_t>(n * n));
  for (long h = 0; h < in.shape.heads; ++h) {
    const float* q = in.q.data() + h * n * d;
    const float* k = in.k.data() + h * n * d;
    const float* v = in.v.data() + h * n * d;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, d, 1.0f, q, d, k, d, 0.0f, s.data(), n);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d, n, 1.0f, s.data(), n, v, d, 0.0f,
                out.data() + h * n * d, d);
  }
}
#endif

const char* kUsage = R"(usage: spattn-compare-dense [flags]
The dense baselines side by side (naive, OpenBLAS, flash) at N = 1024 ... --max-n,
and sgemm: attention's two GEMMs alone (no softmax), OpenBLAS-threaded: the
ceiling of the OpenBLAS baseline (which runs single-threaded sgemm per
(head, 256-row tile) work item, items in parallel).
  --heads H      query heads = kv heads (default 8)
  --head-dim D   (default 128)
  --max-n N      largest sequence length, doubling from 1024 (default 4096)
  --reps R       timed repetitions, medians reported (default 5)
  --threads T    threads (default: SPATTN_NUM_THREADS or all cores)
)";

}  // namespace

int compare_dense_main(int argc, char** argv) {
  spattn::cli::Args a{"spattn-compare-dense", argc, argv};
  long heads = 8, d = 128, max_n = 4096, reps = 5, threads = 0;
  while (!a.done()) {
    const std::string f = a.flag();
    if (a.common(f, kUsage)) {
    } else if (f == "--heads") {
      heads = static_cast<long>(a.integer(f, 1, 1024));
    } else if (f == "--head-dim") {
      d = static_cast<long>(a.integer(f, 1, 4096));
    } else if (f == "--max-n") {
      max_n = static_cast<long>(a.integer(f, 1, 1 << 22));
    } else if (f == "--reps") {
      reps = static_cast<long>(a.integer(f, 1, 1000));
    } else if (f == "--threads") {
      threads = a.threads(f);
    } else {
      spattn::cli::usage_error(a.tool, "unknown flag '" + f + "'");
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
#if SPATTN_HAS_BLAS
    std::vector<float> scores, sg_out(in.out.size());
    row("sgemm", median_ms(static_cast<int>(reps), [&] { sgemm_products(in, scores, sg_out, resolve_threads(opts)); }));
    std::vector<float>().swap(scores);
#endif
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

int main(int argc, char** argv) {
  return spattn::cli::run_tool("spattn-compare-dense", argc, argv, compare_dense_main);
}
