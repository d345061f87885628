// spattn-bench: Google Benchmark suites for the dense baselines, the dense
// flash kernel per ISA and thread count, and block-sparse attention against
// density. Counters: FLOPS (4*N*N*d*heads per call for dense; the visited
// share of it for sparse). Medians: --benchmark_repetitions=5
// --benchmark_report_aggregates_only=true.
#include <benchmark/benchmark.h>

#if __has_include(<cblas.h>)
#include <cblas.h>
#define SPATTN_BENCH_HAVE_CBLAS 1
#endif

#include "bench_common.hpp"
#include "tools/cli.hpp"

namespace spattn::bench {
namespace {

constexpr int64_t kHeads = 8;

void set_flops(benchmark::State& st, double flops) {
  st.counters["FLOPS"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate,
                                            benchmark::Counter::OneK::kIs1000);
}

// args: N, head_dim, threads
template <int Method>
void BM_Dense(benchmark::State& st) {
  Inputs in(kHeads, st.range(0), st.range(1));
  KernelOptions opts;
  opts.threads = static_cast<int>(st.range(2));
  for (auto _ : st) {
    if constexpr (Method == 0) naive_attention(in.shape, in.qv(), in.kv(), in.vv(), in.ov(), opts);
    if constexpr (Method == 1) blas_attention(in.shape, in.qv(), in.kv(), in.vv(), in.ov(), opts);
    if constexpr (Method == 2) dense_attention(in.shape, in.qv(), in.kv(), in.vv(), in.ov(), opts);
    benchmark::DoNotOptimize(in.out.data());
  }
  set_flops(st, in.dense_flops());
}
void dense_args(benchmark::internal::Benchmark* b, int64_t max_n) {
  b->ArgNames({"N", "d", "threads"})->Unit(benchmark::kMillisecond)->UseRealTime();
  for (int64_t d : {64, 128})
    for (int64_t n = 1024; n <= max_n; n *= 2) b->Args({n, d, 1});
}
// Naive is O(N^2) scalar work per row: stop at 4K so the suite stays minutes.
BENCHMARK(BM_Dense<0>)->Name("dense/naive")->Apply([](auto* b) { dense_args(b, 4096); });
BENCHMARK(BM_Dense<1>)->Name("dense/openblas")->Apply([](auto* b) { dense_args(b, 16384); });
BENCHMARK(BM_Dense<2>)->Name("dense/flash")->Apply([](auto* b) { dense_args(b, 16384); });

// Thread scaling of dense flash and block-sparse (density 10%).
void BM_FlashThreads(benchmark::State& st) {
  Inputs in(kHeads, st.range(0), 128);
  KernelOptions opts;
  opts.threads = static_cast<int>(st.range(1));
  for (auto _ : st) dense_attention(in.shape, in.qv(), in.kv(), in.vv(), in.ov(), opts);
  set_flops(st, in.dense_flops());
}
BENCHMARK(BM_FlashThreads)->Name("threads/flash")->ArgNames({"N", "threads"})
    ->Args({8192, 1})->Args({8192, 2})->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_SparseThreads(benchmark::State& st) {
  Inputs in(kHeads, st.range(0), 128);
  const BlockMask m = scattered_mask(in.shape, 64, 0.1, 7);
  KernelOptions opts;
  opts.threads = static_cast<int>(st.range(1));
  for (auto _ : st) block_sparse_attention(in.shape, in.qv(), in.kv(), in.vv(), m, in.ov(), opts);
  set_flops(st, in.dense_flops() * m.density());
}
BENCHMARK(BM_SparseThreads)->Name("threads/block_sparse_10pct")->ArgNames({"N", "threads"})
    ->Args({8192, 1})->Args({8192, 2})->Unit(benchmark::kMillisecond)->UseRealTime();

// Forces the ISA at index i of supported_isas() for one benchmark and puts
// the previous one back; ok() is false (the benchmark skipped) where i is
// past the ISAs this CPU has.
class IsaForBenchmark {
 public:
  IsaForBenchmark(benchmark::State& st, int64_t i) : before_(active_isa()) {
    const auto isas = supported_isas();
    ok_ = i < static_cast<int64_t>(isas.size());
    if (ok_) set_isa(isas[static_cast<size_t>(i)]);
    else st.SkipWithError("ISA not supported here");
  }
  ~IsaForBenchmark() { set_isa(before_); }
  bool ok() const { return ok_; }

