// spattn-compare --workload cached: a cached diffusion step (a block of q
// query rows against a KVCache of kv tokens) per shape, dense and on a block
// pattern, with what a step costs around the attention: writing the block's
// 32 refreshed rows into the cache, and, for contrast, the uncached call that
// packs all K/V itself. KV bytes per second are given as a share of this
// machine's copy bandwidth, measured in the same run (a STREAM-like copy of
// 256 MiB on the same threads). All times are medians over --reps, taken in
// one process; ratios are of those medians.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench_common.hpp"
#include "spattn/lab/timing.hpp"
#include "tools/cli.hpp"

namespace spattn::bench {
namespace {

using lab::median_ms;

const char* kUsage = R"(usage: spattn-compare --workload cached [flags]
A cached diffusion step: q query rows (a block at the end of the sequence)
against a KVCache of kv tokens, dense (cached_attention) and on a random
block pattern (cached_block_sparse_attention), with the write of 32
refreshed rows, the uncached call (dense_attention, packing K/V itself),
and the KV bytes per second as a share of the measured copy bandwidth.
  --heads LIST      query heads (default 8)
  --kv-heads N      kv heads (default: = heads)
  --q-lens LIST     query rows per step (default 1,32,64)
  --kv-lens LIST    cached tokens (default 4096,16384,65536,131072; K/M suffixes)
  --head-dim D      (default 128)
  --dtype T         fp32 | bf16 | fp16 | both (fp32 and bf16; default fp32)
  --density X       share of key blocks the pattern keeps (default 0.1)
  --reps R          timed repetitions, medians reported (default 5)
  --threads T       threads (default: SPATTN_NUM_THREADS or all cores)
  --scaling         also time the dense step on 1 thread (the scaling column)
)";

struct Options {
  std::vector<int64_t> heads = {8}, q_lens = {1, 32, 64}, kv_lens = {4096, 16384, 65536, 131072};
  int64_t kv_heads = 0, head_dim = 128;
  std::vector<DType> dtypes = {DType::fp32};
  double density = 0.1;
  int reps = 5, threads = 0;
  bool scaling = false;
};

Options parse(int argc, char** argv) {
  Options o;
  cli::Args a{"spattn-compare", argc, argv};
  while (!a.done()) {
    const std::string f = a.flag();
    if (a.common(f, kUsage)) {
    } else if (f == "--workload") {
      a.value(f);  // "cached": how we got here
    } else if (f == "--heads") {
      o.heads = cli::int_list(a, f, 1, 1024);
    } else if (f == "--kv-heads") {
      o.kv_heads = a.integer(f, 1, 1024);
    } else if (f == "--q-lens") {
      o.q_lens = cli::int_list(a, f, 1, 4096);
    } else if (f == "--kv-lens") {
      o.kv_lens = cli::int_list(a, f, 16, 1 << 22);
    } else if (f == "--head-dim") {
      o.head_dim = a.integer(f, 16, kMaxHeadDim);
    } else if (f == "--dtype") {
      const std::string v = a.value(f);
      if (v == "both") o.dtypes = {DType::fp32, DType::bf16};
      else {
        try {
          o.dtypes = {parse_dtype(v)};
        } catch (const Error& e) {
          cli::usage_error(a.tool, f + ": " + e.what() + " (or both)");
        }
      }
    } else if (f == "--density") {
      o.density = a.real(f, 0.0, 1.0, true);
    } else if (f == "--reps") {
      o.reps = static_cast<int>(a.integer(f, 1, 1000));
    } else if (f == "--threads") {
      o.threads = a.threads(f);
    } else if (f == "--scaling") {
      o.scaling = true;
    } else {
      cli::usage_error(a.tool, "unknown flag '" + f + "' (spattn-compare --workload cached --help)");
    }
  }
  for (int64_t h : o.heads)
    if (o.kv_heads > 0 && h % o.kv_heads != 0)
      cli::usage_error(a.tool, "--kv-heads " + std::to_string(o.kv_heads) + " must divide --heads " + std::to_string(h));
  return o;
}

// GB/s of a 256 MiB copy on `threads` threads (each its own slice), median.
double copy_bandwidth_gbs(int threads, int reps) {
  const size_t bytes = size_t{256} << 20;
  std::vector<char> src(bytes, 1), dst(bytes, 0);
  const double ms = median_ms(reps, [&] {
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        const size_t a = bytes * t / threads, b = bytes * (t + 1) / threads;
        std::memcpy(dst.data() + a, src.data() + a, b - a);
      });
    for (auto& th : pool) th.join();
  });
  return 2.0 * double(bytes) / (ms * 1e6);  // read + write
}

