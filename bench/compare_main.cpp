// spattn-compare: the sparse methods against the dense baselines, per shape,
// on the synthetic diffusion workload: time per step, GFLOP/s, speedups,
// accuracy against dense flash, and the whole S-step diffusion run with its
// dense warmup. Optional JSON / CSV / SVG plot, and an export of the SparseD
// block mask plus Q/K/V for bench/peers/torch_peers.py.
//
// Each shape uses two steps of the workload, as the DiffusionAttention
// session does: the patterns are recorded at the last dense warmup step
// (W - 1) and applied at the middle step of the sparse phase, so the accuracy
// includes the drift a reused pattern sees.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "spattn/config.h"
#include "bench_common.hpp"
#include "tools/cli.hpp"
#include "tools/json.hpp"
#include "spattn/lab/timing.hpp"
#include "loglog_plot.hpp"
#include "npy_u8.hpp"
#include "spattn/lab/workload.hpp"
#if SPATTN_HAS_YAML
#include "spattn/profile.hpp"
#endif

namespace spattn::bench {
int prefill_main(int argc, char** argv);  // compare_prefill.cpp
int cached_main(int argc, char** argv);   // compare_cached.cpp
}

namespace {

using namespace spattn;
using Clock = std::chrono::steady_clock;
using lab::median;
using lab::time_ms;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

const char* kUsage = R"(usage: spattn-compare [flags]
Sparse methods (SparseD, UniSparse, DPad+SparseD, window+sink) against dense
baselines (naive, OpenBLAS, flash) on the synthetic diffusion workload.
  --workload W          diffusion (default) | prefill: causal LLM prefill, its own
                        flags (spattn-compare --workload prefill --help) | cached:
                        a block of queries against a KV cache (--workload cached --help)
  --heads LIST          query heads (= kv heads), comma separated (default 8,32)
  --seq-lens LIST       sequence lengths, e.g. 4096,8192 or 4K,64K (default 4K..64K)
  --quick               drop sequence lengths above 16K
  --head-dim D          multiple of 16 in [16, 256] (default 128)
  --dtype T             fp32 (default) | bf16 | fp16: Q, K and V are rounded once to T;
                        flash, sparsed, unisparse and window read them as T (fp32 output);
                        naive, openblas and dpad+sparsed are fp32 only and sit out
  --threads T           threads (default: SPATTN_NUM_THREADS or all cores)
  --reps R              timed repetitions per method, medians reported (default 5)
  --steps S             denoising steps of the whole-run estimate (default 256)
  --warmup-fraction W   dense warmup share of the steps, [0, 1) (default 0.15)
  --block-size B        16 | 32 | 64 | 128 (default 64)
  --topk-ratio R        SparseD top-k share of key blocks, (0, 1] (default 0.1)
  --mass-tau T          SparseD: adaptive budget instead, per row the fewest blocks holding T of its mass
  --dense-head-share D  with --mass-tau: a head keeping more than this share of blocks runs dense (default 1)
  --tau T               UniSparse cumulative-mass threshold, (0, 1] (default 0.95))"
#if SPATTN_HAS_YAML
                     R"(
  --profile FILE        take block size / top-k / warmup per shape from a tuned profile)"
#endif
                     R"(
  --methods LIST        subset of naive,openblas,flash,sparsed,unisparse,dpad+sparsed,window
                        (flash is always measured: it is the reference)
  --naive-max-n N       run naive only up to N tokens (default 4096)
  --blas-max-n N        run OpenBLAS only up to N tokens (default 0: no limit)
  --window-tokens N     window+sink band width in tokens (default 512)
  --sink-tokens N       window+sink sink tokens (default 64)
  --seed X              workload seed (default 1)
  --json FILE           one record per method and shape
  --csv FILE            the same records as CSV
  --plot FILE.svg       time per step against N, log-log (heads = the first --heads value)
  --export-mask DIR     per shape DIR/h<H>_n<N>/: mask.npy (SparseD, uint8 [heads][q_blocks][k_blocks]),
                        q/k/v.npy (float32 [heads][N][d], the applied step), out_flash.npy,
                        out_sparsed.npy and meta.json, for bench/peers/torch_peers.py
  --quiet               no progress on stderr
Whole-run ms: dense methods S x ms/step; sparse ones W dense steps (W = ceil(w S), at least
1 for SparseD) + pattern build + (S - W) sparse steps (DPad+SparseD's warmup runs dense over
its kept tokens, as the session does; DPad drops the far suffix from the step,
so its accuracy is over the kept tokens' rows).
)";

enum class Method { naive, openblas, flash, sparsed, unisparse, dpad_sparsed, window };
constexpr Method kAllMethods[] = {Method::naive,     Method::openblas,     Method::flash, Method::sparsed,
                                  Method::unisparse, Method::dpad_sparsed, Method::window};
const char* method_name(Method m) {
  switch (m) {
    case Method::naive: return "naive";
    case Method::openblas: return "openblas";
    case Method::flash: return "flash";
    case Method::sparsed: return "sparsed";
    case Method::unisparse: return "unisparse";
    case Method::dpad_sparsed: return "dpad+sparsed";
    case Method::window: return "window";
  }
  return "?";
}
bool is_dense(Method m) { return m == Method::naive || m == Method::openblas || m == Method::flash; }