 private:
  Isa before_;
  bool ok_ = false;
};

// Dense flash per ISA (args: isa index into supported_isas(), N).
void BM_FlashIsa(benchmark::State& st) {
  const IsaForBenchmark forced(st, st.range(0));
  if (!forced.ok()) return;
  st.SetLabel(isa_name(active_isa()));
  Inputs in(kHeads, st.range(1), 128);
  KernelOptions opts;
  opts.threads = 1;
  for (auto _ : st) dense_attention(in.shape, in.qv(), in.kv(), in.vv(), in.ov(), opts);
  set_flops(st, in.dense_flops());
}
BENCHMARK(BM_FlashIsa)->Name("isa/flash")->ArgNames({"isa", "N"})
    ->ArgsProduct({{0, 1, 2}, {4096}})->Unit(benchmark::kMillisecond)->UseRealTime();

// Block-sparse at density rho (per mille) with scattered blocks, N = 16384;
// density 1000 is the dense flash kernel itself for the ratio.
void BM_BlockSparse(benchmark::State& st) {
  Inputs in(kHeads, st.range(1), 128);
  const double rho = static_cast<double>(st.range(0)) / 1000.0;
  KernelOptions opts;
  opts.threads = 1;
  if (st.range(0) >= 1000) {
    for (auto _ : st) dense_attention(in.shape, in.qv(), in.kv(), in.vv(), in.ov(), opts);
    set_flops(st, in.dense_flops());
    return;
  }
  const BlockMask m = scattered_mask(in.shape, 64, rho, 11);
  for (auto _ : st) block_sparse_attention(in.shape, in.qv(), in.kv(), in.vv(), m, in.ov(), opts);
  set_flops(st, in.dense_flops() * m.density());
}
BENCHMARK(BM_BlockSparse)->Name("sparse/block64")->ArgNames({"permille", "N"})
    ->ArgsProduct({{50, 100, 200, 500, 1000}, {16384}})->Unit(benchmark::kMillisecond)->UseRealTime();

// Per input dtype (args: dtype 0 f32 / 1 bf16 / 2 f16, N; d 128, 1 thread):
// dense flash, block-sparse at 10%, SparseD's block masses and UniSparse's
// selection. bf16 runs the bf16 kernels where the ISA has them (label).
constexpr DType kBenchTypes[] = {DType::fp32, DType::bf16, DType::fp16};
template <int Pass>
void BM_Dtype(benchmark::State& st) {
  const DType t = kBenchTypes[st.range(0)];
  Inputs in(kHeads, st.range(1), 128);
  const InputView q = in.typed(t, 0), k = in.typed(t, 1), v = in.typed(t, 2);
  st.SetLabel(std::string(dtype_name(t)) + " " + isa_name(active_isa()));
  KernelOptions opts;
  opts.threads = 1;
  const BlockMask m = scattered_mask(in.shape, 64, 0.1, 11);
  UnisparseParams up;
  for (auto _ : st) {
    if constexpr (Pass == 0) dense_attention(in.shape, q, k, v, in.ov(), opts);
    if constexpr (Pass == 1) block_sparse_attention(in.shape, q, k, v, m, in.ov(), opts);
    if constexpr (Pass == 2) benchmark::DoNotOptimize(block_attention_mass(in.shape, q, k, 64, 64, opts));
    if constexpr (Pass == 3) benchmark::DoNotOptimize(unisparse_select(in.shape, q, k, up, opts));
  }
  if constexpr (Pass == 0) set_flops(st, in.dense_flops());
  if constexpr (Pass == 1) set_flops(st, in.dense_flops() * m.density());
}
BENCHMARK(BM_Dtype<0>)->Name("dtype/flash")->ArgNames({"dtype", "N"})
    ->ArgsProduct({{0, 1, 2}, {4096, 8192, 16384}})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Dtype<1>)->Name("dtype/block_sparse_10pct")->ArgNames({"dtype", "N"})
    ->ArgsProduct({{0, 1, 2}, {16384}})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Dtype<2>)->Name("dtype/sparsed_block_mass")->ArgNames({"dtype", "N"})
    ->ArgsProduct({{0, 1, 2}, {4096}})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Dtype<3>)->Name("dtype/unisparse_select")->ArgNames({"dtype", "N"})
    ->ArgsProduct({{0, 1, 2}, {16384}})->Unit(benchmark::kMillisecond)->UseRealTime();

