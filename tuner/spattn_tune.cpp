// spattn-tune: learns this machine. Searches the SparseD setting (block size,
// top-k ratio, warmup fraction, tiles, threads) with the fastest whole
// denoising run that keeps the accuracy bound, writes it into the machine's
// YAML profile (merged, atomic), and ends with the side-by-side table against
// the dense baselines.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tools/cli.hpp"
#include "tools/json.hpp"
#include "spattn/lab/timing.hpp"
#include "spattn/lab/lab.hpp"
#include "spattn/lab/tune.hpp"

namespace {

const char* kUsage = R"(usage: spattn-tune [flags]
Finds the fastest SparseD setting that keeps the accuracy bound on this
machine, stores it in the machine's profile and prints the comparison
against the dense baselines.

workload (default: the built-in synthetic one calibrated against real attention: heads 8,
  N 4096, head_dim 128, 64 steps; see tuning/README.md, "The default workload")
  --seq-len N --heads H --kv-heads G --head-dim D --steps S --seed X
  --workload W          calibrated (default) | base (the generator's plain defaults: far easier)
  --npy DIR             captured steps DIR/stepXXXX[/layerL]/{q,k,v}.npy instead
  --layer L             layer folder of --npy (default: the first)
  --layers all|L,L,...  with --npy: tune every listed layer of the model on its own (adaptive
                        SparseD budget per layer, or dense where none keeps the bound faster);
                        the bound defaults to mean cosine >= 0.995, every step >= 0.99 here;
                        writes one profile entry per layer
  --taus T,T,...        with --layers: adaptive budgets tried per layer (default 0.8,0.85,0.9,0.93,0.95,0.97,0.98,0.99)
  --min-mean-recall R   with --layers: also require this mean share of attention mass kept (default off)
accuracy bound (cosine similarity to dense attention)
  --min-mean-cosine C   over all steps (default 0.99)
  --min-step-cosine C   every single step (default 0.98)
search space
  --block-sizes LIST    from 16,32,64,128 (default all)
  --topk-min R --topk-max R          top-k ratio range (default 0.01 .. 0.5)
  --warmup-fractions LIST            (default 0,0.1,0.2,0.3,0.4)
  --q-tiles LIST        dense query tile rows tried (default 32,64,128)
  --threads LIST        thread counts tried (default 1,2,4,... and all cores)
  --no-pooled           do not try the budget pooled across heads
  --dtype T             fp32 (default), bf16 or fp16: tune on Q, K, V rounded to T (bf16 runs the
                        bf16 kernels on CPUs with AVX-512 BF16); the entry records shape.dtype
  --no-adaptive         do not try the adaptive budget (blocks holding tau of each row's mass,
                        diffuse heads dense)
  --drift-every R       the chosen setting checks every R sparse steps whether its pattern still
                        holds the mass, re-recording when not (default 1; 0: no checks;
                        with --layers: off unless given)
  --cache M             cached decoding: none (default) | block | dual | rows (as spattn-eval
                        --cache): the verification run (with --layers: every candidate's run)
                        is the cached session, and the entry records shape.cache
  --cache-refresh R     block (default) | first (as spattn-eval)
  --npy-prompt-len P --npy-steps-per-block T --decode-block B
                        the trace's block-wise decoding (as spattn-eval; cached steps need it)
  --samples K           steps the search judges accuracy on (default 4)
  --reps R              repetitions per timing, median taken (default 5)
  --budget-s T          wall-clock budget in seconds, table included (default 120)
output
  --out FILE            profile to merge into (default $SPATTN_PROFILE, else
                        $XDG_CONFIG_HOME/spattn/<machine-id>.yaml, else ~/.config/spattn/<machine-id>.yaml)
  --no-save             do not write the profile
  --no-table            skip the dense-baseline table
  --quiet               no progress on stderr
  -v, --verbose         a progress line for every update when stderr is not a terminal
  --json FILE           the chosen setting and the table as JSON
)";

template <class T>
std::vector<T> parse_list(const char* tool, const std::string& flag, const std::string& text,
                          T lo, T hi) {
  std::vector<T> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    const double x = std::strtod(item.c_str(), &end);
    if (item.empty() || *end != '\0' || !(x >= double(lo) && x <= double(hi)) ||
        (std::is_integral_v<T> && x != std::floor(x)))
      spattn::cli::usage_error(tool, flag + ": '" + item + "' is not a value in [" + std::to_string(lo) +
                                         ", " + std::to_string(hi) + "]");
    out.push_back(static_cast<T>(x));
  }
  if (out.empty()) spattn::cli::usage_error(tool, flag + " needs a comma-separated list");
  return out;
}

// A progress bar on a terminal (\r only there); a line per phase otherwise
// (logs stay readable; -v: a line per update); nothing with --quiet. The bar
// never moves back: the search's estimate of the work left can grow when a
// phase turns out slower, and then the ETA grows while the bar waits.
struct ProgressBar {
  bool tty = isatty(STDERR_FILENO) != 0;
  bool quiet = false, verbose = false;
  double shown = 0;
  std::string last_phase;
  void operator()(const spattn::TuneProgress& p) {
    if (quiet) return;
    shown = std::max(shown, p.fraction);
    if (tty) {
      const int width = 30, filled = static_cast<int>(std::lround(shown * width));
      std::string bar(static_cast<size_t>(filled), '#');
      bar.resize(width, '.');
      std::fprintf(stderr, "\r\033[K[%s] %3.0f%%  %5.1fs, ETA %5.1fs  %s", bar.c_str(), 100 * shown,
                   p.elapsed_s, p.eta_s, p.phase.c_str());
    } else {
      const std::string head = p.phase.substr(0, p.phase.find(','));
      if (head == last_phase && !verbose) return;
      last_phase = head;
      std::fprintf(stderr, "[%5.1fs, ETA %5.1fs] %s\n", p.elapsed_s, p.eta_s, p.phase.c_str());
    }
    std::fflush(stderr);
  }
  void finish() const {
    if (tty && !quiet) std::fprintf(stderr, "\n");
  }
};

struct Row {
  std::string method;
  double ms_per_step = NAN;
  double whole_run_ms = NAN;
  bool whole_run_measured = false;  // else ms_per_step * steps
  double mean_cosine = NAN, min_cosine = NAN;
  double density = 1;
};

struct CliOptions {
  spattn::TuneOptions o;
  bool per_layer = false;          // --layers: tune_layers instead of tune
  std::vector<int> layers;         // empty with per_layer: every layer
  std::vector<double> taus;        // empty: tune_layers' default
  bool bound_given = false;
  std::string out_path, json_path;
  bool save = true, table = true;
  bool quiet = false, verbose = false;  // progress on stderr: none / every update
  double min_mean_recall = 0;            // --layers: optional recall bound
  bool drift_given = false;
  int64_t decode_block = -1;  // --decode-block (-1: the workload's)
  int64_t kv_heads = 0;  // 0: --heads (flag order must not matter)
};

CliOptions parse_options(int argc, char** argv) {
  using namespace spattn;
  cli::Args a{"spattn-tune", argc, argv};
  CliOptions c;
  c.o.workload.synthetic = calibrated_synthetic_config();
  c.o.steps = 64;
  bool base_workload = false;
  while (!a.done()) {
    const std::string f = a.flag();
    if (a.common(f, kUsage)) {
    } else if (f == "--seq-len") {
      c.o.workload.synthetic.seq_len = a.integer(f, 16, 1 << 22);
    } else if (f == "--heads") {
      c.o.workload.synthetic.heads = a.integer(f, 1, 1024);
    } else if (f == "--kv-heads") {
      c.kv_heads = a.integer(f, 1, 1024);
    } else if (f == "--head-dim") {
      c.o.workload.synthetic.head_dim = a.integer(f, 16, 256);
    } else if (f == "--steps") {
      c.o.steps = a.integer(f, 1, 1 << 20);
    } else if (f == "--seed") {
      c.o.workload.synthetic.seed = static_cast<uint64_t>(a.integer(f, 0, 1LL << 62));
    } else if (f == "--workload") {
      const std::string w = a.value(f);
      if (w != "calibrated" && w != "base") cli::usage_error(a.tool, "--workload: expected calibrated or base");
      base_workload = w == "base";
    } else if (f == "--npy") {
      c.o.workload.npy_dir = a.value(f);
    } else if (f == "--layer") {
      c.o.workload.layer = static_cast<int>(a.integer(f, 0, 1 << 20));
    } else if (f == "--layers") {
      c.per_layer = true;
      const std::string v = a.value(f);
      if (v != "all") c.layers = parse_list<int>(a.tool, f, v, 0, 1 << 20);
    } else if (f == "--taus") {
      c.taus = parse_list<double>(a.tool, f, a.value(f), 1e-6, 1.0);
    } else if (f == "--min-mean-cosine") {
      c.o.min_mean_cosine = a.real(f, -1.0, 1.0);
      c.bound_given = true;
    } else if (f == "--min-step-cosine") {
      c.o.min_step_cosine = a.real(f, -1.0, 1.0);
      c.bound_given = true;
    } else if (f == "--block-sizes") {
      c.o.block_sizes = parse_list<int64_t>(a.tool, f, a.value(f), 16, 128);
      for (int64_t b : c.o.block_sizes)
        if (!is_supported_block_size(b)) cli::usage_error(a.tool, std::string("--block-sizes: each ") + kBlockSizeRule);
    } else if (f == "--topk-min") {
      c.o.min_topk = a.real(f, 0.0, 1.0, true);
    } else if (f == "--topk-max") {
      c.o.max_topk = a.real(f, 0.0, 1.0, true);
    } else if (f == "--warmup-fractions") {
      c.o.warmup_fractions = parse_list<double>(a.tool, f, a.value(f), 0.0, 0.999999);
    } else if (f == "--q-tiles") {
      c.o.q_tiles = parse_list<int64_t>(a.tool, f, a.value(f), 16, 128);
      for (int64_t b : c.o.q_tiles)
        if (!is_supported_block_size(b)) cli::usage_error(a.tool, std::string("--q-tiles: each ") + kBlockSizeRule);
    } else if (f == "--threads") {
      c.o.threads = parse_list<int>(a.tool, f, a.value(f), 1, kMaxThreads);
    } else if (f == "--no-pooled") {
      c.o.try_pooled_budget = false;
    } else if (f == "--no-adaptive") {
      c.o.try_adaptive_budget = false;
    } else if (f == "--dtype") {
      c.o.dtype = a.dtype(f);
    } else if (f == "--drift-every") {
      c.o.drift_check_every = a.integer(f, 0, 1 << 30);
      c.drift_given = true;
    } else if (f == "--cache") {
      c.o.cache = a.cache_mode(f);
    } else if (f == "--cache-refresh") {
      c.o.refresh_first_only = a.cache_refresh_first(f);
    } else if (f == "--npy-prompt-len") {
      c.o.workload.npy_prompt_len = a.integer(f, 0, 1LL << 40);
    } else if (f == "--npy-steps-per-block") {
      c.o.workload.npy_steps_per_block = a.integer(f, 1, 1 << 20);
    } else if (f == "--decode-block") {
      c.decode_block = a.integer(f, 0, 1 << 22);
    } else if (f == "--min-mean-recall") {
      c.min_mean_recall = a.real(f, 0.0, 1.0);
    } else if (f == "--samples") {
      c.o.sample_steps = static_cast<int>(a.integer(f, 1, 64));
    } else if (f == "--reps") {
      c.o.reps = static_cast<int>(a.integer(f, 1, 1000));
    } else if (f == "--budget-s") {
      c.o.budget_s = a.real(f, 0.0, 1e7, true);
    } else if (f == "--out") {
      c.out_path = a.value(f);
    } else if (f == "--no-save") {
      c.save = false;
    } else if (f == "--no-table") {
      c.table = false;
    } else if (f == "--quiet") {
      c.quiet = true;
    } else if (f == "-v" || f == "--verbose") {
      c.verbose = true;
    } else if (f == "--json") {
      c.json_path = a.value(f);
    } else {
      cli::usage_error(a.tool, "unknown flag '" + f + "'");
    }
  }
  if (c.o.min_topk > c.o.max_topk) cli::usage_error(a.tool, "--topk-min is larger than --topk-max");
  if (c.per_layer && c.o.workload.npy_dir.empty()) cli::usage_error(a.tool, "--layers needs --npy DIR");
  if (!c.per_layer && !c.taus.empty()) cli::usage_error(a.tool, "--taus needs --layers");
  {  // the chosen generator with the shape the flags gave (the calibrated mix scales with heads)
    const SyntheticConfig& w = c.o.workload.synthetic;
    SyntheticConfig b = base_workload ? SyntheticConfig{} : calibrated_synthetic_config(w.heads);
    b.seq_len = w.seq_len, b.heads = w.heads, b.head_dim = w.head_dim, b.seed = w.seed;
    c.o.workload.synthetic = b;
  }
  c.o.workload.synthetic.kv_heads = c.kv_heads > 0 ? c.kv_heads : c.o.workload.synthetic.heads;
  c.o.workload.synthetic.steps = c.o.steps;
  if (c.decode_block >= 0) c.o.workload.synthetic.decode_block = c.decode_block;
  if (c.o.cache != CacheMode::none && c.o.workload.synthetic.decode_block == 0 && c.o.workload.npy_dir.empty())
    cli::usage_error(a.tool, "--cache needs block-wise decoding: --decode-block B > 0");
  if (c.out_path.empty() && c.save) {
    c.out_path = default_profile_path();
    if (c.out_path.empty())
      cli::usage_error(a.tool, "no profile location: give --out FILE (or set SPATTN_PROFILE or HOME), or --no-save");
  }
  return c;
}

// "head", "pooled", or "t0.95/d0.5" (adaptive: tau and dense-head share).
std::string budget_name(const spattn::TuneCandidate& c) {
  if (c.mass_tau <= 0) return c.pooled_budget ? "pooled" : "head";
  char buf[32];
  std::snprintf(buf, sizeof buf, "t%.2f/d%.1f", c.mass_tau, c.dense_head_share);
  return buf;
}

void print_search(const spattn::TuneResult& r, const spattn::TuneOptions& o) {
  std::printf("\nsearched (best per warmup, block size and budget; estimates from %d sample steps):\n",
              o.sample_steps);
  std::printf("%6s %7s %8s %11s %9s %10s %10s %11s %12s\n", "block", "warmup", "blocks", "budget", "density",
              "est_cos", "est_min", "sparse_ms", "est_run_ms");
  for (const spattn::TuneCandidate& c : r.candidates)
    std::printf("%6lld %7lld %8lld %11s %9.4f %10.5f %10.5f %11.2f %12.1f%s\n", (long long)c.block_size,
                (long long)c.warmup_steps, (long long)c.blocks_kept, budget_name(c).c_str(), c.topk_ratio,
                c.est_mean_cosine, c.est_min_cosine, c.sparse_step_ms, c.est_run_ms,
                c.block_size == r.chosen.block_size && c.warmup_steps == r.chosen.warmup_steps &&
                        budget_name(c) == budget_name(r.chosen)
                    ? "  <- chosen"
                    : "");
  std::printf("%d accuracy checks in %.1f s%s\n", r.accuracy_evals, r.elapsed_s,
              r.budget_hit ? " (search cut short by the budget)" : "");
  if (!r.note.empty()) std::printf("note: %s\n", r.note.c_str());
}

// What the side-by-side table needs besides the rows.
struct TableContext {
  const spattn::WorkloadSource& probe;
  spattn::AttentionShape shape;
  int64_t steps;
  int table_reps;
  bool naive_row;
  spattn::DType dtype = spattn::DType::fp32;  // of the flash row (the other baselines are fp32)
};

// Naive attention on the first KV group (query heads [0, group), kv head 0
// lead their tensors), scaled to all heads: the full call would take minutes.
Row naive_row_of(const spattn::AttentionShape& shape, const std::vector<float>& q, const std::vector<float>& kk,
                 const std::vector<float>& v, const std::vector<double>& ref, int reps, int64_t steps,
                 const spattn::KernelOptions& k) {
  using namespace spattn;
  const int64_t d = shape.head_dim, group = shape.heads / shape.kv_heads;
  auto cv = [&](const std::vector<float>& t, int64_t h, int64_t n) { return ConstTensorView::heads_major(t.data(), h, n, d); };
  AttentionShape g = shape;
  g.heads = group;
  g.kv_heads = 1;
  const std::vector<double> gref(ref.begin(), ref.begin() + group * shape.q_len * d);
  std::vector<float> out(static_cast<size_t>(group * shape.q_len * d));
  Row row;
  row.method = shape.kv_heads > 1 ? "dense naive*" : "dense naive";
  row.ms_per_step = double(shape.kv_heads) * lab::median_ms(reps, [&] {
    naive_attention(g, cv(q, group, shape.q_len), cv(kk, 1, shape.kv_len), cv(v, 1, shape.kv_len),
                    TensorView::heads_major(out.data(), group, shape.q_len, d), k);
  });
  row.whole_run_ms = row.ms_per_step * double(steps);
  row.mean_cosine = row.min_cosine = cosine_similarity(ConstTensorView::heads_major(out.data(), group, shape.q_len, d), gref);
  return row;
}

// The dense baselines timed on the last step, next to the verified SparseD
// run; returns the rows and flash's ms/step.
std::vector<Row> time_table(const TableContext& t, const spattn::TuneResult& r, double& flash_ms) {
  using namespace spattn;
  const ProfileEntry& e = r.entry;
  const AttentionShape& shape = t.shape;
  const int64_t steps = t.steps;
  const int table_reps = t.table_reps;
  const bool naive_row = t.naive_row;
  const WorkloadSource& probe = t.probe;
  std::vector<Row> rows;
  KernelOptions k;
  k.threads = e.threads;
  k.q_tile_rows = e.q_tile_rows;
  std::vector<float> q, kk, v;
  probe.step(steps - 1, q, kk, v);
  const int64_t d = shape.head_dim;
  auto cv = [&](const std::vector<float>& t, int64_t h, int64_t n) { return ConstTensorView::heads_major(t.data(), h, n, d); };
  std::vector<float> flash_out(static_cast<size_t>(shape.heads * shape.q_len * d)), out(flash_out.size());
  auto ov = [&](std::vector<float>& t) { return TensorView::heads_major(t.data(), shape.heads, shape.q_len, d); };
  const ConstTensorView qv = cv(q, shape.heads, shape.q_len), kv = cv(kk, shape.kv_heads, shape.kv_len),
                        vv = cv(v, shape.kv_heads, shape.kv_len);
  using lab::median_ms;
  std::fprintf(stderr, "timing the dense baselines for the table...\n");
  // Flash at the tuned dtype, as the verification run timed it.
  std::vector<uint16_t> n16[3];
  auto typed = [&](const ConstTensorView& x, const std::vector<float>& src, std::vector<uint16_t>& dst) -> InputView {
    if (t.dtype == DType::fp32) return x;
    for (float f : src) dst.push_back(t.dtype == DType::bf16 ? to_bf16(f).bits : to_fp16(f).bits);
    return InputView(dst.data(), t.dtype, x.heads, x.tokens, d, x.tokens * d, d);
  };
  const InputView qt = typed(qv, q, n16[0]), kt = typed(kv, kk, n16[1]), vt = typed(vv, v, n16[2]);
  flash_ms = median_ms(table_reps, [&] { dense_attention(shape, qt, kt, vt, ov(flash_out), k); });
  const std::vector<double> ref(flash_out.begin(), flash_out.end());
  auto dense_row = [&](const char* name, auto&& fn) {
    Row row;
    row.method = name;
    row.ms_per_step = median_ms(table_reps, fn);
    row.whole_run_ms = row.ms_per_step * double(steps);
    row.mean_cosine = row.min_cosine = cosine_similarity(ov(out), ref);
    rows.push_back(row);
  };
  if (naive_row) rows.push_back(naive_row_of(shape, q, kk, v, ref, table_reps, steps, k));
  if (have_blas()) dense_row("dense OpenBLAS", [&] { blas_attention(shape, qv, kv, vv, ov(out), k); });
  Row flash;
  flash.method = t.dtype == DType::fp32 ? "dense flash" : std::string("dense flash ") + dtype_name(t.dtype);
  flash.ms_per_step = flash_ms;
  flash.whole_run_ms = e.dense_ms;  // the verification run's dense steps
  flash.whole_run_measured = true;
  flash.mean_cosine = flash.min_cosine = 1.0;
  rows.push_back(flash);
  Row sp;
  sp.method = "SparseD (tuned)";
  sp.ms_per_step = r.chosen.sparse_step_ms;
  sp.whole_run_ms = e.sparse_ms;
  sp.whole_run_measured = true;
  sp.mean_cosine = e.mean_cosine;
  sp.min_cosine = e.min_cosine;
  sp.density = r.chosen.topk_ratio;
  rows.push_back(sp);
  return rows;
}

void print_table(const TableContext& t, const std::vector<Row>& rows, const spattn::TuneResult& r, double flash_ms,
                 int sparse_reps) {
  using namespace spattn;
  const ProfileEntry& e = r.entry;
  const AttentionShape& shape = t.shape;
  const int64_t steps = t.steps, group = shape.heads / shape.kv_heads;
  const int table_reps = t.table_reps;
  const bool naive_row = t.naive_row;
  KernelOptions k;
  k.threads = e.threads;
  std::printf("\nside by side: heads %lld/%lld, N %lld, head_dim %lld, %lld steps, threads %d, ISA %s\n",
              (long long)shape.heads, (long long)shape.kv_heads, (long long)shape.kv_len,
              (long long)shape.head_dim, (long long)steps, resolve_threads(k), isa_name(active_isa()));
  std::printf("%-16s %8s %11s %9s %13s %10s %10s %10s\n", "method", "density", "ms/step", "vs flash",
              "whole run ms", "vs flash", "mean cos", "min cos");
  for (const Row& row : rows) {
    char whole[32];
    std::snprintf(whole, sizeof whole, "%s%.0f", row.whole_run_measured ? "" : "~", row.whole_run_ms);
    std::printf("%-16s %8.3f %11.2f %8.2fx %13s %9.2fx %10.5f %10.5f\n", row.method.c_str(), row.density,
                row.ms_per_step, flash_ms / row.ms_per_step, whole, e.dense_ms / row.whole_run_ms,
                row.mean_cosine, row.min_cosine);
  }
  std::printf("ms/step: median of %d runs on step %lld (sparse: of %d runs, on the sparse path). Whole run: the\n"
              "verification run for flash and SparseD (same run, warmup and pattern build included);\n"
              "~ = ms/step x %lld steps. Cosine: naive/OpenBLAS against flash on that step; SparseD over all steps.\n",
              table_reps, (long long)steps - 1, sparse_reps, (long long)steps);
  if (naive_row && shape.kv_heads > 1)
    std::printf("* naive timed on one KV group (%lld of %lld query heads) and scaled by %lld: it is 15-30x flash.\n",
                (long long)group, (long long)shape.heads, (long long)shape.kv_heads);
}

void write_tune_json(const std::string& path, const spattn::MachineInfo& machine, const spattn::TuneResult& r,
                     const spattn::AttentionShape& shape, int64_t steps, const std::vector<Row>& rows, double total_s) {
  using namespace spattn;
  const ProfileEntry& e = r.entry;
  cli::Json j;
  j["machine"] = {{"cpu_model", machine.cpu_model}, {"isa", machine.isa}, {"cores", machine.cores}};
  j["workload"] = e.workload;
  j["shape"] = {{"heads", shape.heads}, {"kv_heads", shape.kv_heads}, {"seq_len", shape.kv_len},
                {"head_dim", shape.head_dim}, {"steps", steps}};
  j["chosen"] = {{"policy", e.policy}, {"block_size", e.block_size}, {"topk_ratio", cli::number(e.topk_ratio)},
                 {"warmup_fraction", cli::number(e.warmup_fraction)}, {"q_tile_rows", e.q_tile_rows},
                 {"threads", e.threads}, {"pooled_budget", e.pooled_budget}, {"mass_tau", cli::number(e.mass_tau)},
                 {"dense_head_share", cli::number(e.dense_head_share)}};
  j["verified"] = {{"mean_cosine", cli::number(e.mean_cosine)}, {"min_cosine", cli::number(e.min_cosine)},
                   {"mean_density", cli::number(e.mean_density)}, {"dense_ms", cli::number(e.dense_ms)},
                   {"sparse_ms", cli::number(e.sparse_ms)}, {"speedup", cli::number(e.speedup)}};
  j["elapsed_s"] = cli::number(total_s);
  j["table"] = cli::Json::array();
  for (const Row& row : rows)
    j["table"].push_back({{"method", row.method}, {"density", cli::number(row.density)},
                          {"ms_per_step", cli::number(row.ms_per_step)},
                          {"whole_run_ms", cli::number(row.whole_run_ms)},
                          {"whole_run_measured", row.whole_run_measured},
                          {"mean_cosine", cli::number(row.mean_cosine)},
                          {"min_cosine", cli::number(row.min_cosine)}});
  cli::write_json_file(path, "spattn-tune", std::move(j));
}

// --layers: one setting per layer of the trace, a table, the profile entries.
int tune_model(const CliOptions& c) {
  using namespace spattn;
  LayerTuneOptions lo;
  lo.dtype = c.o.dtype;
  lo.npy_dir = c.o.workload.npy_dir;
  lo.layers = c.layers;
  lo.steps = c.o.steps;
  if (c.bound_given) lo.min_mean_cosine = c.o.min_mean_cosine, lo.min_step_cosine = c.o.min_step_cosine;
  if (!c.taus.empty()) lo.taus = c.taus;
  lo.min_mean_recall = c.min_mean_recall;
  lo.cache = c.o.cache;
  lo.refresh_first_only = c.o.refresh_first_only;
  lo.npy_prompt_len = c.o.workload.npy_prompt_len;
  lo.npy_steps_per_block = c.o.workload.npy_steps_per_block;
  lo.decode_block = c.o.workload.synthetic.decode_block;
  if (c.drift_given) lo.drift_check_every = c.o.drift_check_every;
  if (!c.o.threads.empty()) lo.kernel.threads = c.o.threads.back();
  if (!c.quiet) lo.on_progress = [](const std::string& s) { std::fprintf(stderr, "spattn-tune: %s\n", s.c_str()); };
  std::printf("spattn-tune: per layer of %s; bound: mean cosine >= %.4g, every step >= %.4g\n", lo.npy_dir.c_str(),
              lo.min_mean_cosine, lo.min_step_cosine);
  const LayerTuneResult r = tune_layers(lo);
  std::printf("%5s %8s %7s %9s %10s %10s %12s %12s %8s\n", "layer", "choice", "tau", "density", "mean_cos",
              "min_cos", "attn_ms", "dense_ms", "vs dense");
  for (const LayerChoice& l : r.layers)
    std::printf("%5d %8s %7s %9.4f %10.5f %10.5f %12.1f %12.1f %7.2fx\n", l.layer, l.dense ? "dense" : "sparsed",
                l.dense ? "-" : std::to_string(l.tau).substr(0, 5).c_str(), l.result.mean_density,
                l.result.mean_cosine, l.result.min_cosine, l.result.sparse_total_ms, l.result.dense_total_ms,
                l.result.speedup_vs_dense);
  std::printf("all layers: attention %.1f ms vs dense %.1f ms in the same runs: %.2fx\n", r.sparse_total_ms,
              r.dense_total_ms, r.sparse_total_ms > 0 ? r.dense_total_ms / r.sparse_total_ms : 0.0);
  if (c.save) {
    Profile p;
    p.machine = MachineInfo::detect();
    p.entries = r.entries;
    const Profile written = p.save_merged(c.out_path);
    std::printf("profile: %s (%zu entries)\n", c.out_path.c_str(), written.entries.size());
  }
  return 0;
}

}  // namespace