struct Options {
  std::vector<int64_t> heads{8, 32};
  std::vector<int64_t> seq_lens{4096, 8192, 16384, 32768, 65536};
  bool quick = false, quiet = false;
  int64_t head_dim = 128;
  DType dtype = DType::fp32;
  int threads = 0;
  int reps = 5;
  int64_t steps = 256;
  double warmup = 0.15;
  int64_t block = 64;
  double topk = 0.1;
  double tau = 0.95;
  double mass_tau = 0, dense_head_share = 1;  // SparseD's adaptive budget when mass_tau > 0
  std::string profile, json, csv, plot, export_dir;
  std::vector<Method> methods{std::begin(kAllMethods), std::end(kAllMethods)};
  int64_t naive_max_n = 4096, blas_max_n = 0;
  int64_t window_tokens = 512, sink_tokens = 64;
  uint64_t seed = 1;
  bool wants(Method m) const { return std::find(methods.begin(), methods.end(), m) != methods.end(); }
};

// "4096", "4K" (x1024) or "1M" (x1048576), comma separated.
std::vector<Method> parse_methods(cli::Args& a, const std::string& f) {
  const std::string v = a.value(f);
  std::vector<Method> out;
  std::stringstream ss(v);
  std::string item;
  while (std::getline(ss, item, ',')) {
    bool found = false;
    for (Method m : kAllMethods)
      if (item == method_name(m)) {
        if (std::find(out.begin(), out.end(), m) == out.end()) out.push_back(m);
        found = true;
      }
    if (!found)
      cli::usage_error(a.tool, f + ": unknown method '" + item +
                                   "' (naive, openblas, flash, sparsed, unisparse, dpad+sparsed, window)");
  }
  if (out.empty()) cli::usage_error(a.tool, f + ": empty list");
  // Keep the table's fixed order, whatever order was given.
  std::vector<Method> ordered;
  for (Method m : kAllMethods)
    if (std::find(out.begin(), out.end(), m) != out.end()) ordered.push_back(m);
  return ordered;
}

double peak_rss_mib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;  // Linux reports KiB
}

// Parameters of one shape: from the flags or from the profile.
struct ShapeParams {
  int64_t block = 64;
  double topk = 0.1, warmup = 0.15;
  double mass_tau = 0, dense_head_share = 1;  // > 0: the adaptive budget instead of topk
  std::string source = "flags";
};

// What one method gave on one shape.
struct Row {
  Method method{};
  int64_t heads = 0, n = 0, d = 0;
  ShapeParams params;
  std::string skipped;  // non-empty: why the method did not run
  std::vector<double> ms, vs_flash, vs_blas;  // per timed repetition
  double density = kNaN, cosine = kNaN, rel_l2 = kNaN;
  double build_ms = 0.0;  // pattern build (SparseD, DPad+SparseD), measured once
  double warm_step_ms = kNaN;  // one dense warmup step (NaN: dense flash's median)
  int64_t warmup_steps = 0, record_step = 0, apply_step = 0;
  double peak_rss = 0.0;
  // Derived.
  double ms_step() const { return median(ms); }
  double gflops() const {
    return 4.0 * double(heads) * double(n) * double(n) * double(d) * (is_dense(method) ? 1.0 : density) /
           (ms_step() * 1e6);
  }
};

// Mean row cosine and relative L2 of out against ref (both fp32 heads-major),
// one head at a time so the double copy of the reference stays O(N d).
void accuracy(const AttentionShape& s, const std::vector<float>& out, const std::vector<float>& ref,
              double& cosine, double& rel_l2) {
  const int64_t per_head = s.q_len * s.head_dim;
  std::vector<double> r(static_cast<size_t>(per_head));
  double cos_sum = 0, err2 = 0, ref2 = 0;
  for (int64_t h = 0; h < s.heads; ++h) {
    double rn2 = 0;
    for (int64_t i = 0; i < per_head; ++i) {
      r[i] = ref[h * per_head + i];
      rn2 += r[i] * r[i];
    }
    const ConstTensorView ov = ConstTensorView::heads_major(out.data() + h * per_head, 1, s.q_len, s.head_dim);
    cos_sum += cosine_similarity(ov, r);
    const double e = relative_l2_error(ov, r);  // absolute when this head's ref is all zeros
    err2 += rn2 > 0 ? e * e * rn2 : e * e;
    ref2 += rn2;
  }
  cosine = cos_sum / double(s.heads);
  rel_l2 = ref2 > 0 ? std::sqrt(err2 / ref2) : std::sqrt(err2);
}

// DPad's geometry on the synthetic workload, as spattn-eval sets it: the
// prompt is the first half; decoding is at the 512-token block after it.
DpadParams dpad_geometry(int64_t n) {
  DpadParams p;
  p.prefix_len = n / 2;
  p.block_start = n / 2;
  p.block_end = std::min<int64_t>(n, n / 2 + 512);
  p.window = 512;
  p.sigma = 1024;
  return p;
}

// Rows of the kept tokens of a heads-major [heads][N][d] tensor: the
// library's DPad compaction, the one the session runs.
void compact_rows(const std::vector<float>& t, int64_t heads, int64_t N, int64_t d,
                  const std::vector<int32_t>& kept, std::vector<float>& out, int threads) {
  KernelOptions o;
  o.threads = threads;
  gather_tokens(ConstTensorView::heads_major(t.data(), heads, N, d), kept, out, o);
}

// K/V rows of the kept tokens (what the session does per step).
void compact_kv(const AttentionShape& s, const std::vector<float>& k, const std::vector<float>& v,
                const std::vector<int32_t>& kept, std::vector<float>& kc, std::vector<float>& vc, int threads) {
  compact_rows(k, s.kv_heads, s.kv_len, s.head_dim, kept, kc, threads);
  compact_rows(v, s.kv_heads, s.kv_len, s.head_dim, kept, vc, threads);
}

