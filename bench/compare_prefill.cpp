// spattn-compare --workload prefill: causal LLM prefill on the synthetic
// prefill workload (prefill_synthetic_config): the whole prompt's attention
// for one layer, time-to-first-token style, per method:
//   flash        dense causal flash attention (the reference)
//   bidir        dense bidirectional flash on the same inputs (what causality saves)
//   chunked      dense causal flash in chunks of --chunk queries against the growing cache
//   openblas     sgemm QK^T, causal softmax, sgemm PV
//   unisparse    UniSparse causal selection + block-sparse causal attention
//   sparsed      SparseD-style top-k from the exact causal block mass (an oracle:
//                the mass needs a full pass; its time is shown, not counted)
//   window       sinks + a band behind the queries
// Speedups are medians over repetitions of (flash ms / method ms) within a
// repetition; cosine is the mean row cosine against causal flash.
#include <algorithm>
#include <cmath>
#include <functional>
#include <sstream>
#include <cstdio>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "phase_log.hpp"
#include "spattn/lab/lab.hpp"
#include "spattn/lab/timing.hpp"
#include "spattn/lab/workload.hpp"
#include "tools/cli.hpp"

namespace spattn::bench {
namespace {

using lab::median;
using lab::time_ms;

const char* kUsage = R"(usage: spattn-compare --workload prefill [flags]
Causal LLM prefill (one layer, the whole prompt) on the synthetic prefill
workload: dense causal flash against bidirectional flash, chunked prefill,
OpenBLAS, UniSparse, a SparseD top-k oracle and window+sink.
  --heads H             query heads (= kv heads) (default 2)
  --seq-lens LIST       prompt lengths, e.g. 16K,64K (default 16K)
  --head-dim D          multiple of 16 in [16, 256] (default 128)
  --threads T           threads (default: SPATTN_NUM_THREADS or all cores)
  --reps R              repetitions, medians reported (default 3)
  --chunk C             chunked prefill: queries per chunk (default 4096)
  --block-size B        block of the sparse methods: 16 | 32 | 64 | 128 (default 64)
  --tau T               UniSparse cumulative-mass threshold, (0, 1] (default 0.95)
  --topk-ratio R        SparseD oracle: share of each row's visible blocks (default 0.1)
  --window-tokens N     window+sink band behind the queries (default 1024)
  --sink-tokens N       window+sink sink tokens (default 64)
  --blas-max-n N        run OpenBLAS only up to N tokens (default 16384)
  --bidir-max-n N       run bidirectional flash only up to N tokens (default 16384)
  --methods LIST        subset of bidir,chunked,openblas,unisparse,sparsed,window (default all;
                        causal flash always runs: it is the reference)
  --seed X              workload seed (default 1)
  --npy DIR             instead of the synthetic prompt: captured Q/K/V, one step folder
                        (DIR/q.npy ... or DIR/layerL/...) or a trace directory (its first
                        step); attention is made causal over its tokens (--seq-lens ignored)
  --layer L             with --npy: the layer folder (default: the first)
  --dtype T             fp32 | bf16 | fp16: Q, K and V are rounded to T and handed over
                        as T (default fp32); chunked and openblas take fp32 only and are
                        left out otherwise
  --q-tile R            query rows per work item of the dense paths: 16 | 32 | 64 | 128
                        (default: the ISA's preferred tile for the dtype, as the library's)
  --k-block B           keys per block of the dense paths: 16 | 32 | 64 | 128 | 256 | 512 (default: as --q-tile)
  --phases              after each table, where each method's time goes: the library's phases
                        (packing, selection passes, the attention loop), ms per rep
  --causal 0|1          1 (default): causal prefill; 0: every method bidirectional (the
                        reference is then bidirectional flash; bidir is left out)
)";

struct Options {
  int64_t heads = 2, head_dim = 128, chunk = 4096, block = 64, window = 1024, sinks = 64;
  int64_t blas_max_n = 16384, bidir_max_n = 16384;
  std::vector<int64_t> seq_lens{16384};
  int threads = 0, reps = 3;
  double tau = 0.95, topk = 0.1;
  uint64_t seed = 1;
  std::string npy;
  int layer = -1;
  DType dtype = DType::fp32;
  bool causal = true;
  bool phases = false;
  int64_t q_tile = 0, k_block = 0;  // 0: preferred_tiles
  std::vector<std::string> methods{"bidir", "chunked", "openblas", "unisparse", "sparsed", "window"};
  bool wants(const char* name) const { return std::find(methods.begin(), methods.end(), name) != methods.end(); }
};

Options parse(int argc, char** argv) {
  cli::Args a{"spattn-compare", argc, argv};
  Options o;
  while (!a.done()) {
    const std::string f = a.flag();
    if (a.common(f, kUsage)) {
    } else if (f == "--workload") {
      if (a.value(f) != "prefill") cli::usage_error(a.tool, "--workload: this mode is 'prefill'");
    } else if (f == "--heads") {
      o.heads = a.integer(f, 1, 1024);
    } else if (f == "--seq-lens") {
      o.seq_lens = cli::int_list(a, f, 16, 1 << 22);
    } else if (f == "--head-dim") {
      o.head_dim = a.integer(f, 16, kMaxHeadDim);
    } else if (f == "--threads") {
      o.threads = a.threads(f);
    } else if (f == "--reps") {
      o.reps = static_cast<int>(a.integer(f, 1, 1000));
    } else if (f == "--chunk") {
      o.chunk = a.integer(f, 1, 1 << 22);
    } else if (f == "--block-size") {
      o.block = a.integer(f, 16, 128);
      if (!is_supported_block_size(o.block)) cli::usage_error(a.tool, "--block-size: " + std::string(kBlockSizeRule));
    } else if (f == "--tau") {
      o.tau = a.real(f, 0, 1, /*lo_open=*/true);
    } else if (f == "--topk-ratio") {
      o.topk = a.real(f, 0, 1, /*lo_open=*/true);
    } else if (f == "--window-tokens") {
      o.window = a.integer(f, 0, 1 << 22);
    } else if (f == "--sink-tokens") {
      o.sinks = a.integer(f, 0, 1 << 22);
    } else if (f == "--blas-max-n") {
      o.blas_max_n = a.integer(f, 0, 1 << 22);
    } else if (f == "--bidir-max-n") {
      o.bidir_max_n = a.integer(f, 0, 1 << 22);
    } else if (f == "--methods") {
      const std::vector<std::string> all = o.methods;
      std::stringstream list(a.value(f));
      o.methods.clear();
      for (std::string m; std::getline(list, m, ',');) {
        if (std::find(all.begin(), all.end(), m) == all.end())
          cli::usage_error(a.tool, "--methods: unknown method '" + m + "'");
        o.methods.push_back(m);
      }
    } else if (f == "--npy") {
      o.npy = a.value(f);
    } else if (f == "--layer") {
      o.layer = static_cast<int>(a.integer(f, 0, 1 << 20));
    } else if (f == "--dtype") {
      o.dtype = a.dtype(f);
    } else if (f == "--q-tile") {
      o.q_tile = a.integer(f, 16, 128);
      if (!is_supported_block_size(o.q_tile)) cli::usage_error(a.tool, "--q-tile: " + std::string(kBlockSizeRule));
    } else if (f == "--k-block") {
      o.k_block = a.integer(f, 16, 512);
      if (!is_supported_key_block(o.k_block)) cli::usage_error(a.tool, "--k-block: " + std::string(kKeyBlockRule));
    } else if (f == "--phases") {
      o.phases = true;
    } else if (f == "--causal") {
      o.causal = a.integer(f, 0, 1) != 0;
    } else if (f == "--seed") {
      o.seed = static_cast<uint64_t>(a.integer(f, 0, INT64_MAX));
    } else {
      cli::usage_error(a.tool, "unknown flag " + f);
    }
  }
  if (o.head_dim % kHeadDimMultiple != 0) cli::usage_error(a.tool, "--head-dim: must be a multiple of 16");
  return o;
}

// One layer's prefill inputs, heads-major, and the causal flash output.
struct Prefill {
  AttentionShape shape;
  std::vector<float> q, k, v, ref;
  DType dtype = DType::fp32;
  NarrowInputs narrow;  // q, k, v as dtype
  ConstTensorView view(const std::vector<float>& x, int64_t heads) const {
    return ConstTensorView::heads_major(x.data(), heads, shape.kv_len, shape.head_dim);
  }
  ConstTensorView qv() const { return view(q, shape.heads); }
  ConstTensorView kv() const { return view(k, shape.kv_heads); }
  ConstTensorView vv() const { return view(v, shape.kv_heads); }
  // q, k, v as handed to the kernels: dtype's copies (rounded once), or fp32.
  InputView qi() const { return narrow.view(0, qv()); }
  InputView ki() const { return narrow.view(1, kv()); }
  InputView vi() const { return narrow.view(2, vv()); }
};

// A method's run: fills out (heads-major); extra_ms gets time spent outside
// the timed attention (the oracle's mass), density the kept share of the
// causal block area.
struct Method {
  const char* name;
  std::function<void(const Prefill&, std::vector<float>& out, double& select_ms, double& density)> run;
  bool accuracy = true;  // compared against causal flash (bidir is not causal attention)
};

// Share of the causal area's (query block, key block) pairs the mask keeps.
double causal_density(const BlockMask& m, const AttentionShape& s) {
  double visible = 0;
  for (int64_t qb = 0; qb < m.q_blocks(); ++qb)
    visible += double((s.query_position0() + std::min(s.q_len, (qb + 1) * m.q_block) - 1) / m.k_block + 1);
  return double(m.col_idx.size()) / (visible * double(m.heads));
}

std::vector<Method> methods(const Options& o, const KernelOptions& ko, int64_t n) {
  std::vector<Method> ms;
  auto out_view = [](const Prefill& p, std::vector<float>& out) {
    out.resize(p.q.size());
    return TensorView::heads_major(out.data(), p.shape.heads, p.shape.q_len, p.shape.head_dim);
  };
  auto run_mask = [=](const Prefill& p, std::vector<float>& out, const BlockMask& m, double& density) {
    density = causal_density(m, p.shape);
    block_sparse_attention(p.shape, p.qi(), p.ki(), p.vi(), m, out_view(p, out), ko);
  };
  if (n <= o.bidir_max_n)
    ms.push_back({"bidir", [=](const Prefill& p, std::vector<float>& out, double&, double& d) {
                    AttentionShape s = p.shape;
                    s.causal = false;
                    d = 2.0;  // twice the causal area
                    dense_attention(s, p.qi(), p.ki(), p.vi(), out_view(p, out), ko);
                  }, false});
  ms.push_back({"chunked", [=](const Prefill& p, std::vector<float>& out, double&, double& d) {
                  d = 1.0;
                  const TensorView all = out_view(p, out);
                  for (int64_t c0 = 0; c0 < p.shape.q_len; c0 += o.chunk) {
                    const int64_t c1 = std::min(p.shape.q_len, c0 + o.chunk);
                    AttentionShape s = p.shape;
                    s.q_len = c1 - c0;
                    s.kv_len = c1;  // the cache holds the chunks so far
                    s.q_offset = c0;
                    ConstTensorView q = p.qv(), k = p.kv(), v = p.vv();
                    q.data = p.qv().row(0, c0);
                    q.tokens = s.q_len;
                    k.tokens = v.tokens = c1;
                    TensorView ov = all;
                    ov.data = all.row(0, c0);
                    ov.tokens = s.q_len;
                    dense_attention(s, q, k, v, ov, ko);
                  }
                }});
  if (have_blas() && n <= o.blas_max_n)
    ms.push_back({"openblas", [=](const Prefill& p, std::vector<float>& out, double&, double& d) {
                    d = 1.0;
                    blas_attention(p.shape, p.qv(), p.kv(), p.vv(), out_view(p, out), ko);
                  }});
  ms.push_back({"unisparse", [=](const Prefill& p, std::vector<float>& out, double& sel, double& d) {
                  UnisparseParams u;
                  u.block_size = o.block;
                  u.tau = o.tau;
                  BlockMask m;
                  sel = time_ms([&] { m = unisparse_select(p.shape, p.qi(), p.ki(), u, ko); });
                  run_mask(p, out, m, d);
                }});
  ms.push_back({"sparsed", [=](const Prefill& p, std::vector<float>& out, double& sel, double& d) {
                  BlockMass mass;
                  sel = time_ms([&] { mass = block_attention_mass(p.shape, p.qi(), p.ki(), o.block, o.block, ko); });
                  const BlockMask m = sparsed_select(mass, o.topk);
                  sel = -sel;  // oracle: shown, not counted in the method's time
                  run_mask(p, out, m, d);
                }});
  ms.push_back({"window", [=](const Prefill& p, std::vector<float>& out, double& sel, double& d) {
                  WindowSinkParams w;
                  w.block_size = o.block;
                  w.window_tokens = o.window;
                  w.sink_tokens = o.sinks;
                  BlockMask m;
                  sel = time_ms([&] { m = window_sink_mask(p.shape, w); });
                  run_mask(p, out, m, d);
                }});
  std::erase_if(ms, [&](const Method& m) {
    const std::string name = m.name;
    const bool fp32_only = name == "chunked" || name == "openblas";
    return !o.wants(m.name) || (fp32_only && o.dtype != DType::fp32) || (name == "bidir" && !o.causal);
  });
  return ms;
}

double mean_cosine(const Prefill& p, const std::vector<float>& out) {
  const int64_t per_head = p.shape.q_len * p.shape.head_dim;
  double sum = 0;
  std::vector<double> r(static_cast<size_t>(per_head));
  for (int64_t h = 0; h < p.shape.heads; ++h) {
    for (int64_t i = 0; i < per_head; ++i) r[i] = p.ref[h * per_head + i];
    sum += cosine_similarity(ConstTensorView::heads_major(out.data() + h * per_head, 1, p.shape.q_len, p.shape.head_dim),
                             r);
  }
  return sum / double(p.shape.heads);
}

// The synthetic prompt of n tokens, or the captured step --npy names.
Prefill load(const Options& o, int64_t n) {
  if (!o.npy.empty()) {
    const std::vector<std::string> steps = list_npy_steps(o.npy);
    NpyStep st = load_npy_step(steps.empty() ? o.npy : steps.front(), o.layer);
    st.shape.causal = o.causal;
    if (st.shape.q_len != st.shape.kv_len)
      throw Error("spattn-compare: --npy: q and k have different token counts; prefill needs one sequence");
    return Prefill{st.shape, std::move(st.q), std::move(st.k), std::move(st.v), {}, DType::fp32, {}};
  }
  SyntheticConfig c = prefill_synthetic_config(o.heads, n);
  c.head_dim = o.head_dim;
  c.seed = o.seed;
  const SyntheticWorkload w(c);
  Prefill p{w.shape(), {}, {}, {}, {}, DType::fp32, {}};
  p.shape.causal = o.causal;
  w.step(0, p.q, p.k, p.v);
  return p;
}

void run_length(const Options& o, const KernelOptions& ko, int64_t n_wanted) {
  Prefill p = load(o, n_wanted);
  p.dtype = o.dtype;
  p.narrow.round(o.dtype, p.q, p.k, p.v);
  const int64_t n = p.shape.kv_len;
  p.ref.resize(p.q.size());
  const TensorView ref_view = TensorView::heads_major(p.ref.data(), p.shape.heads, n, p.shape.head_dim);
  const std::vector<Method> ms = methods(o, ko, n);
  std::vector<double> flash_ms;
  std::vector<std::vector<double>> ratio(ms.size()), total(ms.size()), sel(ms.size());
  std::vector<double> cosine(ms.size(), NAN), density(ms.size(), NAN);
  std::vector<float> out;
  PhaseLog phases(o.phases);
  dense_attention(p.shape, p.qi(), p.ki(), p.vi(), ref_view, ko);  // warm-up: threads, pages, caches
  phases.skip();
  for (int rep = 0; rep < o.reps; ++rep) {
    const double f = time_ms([&] { dense_attention(p.shape, p.qi(), p.ki(), p.vi(), ref_view, ko); });
    phases.add(p.shape.causal ? "causal flash" : "bidirectional flash");
    flash_ms.push_back(f);
    for (size_t i = 0; i < ms.size(); ++i) {
      double s = 0, d = NAN;
      const double t = time_ms([&] { ms[i].run(p, out, s, d); });
      phases.add(ms[i].name);
      const double counted = s < 0 ? t + s : t;  // an oracle's selection is not counted
      total[i].push_back(counted);
      ratio[i].push_back(f / counted);
      sel[i].push_back(std::fabs(s));
      density[i] = d;
      if (ms[i].accuracy && rep == 0) cosine[i] = mean_cosine(p, out);
      phases.skip();  // the accuracy check's reference is not the method's
      std::fprintf(stderr, "\r  N %lld rep %d/%d: %-10s        ", (long long)n, rep + 1, o.reps, ms[i].name);
    }
  }
  std::fprintf(stderr, "\r%60s\r", "");
  const double fm = median(flash_ms);
  const AttentionShape& s = p.shape;
  const TileSizes tiles = resolve_tiles(ko, o.dtype);
  std::printf("\nN %lld, heads %lld (kv %lld), head_dim %lld, %s%s: %s flash %.1f ms (%.1f GFLOP/s%s), tiles %lld x %lld\n",
              (long long)n, (long long)s.heads, (long long)s.kv_heads, (long long)s.head_dim, dtype_name(o.dtype),
              o.npy.empty() ? "" : (", " + o.npy).c_str(), s.causal ? "causal" : "bidirectional", fm,
              (s.causal ? 2.0 : 4.0) * double(s.heads) * double(n) * double(n) * double(s.head_dim) / (fm * 1e6),
              s.causal ? " over the causal half" : "", (long long)tiles.q_tile_rows, (long long)tiles.k_block);
  std::printf("  %-10s %12s %9s %11s %9s %10s\n", "method", "prefill ms", "vs flash", "select ms", "density", "cosine");
  for (size_t i = 0; i < ms.size(); ++i) {
    const bool oracle = std::string(ms[i].name) == "sparsed";
    std::printf("  %-10s %12.1f %8.2fx %10.1f%s %9.3f %10.6f\n", ms[i].name, median(total[i]), median(ratio[i]),
                median(sel[i]), oracle ? "*" : " ", density[i], cosine[i]);
  }
  phases.print(o.reps);
}

}  // namespace

int prefill_main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  KernelOptions ko;
  ko.threads = o.threads;
  ko.q_tile_rows = o.q_tile;
  ko.k_block = o.k_block;
  std::printf("spattn-compare --workload prefill: %d threads, ISA %s, median of %d reps\n", resolve_threads(ko),
              isa_name(active_isa()), o.reps);
  if (!o.npy.empty()) run_length(o, ko, 0);
  else
    for (int64_t n : o.seq_lens) run_length(o, ko, n);
  std::printf("\nprefill ms: the whole prompt's attention for one layer (all heads), selection included; "
              "vs flash: median of per-rep flash/method ratios; density: kept share of the causal block area "
              "(bidir: 2 = the full square); cosine: mean row cosine against causal flash; "
              "* sparsed is an oracle: its select ms (the exact block mass, a full pass) is shown, not counted\n");
  return 0;
}

}  // namespace spattn::bench