// A random pattern over the whole sequence: each key block kept with
// probability `density`, the query block's own always.
BlockMask random_pattern(int64_t heads, int64_t n, double density, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  BlockMask m{heads, n, n, 64, 64, {0}, {}};
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t qb = 0; qb < m.q_blocks(); ++qb) {
      for (int64_t b = 0; b < m.k_blocks(); ++b)
        if (b == qb || u(rng) < density) m.col_idx.push_back(static_cast<int32_t>(b));
      m.row_ptr.push_back(static_cast<int64_t>(m.col_idx.size()));
    }
  return m;
}

struct Row {
  int64_t H, q, kv;
  DType t;
  double write_ms, attend_ms, step_ms, uncached_ms, sparse_ms, density, one_thread_ms, gbs;
};

// K and V of one (heads, kv, dtype): random, in the dtype, written once into
// a cache that every q length of the shape then reads.
struct CachedInputs {
  int64_t KH, kv, d;
  DType t;
  std::vector<float> k, v;
  std::vector<uint16_t> k16, v16;
  InputView kview, vview;
  CachedInputs(int64_t kv_heads, int64_t kv_len, int64_t head_dim, DType dtype)
      : KH(kv_heads), kv(kv_len), d(head_dim), t(dtype), k(static_cast<size_t>(kv_heads * kv_len * head_dim)), v(k.size()) {
    std::mt19937_64 rng(static_cast<uint64_t>(kv_len * 131 + kv_heads));
    std::normal_distribution<float> nd;
    for (auto* x : {&k, &v})
      for (float& f : *x) f = nd(rng);
    kview = ConstTensorView::heads_major(k.data(), KH, kv, d);
    vview = ConstTensorView::heads_major(v.data(), KH, kv, d);
    if (t == DType::fp32) return;
    for (float f : k) k16.push_back(t == DType::bf16 ? to_bf16(f).bits : to_fp16(f).bits);
    for (float f : v) v16.push_back(t == DType::bf16 ? to_bf16(f).bits : to_fp16(f).bits);
    kview = InputView(k16.data(), t, KH, kv, d, kv * d, d);
    vview = InputView(v16.data(), t, KH, kv, d, kv * d, d);
  }
  // Rows [first, first + n) of K or V.
  InputView rows(const InputView& x, int64_t first, int64_t n) const {
    InputView r = x;
    r.data = x.row(0, first);
    r.tokens = n;
    return r;
  }
};