std::string num(double x) {
  if (!std::isfinite(x)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", x);
  return buf;
}

std::string fmt(const char* f, double x) {
  if (!std::isfinite(x)) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, f, x);
  return buf;
}

// ---------------------------------------------------------------------------
// Output records: the same keys for JSON and CSV.

struct Field {
  std::string key, value;  // value: a JSON number / null, or a quoted string
  bool quoted = false;
};

std::vector<Field> record_fields(const Row& r, const Options& o, double flash_ms, int threads) {
  const bool ok = r.skipped.empty();
  const double ms = ok ? r.ms_step() : kNaN;
  const int64_t S = o.steps;
  double whole = kNaN;
  if (ok) {
    if (is_dense(r.method)) {
      whole = double(S) * ms;
    } else {
      const double warm = std::isfinite(r.warm_step_ms) ? r.warm_step_ms : flash_ms;
      whole = double(r.warmup_steps) * warm + r.build_ms + double(S - r.warmup_steps) * ms;
    }
  }
  auto n = [&](double x) { return ok ? num(x) : std::string("null"); };
  std::vector<Field> f = {
      {"method", method_name(r.method), true},
      {"seq_len", std::to_string(r.n)},
      {"heads", std::to_string(r.heads)},
      {"head_dim", std::to_string(r.d)},
      {"density", n(is_dense(r.method) ? 1.0 : r.density)},
      {"ms_per_step", n(ms)},
      {"speedup_vs_flash", n(median(r.vs_flash))},
      {"cosine", n(r.cosine)},
      {"whole_run_ms", n(whole)},
      {"gflops", n(r.gflops())},
      {"speedup_vs_openblas", n(median(r.vs_blas))},
      {"rel_l2", n(r.rel_l2)},
      {"whole_run_speedup_vs_flash", n(double(S) * flash_ms / whole)},
      {"pattern_build_ms", n(r.build_ms)},
      {"steps", std::to_string(S)},
      {"warmup_steps", std::to_string(is_dense(r.method) ? 0 : r.warmup_steps)},
      {"block_size", std::to_string(r.params.block)},
      {"topk_ratio", num(r.params.topk)},
      {"mass_tau", num(r.params.mass_tau)},
      {"dense_head_share", num(r.params.dense_head_share)},
      {"warmup_fraction", num(r.params.warmup)},
      {"params_from", r.params.source, true},
      {"record_step", std::to_string(r.record_step)},
      {"apply_step", std::to_string(r.apply_step)},
      {"reps", std::to_string(r.ms.size())},
      {"threads", std::to_string(threads)},
      {"isa", isa_name(active_isa()), true},
      {"dtype", dtype_name(o.dtype), true},
      {"peak_rss_mib", num(r.peak_rss)},
      {"skipped", r.skipped, true},
  };
  return f;
}

void write_json(const std::string& path, const std::vector<std::vector<Field>>& recs) {
  cli::Json records = cli::Json::array();
  for (const std::vector<Field>& rec : recs) {
    cli::Json j;
    for (const Field& f : rec) {
      if (f.quoted) j[f.key] = f.value;
      else if (f.value == "null") j[f.key] = nullptr;
      else j[f.key] = std::stod(f.value);
    }
    records.push_back(std::move(j));
  }
  cli::write_json_file(path, "spattn-compare", std::move(records));  // one record per method and shape
}

void write_csv(const std::string& path, const std::vector<std::vector<Field>>& recs) {
  std::ofstream cs(path);
  if (!recs.empty())
    for (size_t j = 0; j < recs[0].size(); ++j) cs << (j ? "," : "") << recs[0][j].key;
  cs << "\n";
  for (const auto& rec : recs) {
    for (size_t j = 0; j < rec.size(); ++j) {
      const std::string& v = rec[j].value;
      cs << (j ? "," : "");
      if (rec[j].quoted) cs << '"' << v << '"';  // our strings hold no quotes
      else if (v != "null") cs << v;
    }
    cs << "\n";
  }
  if (!cs) throw Error("spattn-compare: cannot write '" + path + "'");
}

// ---------------------------------------------------------------------------
// SVG plot: ms/step against N on log-log axes, so a quadratic method climbs
// at twice the slope of a linear one; N^1 and N^2 guides make that visible.

void write_plot(const std::string& path, const std::vector<Row>& rows, int64_t heads, int64_t d, int threads) {
  const std::map<Method, const char*> color = {
      {Method::naive, "#8c564b"},   {Method::openblas, "#7f7f7f"},  {Method::flash, "#d62728"},
      {Method::sparsed, "#1f77b4"}, {Method::unisparse, "#2ca02c"}, {Method::dpad_sparsed, "#9467bd"},
      {Method::window, "#ff7f0e"}};
  std::map<Method, bench::PlotSeries> by_method;
  for (const Row& r : rows) {
    if (r.heads != heads || !r.skipped.empty() || !(r.ms_step() > 0)) continue;
    bench::PlotSeries& s = by_method[r.method];
    s.name = method_name(r.method);
    s.color = color.at(r.method);
    s.points.push_back({double(r.n), r.ms_step()});
  }
  std::vector<bench::PlotSeries> series;
  for (auto& [m, s] : by_method) series.push_back(std::move(s));
  char title[256];
  std::snprintf(title, sizeof title, "time per step vs N (heads %lld, head_dim %lld, %d threads, %s)",
                (long long)heads, (long long)d, threads, isa_name(active_isa()));
  bench::write_loglog_plot(path, title, series, method_name(Method::flash));
}