int tune_main(int argc, char** argv) {
  using namespace spattn;
  using Clock = std::chrono::steady_clock;
  CliOptions c = parse_options(argc, argv);
  TuneOptions& o = c.o;
  // A destination the search could not write to is an error now, not after
  // minutes of searching.
  if (c.save) {
    // The per-user folder may not exist yet; an explicit --out's folder must.
    if (c.out_path == default_profile_path()) {
      std::error_code ec;
      std::filesystem::create_directories(std::filesystem::path(c.out_path).parent_path(), ec);
    }
    check_profile_destination(c.out_path);
  }
  if (c.per_layer) return tune_model(c);
  const auto t_start = Clock::now();
  const MachineInfo machine = MachineInfo::detect();
  WorkloadSource probe(o.workload);
  const AttentionShape shape = probe.shape();
  const int64_t steps = std::min(o.steps, probe.steps());
  // Naive attention is 15-30x dense flash: it is timed on one KV group of
  // heads and scaled, and only up to N = 8192, so that it fits the budget.
  const TableContext t{probe, shape, steps, std::min(o.reps, 3), c.table && shape.kv_len <= 8192, o.dtype};
  if (c.table)
    o.reserve_dense_steps = t.table_reps * (1.0 + (have_blas() ? 3.0 : 0.0) +
                                            (t.naive_row ? 30.0 / double(shape.kv_heads) : 0.0));
  std::printf("spattn-tune: %s, %d cores, ISA %s, %d NUMA node(s)\n", machine.cpu_model.c_str(), machine.cores,
              machine.isa.c_str(), machine.numa_nodes);
  std::printf("workload %s: heads %lld/%lld, N %lld, head_dim %lld, %lld steps; bound: mean cosine >= %.4g, "
              "every step >= %.4g; budget %.0f s\n",
              probe.describe().c_str(), (long long)shape.heads, (long long)shape.kv_heads, (long long)shape.kv_len,
              (long long)shape.head_dim, (long long)steps, o.min_mean_cosine, o.min_step_cosine, o.budget_s);
  std::fflush(stdout);

  ProgressBar bar;
  bar.quiet = c.quiet;
  bar.verbose = c.verbose;
  o.on_progress = [&](const TuneProgress& p) { bar(p); };
  const TuneResult r = tune(o);
  bar.finish();
  print_search(r, o);
  if (!r.met) {
    std::fprintf(stderr, "spattn-tune: no setting met the accuracy bound; the profile is not written. %s\n",
                 r.note.c_str());
    return 1;
  }
  const ProfileEntry& e = r.entry;
  if (e.mass_tau > 0)
    std::printf("\nchosen: block %lld, adaptive budget: each row keeps the blocks holding %.2f of its mass, a head "
                "keeping more than %.2f of the blocks runs dense; warmup %.2f (%lld of %lld steps dense), q tile "
                "%lld, threads %d\n",
                (long long)e.block_size, e.mass_tau, e.dense_head_share, e.warmup_fraction,
                (long long)r.chosen.warmup_steps, (long long)steps, (long long)e.q_tile_rows, e.threads);
  else
    std::printf("\nchosen: block %lld, top-k %.4f (%lld blocks, %s budget), warmup %.2f (%lld of %lld steps dense), "
                "q tile %lld, threads %d\n",
                (long long)e.block_size, e.topk_ratio, (long long)r.chosen.blocks_kept,
                e.pooled_budget ? "pooled" : "per-head", e.warmup_fraction, (long long)r.chosen.warmup_steps,
                (long long)steps, (long long)e.q_tile_rows, e.threads);
  std::printf("verified over all %lld steps: mean cosine %.5f, min %.5f, mean density %.3f; whole run %.0f ms "
              "vs dense %.0f ms in the same run: %.2fx\n",
              (long long)steps, e.mean_cosine, e.min_cosine, e.mean_density, e.sparse_ms, e.dense_ms, e.speedup);
  if (c.save) {
    const Profile written = merge_into_file(c.out_path, e, machine);
    std::printf("profile: %s (%zu entr%s)\n", c.out_path.c_str(), written.entries.size(),
                written.entries.size() == 1 ? "y" : "ies");
  }
  std::vector<Row> rows;
  if (c.table) {
    double flash_ms = 0;
    rows = time_table(t, r, flash_ms);
    print_table(t, rows, r, flash_ms, o.reps);
  }
  const double total_s = std::chrono::duration<double>(Clock::now() - t_start).count();
  std::printf("spattn-tune: done in %.1f s (budget %.0f s)\n", total_s, o.budget_s);
  if (!c.json_path.empty()) write_tune_json(c.json_path, machine, r, shape, steps, rows, total_s);
  return 0;
}

int main(int argc, char** argv) { return spattn::cli::run_tool("spattn-tune", argc, argv, tune_main); }