Row run_shape(const Options& o, int64_t H, int64_t q_len, const CachedInputs& in, KVCache& cache,
              const BlockMask& pattern, int threads) {
  const int64_t d = in.d, kv_len = in.kv;
  std::mt19937_64 rng(static_cast<uint64_t>(q_len));
  std::normal_distribution<float> nd;
  std::vector<float> q(static_cast<size_t>(H * q_len * d));
  for (float& f : q) f = nd(rng);
  KernelOptions opts;
  opts.threads = threads;
  AttentionShape shape{H, in.KH, q_len, kv_len, d};
  const ConstTensorView qv = ConstTensorView::heads_major(q.data(), H, q_len, d);
  std::vector<float> out(q.size());
  const TensorView ov = TensorView::heads_major(out.data(), H, q_len, d);
  // The block's refreshed rows: 32 (a decoding block) at the end.
  const int64_t w = std::min<int64_t>(32, kv_len), w0 = kv_len - w;
  const InputView kw = in.rows(in.kview, w0, w), vw = in.rows(in.vview, w0, w);
  Row r{H, q_len, kv_len, in.t, 0, 0, 0, 0, 0, 0, 0, 0};
  cache.write(w0, kw, vw, opts);  // warm: the threads, the buffer cache, the pages
  cached_attention(shape, qv, cache, ov, {}, opts);
  r.write_ms = median_ms(o.reps, [&] { cache.write(w0, kw, vw, opts); });
  r.attend_ms = median_ms(o.reps, [&] { cached_attention(shape, qv, cache, ov, {}, opts); });
  r.step_ms = median_ms(o.reps, [&] {
    cache.write(w0, kw, vw, opts);
    cached_attention(shape, qv, cache, ov, {}, opts);
  });
  r.uncached_ms = median_ms(o.reps, [&] { dense_attention(shape, qv, in.kview, in.vview, ov, opts); });
  r.density = pattern.density();
  r.sparse_ms = median_ms(o.reps, [&] { cached_block_sparse_attention(shape, qv, cache, pattern, ov, {}, opts); });
  if (o.scaling) {
    KernelOptions one = opts;
    one.threads = 1;
    r.one_thread_ms = median_ms(o.reps, [&] { cached_attention(shape, qv, cache, ov, {}, one); });
  }
  // Bytes the dense pass reads: each kv head's packed K and V once per query
  // head of its group (GQA rereads them, mostly from cache at small groups).
  const double elem = cache.storage_dtype() == DType::bf16 ? 2.0 : 4.0;
  r.gbs = 2.0 * double(in.KH) * double(kv_len) * double(d) * elem / (r.attend_ms * 1e6);
  return r;
}

}  // namespace

int cached_main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  KernelOptions kopt;
  kopt.threads = o.threads;
  const int threads = resolve_threads(kopt);
  const double bw = copy_bandwidth_gbs(threads, o.reps);
  std::printf("spattn-compare --workload cached: head_dim %lld, %d threads, ISA %s, median of %d reps; "
              "copy bandwidth %.1f GB/s (256 MiB memcpy, read + write, %d threads)\n",
              (long long)o.head_dim, threads, isa_name(active_isa()), o.reps, bw, threads);
  std::printf("%5s %5s %7s %5s | %9s %9s %9s %6s | %11s %7s | %9s %7s %7s | %8s %6s%s\n", "heads", "q", "kv", "dtype",
              "write32", "attend", "step", "step/a", "uncached", "unc/a", "sparse", "dens", "spd", "KV GB/s", "bw",
              o.scaling ? " | 1-thr ms  scaling" : "");
  for (DType t : o.dtypes)
    for (int64_t H : o.heads)
      for (int64_t kv : o.kv_lens) {
        const CachedInputs in(o.kv_heads > 0 ? o.kv_heads : H, kv, o.head_dim, t);
        KernelOptions kopts;
        kopts.threads = threads;
        KVCache cache(in.KH, kv, in.d, t, 0, kopts);
        cache.write(0, in.kview, in.vview, kopts);
        const BlockMask pattern = random_pattern(H, kv, o.density, 7);
        for (int64_t q : o.q_lens) {
          const Row r = run_shape(o, H, q, in, cache, pattern, threads);
          std::printf("%5lld %5lld %7lld %5s | %7.3fms %7.3fms %7.3fms %6.2f | %9.3fms %7.2f | %7.3fms %7.3f %6.2fx | %8.1f %5.0f%%",
                      (long long)r.H, (long long)r.q, (long long)r.kv, dtype_name(r.t), r.write_ms, r.attend_ms,
                      r.step_ms, r.step_ms / r.attend_ms, r.uncached_ms, r.uncached_ms / r.attend_ms, r.sparse_ms,
                      r.density, r.attend_ms / r.sparse_ms, r.gbs, 100.0 * r.gbs / bw);
          if (o.scaling) std::printf(" | %8.3f %7.2fx", r.one_thread_ms, r.one_thread_ms / r.attend_ms);
          std::printf("\n");
          std::fflush(stdout);
        }
      }
  std::printf("write32: KVCache::write of 32 refreshed rows; attend: cached_attention alone; step: both; "
              "uncached: dense_attention packing all K/V per call; sparse: cached_block_sparse_attention on a random "
              "pattern of 64x64 blocks (spd = attend / sparse); KV GB/s: packed K+V bytes of the kv heads / attend; "
              "bw: its share of the copy bandwidth\n");
  return 0;
}

}  // namespace spattn::bench