// ---------------------------------------------------------------------------

Options parse(int argc, char** argv) {
  cli::Args a{"spattn-compare", argc, argv};
  Options o;
  bool seq_given = false;
  while (!a.done()) {
    const std::string f = a.flag();
    if (a.common(f, kUsage)) {
    } else if (f == "--workload") {
      if (a.value(f) != "diffusion") cli::usage_error(a.tool, "--workload: diffusion, prefill or cached");
    } else if (f == "--heads") {
      o.heads = cli::int_list(a, f, 1, 1024);
    } else if (f == "--seq-lens") {
      o.seq_lens = cli::int_list(a, f, 16, 1 << 22);
      seq_given = true;
    } else if (f == "--quick") {
      o.quick = true;
    } else if (f == "--head-dim") {
      o.head_dim = a.integer(f, 16, kMaxHeadDim);
      if (o.head_dim % kHeadDimMultiple != 0) cli::usage_error(a.tool, "--head-dim must be a multiple of 16");
    } else if (f == "--dtype") {
      o.dtype = a.dtype(f);
    } else if (f == "--threads") {
      o.threads = a.threads(f);
    } else if (f == "--reps") {
      o.reps = static_cast<int>(a.integer(f, 1, 1000));
    } else if (f == "--steps") {
      o.steps = a.integer(f, 1, 1 << 20);
    } else if (f == "--warmup-fraction") {
      o.warmup = a.real(f, 0.0, 0.999999);
    } else if (f == "--block-size") {
      o.block = a.integer(f, 16, 128);
      if (!is_supported_block_size(o.block)) cli::usage_error(a.tool, std::string("--block-size ") + kBlockSizeRule);
    } else if (f == "--topk-ratio") {
      o.topk = a.real(f, 0.0, 1.0, true);
    } else if (f == "--tau") {
      o.tau = a.real(f, 0.0, 1.0, true);
    } else if (f == "--mass-tau") {
      o.mass_tau = a.real(f, 0.0, 1.0, true);
    } else if (f == "--dense-head-share") {
      o.dense_head_share = a.real(f, 0.0, 1.0, true);
    } else if (f == "--profile") {
#if SPATTN_HAS_YAML
      o.profile = a.value(f);
#else
      cli::usage_error(a.tool, "--profile: this build has no YAML profile support (SPATTN_WITH_YAML=OFF)");
#endif
    } else if (f == "--methods") {
      o.methods = parse_methods(a, f);
    } else if (f == "--naive-max-n") {
      o.naive_max_n = a.integer(f, 0, 1LL << 40);
    } else if (f == "--blas-max-n") {
      o.blas_max_n = a.integer(f, 0, 1LL << 40);
    } else if (f == "--window-tokens") {
      o.window_tokens = a.integer(f, 0, 1LL << 40);
    } else if (f == "--sink-tokens") {
      o.sink_tokens = a.integer(f, 0, 1LL << 40);
    } else if (f == "--seed") {
      o.seed = static_cast<uint64_t>(a.integer(f, 0, 1LL << 62));
    } else if (f == "--json") {
      o.json = a.value(f);
    } else if (f == "--csv") {
      o.csv = a.value(f);
    } else if (f == "--plot") {
      o.plot = a.value(f);
    } else if (f == "--export-mask") {
      o.export_dir = a.value(f);
    } else if (f == "--quiet") {
      o.quiet = true;
    } else {
      cli::usage_error(a.tool, "unknown flag '" + f + "'");
    }
  }
  if (o.quick) {
    std::erase_if(o.seq_lens, [](int64_t n) { return n > 16384; });
    if (o.seq_lens.empty())
      cli::usage_error(a.tool, std::string("--quick drops every sequence length above 16K") +
                                   (seq_given ? " and --seq-lens has no other" : ""));
  }
  return o;
}

// Runs every selected method on one shape; appends its rows.
// One shape: its workload, the patterns recorded at the last warmup step, and
// every method timed on the applied step next to dense flash.
class ShapeRun {
 public:
  ShapeRun(const Options& o, int64_t H, int64_t N, const ShapeParams& p)
      : o_(o), H_(H), N_(N), d_(o.head_dim), S_(o.steps), p_(p), wl_(synthetic_config(o, H, N)), shape_(wl_.shape()),
        cshape_(shape_), tag_("h" + std::to_string(H) + " N" + std::to_string(N)) {
    kopt_.threads = o.threads;
    threads_ = resolve_threads(kopt_);
    // Warmup steps as DiffusionAttention::warmup_steps counts them.
    w0_ = warmup_steps_for(Policy::unisparse, p.warmup, S_);
    w_sd_ = warmup_steps_for(Policy::sparsed, p.warmup, S_);
    record_ = w_sd_ - 1;
    apply_ = w_sd_ < S_ ? w_sd_ + (S_ - w_sd_ - 1) / 2 : S_ - 1;
    make_rows();
    const size_t qsize = static_cast<size_t>(H * N * d_);
    ref_.resize(qsize);
    out_.resize(qsize);
    lse_.resize(static_cast<size_t>(H * N));
  }