// Dense flash per ISA, input dtype and thread count (args: isa index into
// supported_isas(), dtype 0 f32 / 1 bf16 / 2 f16, N, threads; 0: all),
// heads 8, d 128: the many-core and AMX comparison against PyTorch's SDPA
// (bench/peers/); --benchmark_filter='isa_dtype/' runs only these. Indices
// 2-4 are avx512, avx512_bf16 and amx where the CPU has them all.
void BM_FlashIsaDtype(benchmark::State& st) {
  const IsaForBenchmark forced(st, st.range(0));
  if (!forced.ok()) return;
  const DType t = kBenchTypes[st.range(1)];
  Inputs in(kHeads, st.range(2), 128);
  const InputView q = in.typed(t, 0), k = in.typed(t, 1), v = in.typed(t, 2);
  KernelOptions opts;
  opts.threads = static_cast<int>(st.range(3));
  st.SetLabel(std::string(isa_name(active_isa())) + " " + dtype_name(t) + " " + std::to_string(resolve_threads(opts)) +
              "t");
  for (auto _ : st) dense_attention(in.shape, q, k, v, in.ov(), opts);
  set_flops(st, in.dense_flops());
}
BENCHMARK(BM_FlashIsaDtype)->Name("isa_dtype/flash")->ArgNames({"isa", "dtype", "N", "threads"})
    ->ArgsProduct({{2, 3, 4}, {0, 1}, {4096, 16384}, {1, 0}})->Unit(benchmark::kMillisecond)->UseRealTime();

// Causal prefill against bidirectional attention at the same N (args:
// causal 0/1, N), 2 heads, d 128, all threads. FLOPS count the work done:
// the causal half for causal.
void BM_Causal(benchmark::State& st) {
  Inputs in(2, st.range(1), 128);
  in.shape.causal = st.range(0) != 0;
  for (auto _ : st) dense_attention(in.shape, in.qv(), in.kv(), in.vv(), in.ov());
  set_flops(st, in.dense_flops() * (in.shape.causal ? 0.5 : 1.0));
}
BENCHMARK(BM_Causal)->Name("causal/flash")->ArgNames({"causal", "N"})
    ->ArgsProduct({{0, 1}, {4096, 16384}})->Unit(benchmark::kMillisecond)->UseRealTime();

#ifdef SPATTN_BENCH_HAVE_CBLAS
// The practical FMA roofline: OpenBLAS sgemm, one thread, at attention-like sizes.
void BM_Sgemm(benchmark::State& st) {
  const int n = static_cast<int>(st.range(0)), kdim = 128;
  std::vector<float> a(size_t(n) * kdim, 1.0f), b(size_t(n) * kdim, 1.0f), c(size_t(n) * n);
  openblas_set_num_threads(1);
  for (auto _ : st) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, kdim, 1.0f, a.data(), kdim, b.data(),
                kdim, 0.0f, c.data(), n);
    benchmark::DoNotOptimize(c.data());
  }
  set_flops(st, 2.0 * n * double(n) * kdim);
}
BENCHMARK(BM_Sgemm)->Name("roofline/sgemm_k128")->Arg(2048)->Unit(benchmark::kMillisecond)->UseRealTime();
#endif

}  // namespace
}  // namespace spattn::bench

// Google Benchmark's own flags (--benchmark_filter, ...), plus --version and a
// checked environment, as every spattn tool.
int bench_main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "--version") {
      std::printf("spattn-bench %s\n", SPATTN_VERSION_STRING);
      return 0;
    }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

int main(int argc, char** argv) { return spattn::cli::run_tool("spattn-bench", argc, argv, bench_main); }