  void run(std::vector<Row>& rows) {
    progress("[%s] generating step %lld\n", tag_.c_str(), (long long)record_);
    wl_.step(record_, q_, k_, v_);
    narrow_.round(o_.dtype, q_, k_, v_);
    if (row_of(Method::sparsed) != nullptr || !o_.export_dir.empty()) record_sparsed();
    if (row_of(Method::dpad_sparsed) != nullptr) record_dpad();
    progress("[%s] generating step %lld\n", tag_.c_str(), (long long)apply_);
    wl_.step(apply_, q_, k_, v_);
    narrow_.round(o_.dtype, q_, k_, v_);
    make_export_dir();
    for (int rep = 0; rep < o_.reps; ++rep) time_rep(rep);
    const double rss = peak_rss_mib();
    for (Row& r : mine_) r.peak_rss = rss;
    progress("[%s] peak RSS so far %.0f MiB\n", tag_.c_str(), rss);
    if (!exdir_.empty()) export_pattern();
    for (Row& r : mine_)
      if (o_.wants(r.method)) rows.push_back(std::move(r));
  }

 private:
  static SyntheticConfig synthetic_config(const Options& o, int64_t H, int64_t N) {
    SyntheticConfig sc;
    sc.heads = sc.kv_heads = H;
    sc.seq_len = N;
    sc.head_dim = o.head_dim;
    sc.steps = o.steps;
    sc.seed = o.seed;
    return sc;
  }

  template <class... Xs>
  void progress(const char* fmt_, Xs... xs) const {
    if (o_.quiet) return;
    std::fprintf(stderr, fmt_, xs...);
    std::fflush(stderr);
  }

  void make_rows() {
    for (Method m : kAllMethods) {
      if (m != Method::flash && !o_.wants(m)) continue;
      Row r;
      r.method = m;
      r.heads = H_, r.n = N_, r.d = d_, r.params = p_;
      r.warmup_steps = (m == Method::sparsed || m == Method::dpad_sparsed) ? w_sd_ : w0_;
      r.record_step = record_, r.apply_step = apply_;
      if ((m == Method::naive || m == Method::openblas || m == Method::dpad_sparsed) && o_.dtype != DType::fp32)
        r.skipped = std::string(method_name(m)) + ": fp32 only (--dtype " + dtype_name(o_.dtype) + ")";
      else if (m == Method::naive && N_ > o_.naive_max_n)
        r.skipped = "naive: N > --naive-max-n " + std::to_string(o_.naive_max_n) + " (minutes per call)";
      else if (m == Method::openblas) {
        // blas_attention holds a 256 x N fp32 score tile (per head, reused), not N x N.
        const double tile_bytes = 256.0 * double(N_) * 4.0;
        if (!have_blas()) r.skipped = "openblas: built without OpenBLAS";
        else if (tile_bytes > 2.0 * (1 << 30)) r.skipped = "openblas: its 256 x N score tile exceeds 2 GiB";
        else if (o_.blas_max_n > 0 && N_ > o_.blas_max_n)
          r.skipped = "openblas: N > --blas-max-n " + std::to_string(o_.blas_max_n);
      }
      mine_.push_back(r);
    }
  }
  Row* row_of(Method m) {
    for (Row& r : mine_)
      if (r.method == m) return &r;
    return nullptr;
  }
  ConstTensorView cview(const std::vector<float>& t, int64_t n) const {
    return ConstTensorView::heads_major(t.data(), H_, n, d_);
  }
  TensorView view(std::vector<float>& t) const { return TensorView::heads_major(t.data(), H_, N_, d_); }
  // q, k, v of the current step as the kernels read them (--dtype).
  InputView qi() const { return narrow_.view(0, cview(q_, N_)); }
  InputView ki() const { return narrow_.view(1, cview(k_, N_)); }
  InputView vi() const { return narrow_.view(2, cview(v_, N_)); }

  // SparseD's selection: the per-head top-k, or the adaptive budget.
  BlockMask select(const BlockMass& mass) const {
    if (p_.mass_tau <= 0) return sparsed_select(mass, p_.topk);
    MassBudget b;
    b.tau = p_.mass_tau;
    b.dense_head_share = p_.dense_head_share;
    return sparsed_select_mass(mass, b);
  }

  // Record step: the SparseD pattern the later steps reuse.
  void record_sparsed() {
    progress("[%s] recording the SparseD pattern (block %lld, top-k %.3f)\n", tag_.c_str(), (long long)p_.block,
             p_.topk);
    dense_attention_with_lse(shape_, qi(), ki(), vi(), view(ref_), lse_.data(), kopt_);
    const double build = time_ms([&] {
      const BlockMass mass = block_attention_mass_from_lse(shape_, qi(), ki(), lse_.data(), p_.block, p_.block, kopt_);
      sd_mask_ = select(mass);
    });
    if (Row* r = row_of(Method::sparsed)) r->build_ms = build;
  }

  // DPad removes the dropped tokens from the step, as queries and as keys (as
  // the session does): everything here runs over the kept tokens.
  void record_dpad() {
    progress("[%s] recording the DPad+SparseD pattern\n", tag_.c_str());
    kept_ = dpad_kept_tokens(N_, dpad_geometry(N_));
    cshape_.q_len = cshape_.kv_len = static_cast<int64_t>(kept_.size());
    Row* r = row_of(Method::dpad_sparsed);
    oc_.resize(static_cast<size_t>(H_ * cshape_.q_len * d_));
    const TensorView ocv = TensorView::heads_major(oc_.data(), H_, cshape_.q_len, d_);
    // The session's warmup steps for dpad+sparsed run dense over the kept tokens.
    r->warm_step_ms = time_ms([&] {
      compact_kv(shape_, k_, v_, kept_, kc_, vc_, threads_);
      compact_rows(q_, H_, N_, d_, kept_, qc_, threads_);
      dense_attention_with_lse(cshape_, cview(qc_, cshape_.q_len), cview(kc_, cshape_.kv_len),
                               cview(vc_, cshape_.kv_len), ocv, lse_.data(), kopt_);
    });
    r->build_ms = time_ms([&] {
      const BlockMass mass = block_attention_mass_from_lse(cshape_, cview(qc_, cshape_.q_len),
                                                           cview(kc_, cshape_.kv_len), lse_.data(), p_.block, p_.block,
                                                           kopt_);
      dpad_mask_ = select(mass);
    });
    // The compacted K/V live only around DPad's own calls, so the other
    // methods' peaks do not stack on them (64K x 32 heads must fit in 8 GiB).
    std::vector<float>().swap(kc_);
    std::vector<float>().swap(vc_);
  }

  void make_export_dir() {
    if (o_.export_dir.empty()) return;
    // Only the leaf is created: a mistyped --export-mask path is an error,
    // not a tree of new folders (under / when run as root).
    const std::filesystem::path top(o_.export_dir);
    exdir_ = top / ("h" + std::to_string(H_) + "_n" + std::to_string(N_));
    std::error_code ec;
    if (!std::filesystem::is_directory(top)) std::filesystem::create_directory(top, ec);
    if (!ec) std::filesystem::create_directory(exdir_, ec);
    if (ec || !std::filesystem::is_directory(exdir_))
      throw Error("--export-mask " + o_.export_dir + ": cannot create " + exdir_.string() +
                  (ec ? ": " + ec.message() : "") + " (only the last folder of the path is created)");
  }

  // One repetition: a flash run, then every other method right after it, so
  // each ratio compares runs from the same minute.
  void time_rep(int rep) {
    progress("[%s] rep %d/%d:", tag_.c_str(), rep + 1, o_.reps);
    const double tf = time_ms([&] { dense_attention(shape_, qi(), ki(), vi(), view(ref_), kopt_); });
    flash_ms_.push_back(tf);
    progress(" flash %.1f", tf);
    if (rep == 0 && !exdir_.empty()) save_npy((exdir_ / "out_flash.npy").string(), {H_, N_, d_}, ref_.data());
    double tb = kNaN;
    for (Row& r : mine_) {
      if (!r.skipped.empty()) continue;
      const double t = r.method == Method::flash ? tf : time_method(r, rep);
      if (std::isnan(t)) continue;  // naive past its repetitions
      if (r.method == Method::openblas) tb = t;
      r.ms.push_back(t);
      r.vs_flash.push_back(tf / t);
      if (r.method != Method::flash) progress(" %s %.1f", method_name(r.method), t);
      if (rep == 0) {
        if (r.method == Method::flash) r.cosine = 1.0, r.rel_l2 = 0.0;
        else if (r.method != Method::dpad_sparsed) accuracy(shape_, out_, ref_, r.cosine, r.rel_l2);
        if (r.method == Method::sparsed && !exdir_.empty())
          save_npy((exdir_ / "out_sparsed.npy").string(), {H_, N_, d_}, out_.data());
      }
    }
    // Ratios to OpenBLAS from the same repetition (flash's own run included).
    if (std::isfinite(tb))
      for (Row& r : mine_)
        if (r.skipped.empty() && static_cast<int>(r.ms.size()) == rep + 1) r.vs_blas.push_back(tb / r.ms.back());
    progress("%s", " ms\n");
  }

  // One method on the applied step; NaN when it sits this repetition out.
  double time_method(Row& r, int rep) {
    const ConstTensorView qv = cview(q_, N_), kv = cview(k_, N_), vv = cview(v_, N_);
    double dens = 1.0, t = kNaN;
    switch (r.method) {
      case Method::flash: break;
      case Method::naive:
        if (rep >= std::min(o_.reps, 3)) return kNaN;  // seconds to minutes per call
        t = time_ms([&] { naive_attention(shape_, qv, kv, vv, view(out_), kopt_); });
        break;
      case Method::openblas: t = time_ms([&] { blas_attention(shape_, qv, kv, vv, view(out_), kopt_); }); break;
      case Method::sparsed:
        t = time_ms([&] { block_sparse_attention(shape_, qi(), ki(), vi(), *sd_mask_, view(out_), kopt_); });
        dens = sd_mask_->density();
        break;
      case Method::unisparse:
      case Method::window:
        t = time_ms([&] {
          const BlockMask m = r.method == Method::unisparse ? unisparse_select(shape_, qi(), ki(), unisparse_params(), kopt_)
                                                            : window_sink_mask(shape_, window_params());
          block_sparse_attention(shape_, qi(), ki(), vi(), m, view(out_), kopt_);
          dens = m.density();
        });
        break;
      case Method::dpad_sparsed: return time_dpad(r, rep);
    }
    r.density = dens;
    return t;
  }

  double time_dpad(Row& r, int rep) {
    // Allocated (and zeroed, so paged in) before the clock starts, as the
    // session's buffers are after its first step.
    kc_.resize(static_cast<size_t>(H_ * cshape_.kv_len * d_));
    vc_.resize(kc_.size());
    const double t = time_ms([&] {
      compact_kv(shape_, k_, v_, kept_, kc_, vc_, threads_);
      compact_rows(q_, H_, N_, d_, kept_, qc_, threads_);
      block_sparse_attention(cshape_, cview(qc_, cshape_.q_len), cview(kc_, cshape_.kv_len), cview(vc_, cshape_.kv_len),
                             *dpad_mask_, TensorView::heads_major(oc_.data(), H_, cshape_.q_len, d_), kopt_);
    });
    const double share = double(cshape_.kv_len) / double(N_);
    r.density = dpad_mask_->density() * share * share;
    if (rep == 0) {
      // Accuracy over the kept tokens' rows: the rows the step produces.
      std::vector<float> rc;
      compact_rows(ref_, H_, N_, d_, kept_, rc, threads_);
      accuracy(cshape_, oc_, rc, r.cosine, r.rel_l2);
    }
    std::vector<float>().swap(kc_);
    std::vector<float>().swap(vc_);
    std::vector<float>().swap(qc_);
    return t;
  }

  UnisparseParams unisparse_params() const {
    UnisparseParams up;
    up.block_size = p_.block;
    up.tau = o_.tau;
    up.topk_ratio = p_.topk;
    return up;
  }
  WindowSinkParams window_params() const {
    WindowSinkParams wp;
    wp.block_size = p_.block;
    wp.sink_tokens = o_.sink_tokens;
    wp.window_tokens = o_.window_tokens;
    return wp;
  }

  // The SparseD pattern as a dense 0/1 table, plus the inputs it is applied to.
  void export_pattern() {
    const BlockMask& m = *sd_mask_;
    const int64_t qb = m.q_blocks(), kb = m.k_blocks();
    std::vector<uint8_t> dense(static_cast<size_t>(H_ * qb * kb), 0);
    for (int64_t h = 0; h < H_; ++h)
      for (int64_t b = 0; b < qb; ++b)
        for (int32_t c : m.row(h, b)) dense[(h * qb + b) * kb + c] = 1;
    bench::save_npy_u8((exdir_ / "mask.npy").string(), {H_, qb, kb}, dense.data());
    save_npy((exdir_ / "q.npy").string(), {H_, N_, d_}, q_.data());
    save_npy((exdir_ / "k.npy").string(), {H_, N_, d_}, k_.data());
    save_npy((exdir_ / "v.npy").string(), {H_, N_, d_}, v_.data());
    cli::Json meta{{"heads", H_}, {"kv_heads", H_}, {"seq_len", N_}, {"head_dim", d_}, {"block_size", p_.block},
                   {"q_blocks", qb}, {"k_blocks", kb}, {"density", cli::number(m.density())},
                   {"topk_ratio", cli::number(p_.topk)}, {"scale", cli::number(shape_.effective_scale())},
                   {"layout", "heads-major [heads][seq_len][head_dim] float32; mask [heads][q_blocks][k_blocks] uint8"},
                   {"record_step", record_}, {"apply_step", apply_}, {"threads", threads_},
                   {"isa", isa_name(active_isa())}, {"dtype", dtype_name(o_.dtype)}, {"spattn_flash_ms", cli::number(median(flash_ms_))}};
    if (const Row* r = row_of(Method::sparsed)) {
      meta["spattn_sparsed_ms"] = cli::number(r->ms_step());
      meta["spattn_sparsed_cosine"] = cli::number(r->cosine);
    }
    if (const Row* r = row_of(Method::openblas); r && r->skipped.empty())
      meta["spattn_openblas_ms"] = cli::number(r->ms_step());
    cli::write_json_file((exdir_ / "meta.json").string(), "spattn-compare", std::move(meta));
  }

  const Options& o_;
  int64_t H_, N_, d_, S_;
  ShapeParams p_;
  SyntheticWorkload wl_;
  AttentionShape shape_, cshape_;
  std::string tag_;
  KernelOptions kopt_;
  int threads_ = 1;
  int64_t w0_ = 0, w_sd_ = 0, record_ = 0, apply_ = 0;
  std::vector<Row> mine_;
  bench::NarrowInputs narrow_;  // q_, k_, v_ as --dtype (q_, k_, v_ hold the rounded values)
  std::vector<float> q_, k_, v_, ref_, out_, lse_, kc_, vc_, qc_, oc_;
  std::optional<BlockMask> sd_mask_, dpad_mask_;
  std::vector<int32_t> kept_;
  std::filesystem::path exdir_;
  std::vector<double> flash_ms_;
};

void run_shape(const Options& o, int64_t H, int64_t N, const ShapeParams& p, std::vector<Row>& rows) {
  ShapeRun(o, H, N, p).run(rows);
}

// Block size, top-k and warmup for one shape: the flags, or the profile's
// nearest entry when --profile is given (a note says when none fits).
#if SPATTN_HAS_YAML
using ProfilePtr = const Profile*;
#else
using ProfilePtr = const void*;  // no profiles in this build: always null
#endif
ShapeParams shape_params(const Options& o, int64_t H, int64_t N, ProfilePtr profile,
                         std::vector<std::string>& notes) {
  ShapeParams p;
  p.block = o.block, p.topk = o.topk, p.warmup = o.warmup;
  p.mass_tau = o.mass_tau, p.dense_head_share = o.dense_head_share;
#if SPATTN_HAS_YAML
  if (profile != nullptr) {
    const TunedShape ts{H, H, N, o.head_dim, o.steps};
    ProfileMatch m = profile->match(ts, "sparsed");
    if (!m.fits) {
      const ProfileMatch any = profile->match(ts);
      if (any.fits) m = any;
    }
    if (m.fits) {
      const ProfileEntry* e = m.entry;
      p.block = e->block_size, p.topk = e->topk_ratio, p.warmup = e->warmup_fraction;
      p.mass_tau = e->mass_tau, p.dense_head_share = e->dense_head_share;
      p.source = "profile:" + e->policy + "@" + std::to_string(e->shape.seq_len);
    } else {
      notes.push_back("h" + std::to_string(H) + " N" + std::to_string(N) + ": profile: " + m.why + "; flags used");
    }
  }
#else
  (void)H, (void)N, (void)profile, (void)notes;
#endif
  return p;
}

// The table on stdout (one line per method and shape) and its records.
std::vector<std::vector<Field>> print_table(const std::vector<Row>& rows, const Options& o, int threads,
                                            std::vector<std::string>& notes) {
  // flash's median per shape: the whole-run baseline.
  auto flash_of = [&](const Row& r) {
    for (const Row& f : rows)
      if (f.method == Method::flash && f.heads == r.heads && f.n == r.n) return f.ms_step();
    // flash not selected for printing: recover its median from the ratios.
    return r.ms_step() * median(r.vs_flash);
  };
  std::printf("%-13s %5s %6s %8s %10s %8s %9s %9s %9s %9s %13s %7s\n", "method", "heads", "N", "density",
              "ms/step", "GFLOP/s", "vs flash", "vs oblas", "cosine", "rel-L2", "whole-run ms", "run x");
  std::vector<std::vector<Field>> recs;
  for (const Row& r : rows) {
    const auto f = record_fields(r, o, flash_of(r), threads);
    recs.push_back(f);
    auto get = [&](const char* key) {
      for (const Field& x : f)
        if (x.key == key) return x.value == "null" ? kNaN : std::stod(x.value);
      return kNaN;
    };
    const std::string n = r.n % 1024 == 0 ? std::to_string(r.n / 1024) + "K" : std::to_string(r.n);
    std::printf("%-13s %5lld %6s %8s %10s %8s %9s %9s %9s %9s %13s %7s%s\n", method_name(r.method),
                (long long)r.heads, n.c_str(), fmt("%.4f", get("density")).c_str(), fmt("%.2f", get("ms_per_step")).c_str(),
                fmt("%.1f", get("gflops")).c_str(), fmt("%.2fx", get("speedup_vs_flash")).c_str(),
                fmt("%.2fx", get("speedup_vs_openblas")).c_str(), fmt("%.6f", get("cosine")).c_str(),
                fmt("%.2e", get("rel_l2")).c_str(), fmt("%.0f", get("whole_run_ms")).c_str(),
                fmt("%.2fx", get("whole_run_speedup_vs_flash")).c_str(), r.skipped.empty() ? "" : "  (*)");
    if (!r.skipped.empty()) notes.push_back("(*) h" + std::to_string(r.heads) + " N" + n + " " + r.skipped);
    if (r.params.source != "flags" && r.method == Method::sparsed)
      notes.push_back("h" + std::to_string(r.heads) + " N" + n + ": block " + std::to_string(r.params.block) +
                      (r.params.mass_tau > 0 ? ", adaptive tau " + fmt("%.2f", r.params.mass_tau) + " dense above " +
                                                   fmt("%.2f", r.params.dense_head_share)
                                             : ", top-k " + fmt("%.3f", r.params.topk)) +
                      ", warmup " + fmt("%.3f", r.params.warmup) +
                      " from " + r.params.source);
  }
  return recs;
}

}  // namespace

int compare_main(int argc, char** argv) {
  for (int i = 1; i + 1 < argc; ++i)  // the prefill workload is its own tool mode, with its own flags
    if (std::string(argv[i]) == "--workload" && std::string(argv[i + 1]) == "prefill")
      return bench::prefill_main(argc, argv);
    else if (std::string(argv[i]) == "--workload" && std::string(argv[i + 1]) == "cached")
      return bench::cached_main(argc, argv);
  const Options o = parse(argc, argv);
  KernelOptions kopt;
  kopt.threads = o.threads;
  const int threads = resolve_threads(kopt);
  ProfilePtr profile_ptr = nullptr;
#if SPATTN_HAS_YAML
  std::optional<Profile> profile;
  if (!o.profile.empty()) profile = Profile::load_for_machine(o.profile, /*strict=*/false);
  if (profile) profile_ptr = &*profile;
#endif
  std::printf("spattn-compare: synthetic workload, head_dim %lld, %s, %d threads, ISA %s, median of %d reps, "
              "whole run %lld steps\n",
              (long long)o.head_dim, dtype_name(o.dtype), threads, isa_name(active_isa()), o.reps, (long long)o.steps);
  std::vector<Row> rows;
  std::vector<std::string> notes;
  for (int64_t H : o.heads)
    for (int64_t N : o.seq_lens) run_shape(o, H, N, shape_params(o, H, N, profile_ptr, notes), rows);
  const std::vector<std::vector<Field>> recs = print_table(rows, o, threads, notes);
  for (const std::string& s : notes) std::printf("%s\n", s.c_str());
  std::printf("speedups: medians of per-rep ratios (each method's run follows a flash run of the same rep); "
              "cosine / rel-L2 against dense flash of the same step; run x = S x flash / whole-run\n");
  std::printf("peak RSS: %.0f MiB (largest shape: heads %lld, N %lld)\n", peak_rss_mib(),
              (long long)*std::max_element(o.heads.begin(), o.heads.end()),
              (long long)*std::max_element(o.seq_lens.begin(), o.seq_lens.end()));
  if (!o.json.empty()) write_json(o.json, recs);
  if (!o.csv.empty()) write_csv(o.csv, recs);
  if (!o.plot.empty()) write_plot(o.plot, rows, o.heads.front(), o.head_dim, threads);
  return 0;
}

int main(int argc, char** argv) { return spattn::cli::run_tool("spattn-compare", argc, argv, compare_main); }
