// spattn-eval: runs one sparse policy over a workload next to dense attention
// and prints, per step and overall, density, attention-mass recall, cosine,
// relative L2 error and time against dense.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <vector>
#include <string>

#include "spattn/config.h"
#include "tools/cli.hpp"
#include "tools/json.hpp"
#include "spattn/lab/lab.hpp"
#if SPATTN_HAS_YAML
#include "spattn/profile.hpp"
#endif

namespace {

const char* kUsage = R"(usage: spattn-eval [flags]
  --policy P            sparsed | unisparse | dpad | dpad+sparsed | window | dense (default sparsed)
  --block-size B        16 | 32 | 64 | 128 (default 64)
  --topk-ratio R        SparseD / UniSparse top-k share of key blocks, (0, 1] (default 0.1)
  --warmup-fraction W   share of steps run dense first, [0, 1) (default 0.2)
  --pooled-budget       SparseD: pool the top-k budget across heads (diffuse heads get more)
  --mass-tau T          SparseD: adaptive budget, per row the fewest blocks holding T of its
                        mass (instead of --topk-ratio)
  --max-block-share S   with --mass-tau: a row keeps at most this share of key blocks (default 1)
  --dense-head-share D  with --mass-tau: a head keeping more than this share runs dense (default 1: never)
  --record-on-new-block SparseD: re-record the pattern when the decoded block moves
  --refresh R           re-record the SparseD pattern every R sparse steps (default 0: never)
  --tau T               UniSparse: keep blocks until estimated mass T (default 0.95; used
                        unless --unisparse-topk)
  --unisparse-topk      UniSparse selects by --topk-ratio instead of --tau
  --sparsed-paper       SparseD as its authors' code selects: their dense steps, block, select and
                        two-pass rule (sparsed_paper_config); --block-size, --topk-ratio and
                        --warmup-steps given explicitly still win
  --warmup-steps N      exactly N dense steps first (overrides --warmup-fraction)
  --prefix-len P        prompt tokens (default: half the sequence), for DPad and --sparsed-paper
  --drift-every R       SparseD: check every R sparse steps how much mass the cached pattern still
                        keeps on a few sampled query blocks; re-record below --drift-min-recall
  --drift-min-recall X  (default 0.9)
  --drift-samples K     query blocks sampled per head per check (default 1)
  --dpad-rule R         gaussian (the DPad authors' rule, default) | dense-window
  --dpad-window W       DPad suffix window in tokens (default 256)
  --dpad-k-sigma K      gaussian rule: the window ends at K standard deviations (default 4)
  --dpad-scale C        gaussian rule: keep probability min(1, C * phi(x)) (default 2)
  --dpad-sigma S        dense-window rule: decay beyond the window in tokens (default 256)
  --steps S             denoising steps (default 64; npy: at most the step folders)
  --seq-len N --heads H --kv-heads G --head-dim D   synthetic shape (default 4096, 8, 8, 128)
  --seed X              synthetic workload seed (default 1)
  --workload W          calibrated (default: the synthetic workload calibrated against real
                        attention, calibrated_synthetic_config) | base (the generator's plain
                        defaults: one diffuse head, little drift; far easier)
  --synthetic KEY=VALUE set one SyntheticConfig field (repeatable), e.g. diffuse_heads=3
  --decode-block B      synthetic: decode block-wise, B tokens per block, as LLaDA-style
                        samplers (and the captured traces) do; DPad's current block follows
                        the decoded block (default 512; 0: tokens unmask at random anywhere)
  --npy DIR             use captured steps DIR/stepXXXX[/layerL]/{q,k,v}.npy instead
  --layer L             layer folder of --npy (default: the first)
  --npy-prompt-len P    with --npy-steps-per-block: the trace's prompt tokens
  --npy-steps-per-block T  the trace decodes block-wise: folder stepNNNN decodes block NNNN / T of
                        --decode-block tokens after the prompt (for --record-on-new-block and DPad)
  --cache M             cached decoding: none (default) | block (prefix cache: the decoding block
                        and all rows after it recomputed) | dual (the block alone) | rows (every
                        other row of the block); full steps refresh the cache and record SparseD's
                        pattern, the other steps attend their rows against it (needs decoding
                        blocks: the synthetic workload's --decode-block, or --npy-steps-per-block)
  --cache-refresh R     block (default: a full step at each new decoding block) | first (only the
                        first step: for traces that captured one step per block)
  --threads T           threads (default: SPATTN_NUM_THREADS or all cores)
  --no-recall           skip the attention-mass recall (saves one QK pass per step)
  --dtype T             fp32 (default), bf16 or fp16: Q, K, V are rounded to T and both the session
                        and the dense baseline run on them (bf16 runs the bf16 kernels on CPUs with
                        AVX-512 BF16); accuracy is against dense at the same dtype
  --profile FILE        take block size, top-k, warmup, tiles and threads from the profile
                        entry for this shape (flags given explicitly still win); an entry tuned
                        more than 2x away in sequence length or steps is refused (defaults used)
  --lenient-profile     use such an entry anyway, with a warning
  --json FILE           also write the figures as JSON
  --quiet               no per-step lines
)";

struct CliOptions {
  spattn::SessionConfig cfg;
  spattn::WorkloadSpec spec;
  spattn::EvalOptions eo;
  std::string json_path, profile_path;
  bool quiet = false;
  bool set_block = false, set_topk = false, set_warmup = false, set_threads = false;
  bool sparsed_paper = false, lenient_profile = false;
  int64_t prefix_len = -1;  // -1: half the sequence
  int64_t steps = 64;
  int64_t kv_heads = 0;  // 0: --heads (flag order must not matter)
  bool base_workload = false;
  // Edits of the synthetic config, applied in order on top of the workload
  // chosen by --workload (so flag order does not matter).
  std::vector<std::function<void(spattn::SyntheticConfig&)>> synthetic_edits;
};

// The workload's flags (shape, steps, seed, decoding, traces); false for any other.
bool workload_flag(spattn::cli::Args& a, const std::string& f, CliOptions& c) {
  if (f == "--steps") {
    c.steps = a.integer(f, 1, 1 << 20);
    return true;
  }
  if (f == "--seq-len") {
    const int64_t x = a.integer(f, 16, 1 << 22);
    c.synthetic_edits.push_back([x](spattn::SyntheticConfig& w) { w.seq_len = x; });
    return true;
  }
  if (f == "--heads") {
    const int64_t x = a.integer(f, 1, 1024);
    c.synthetic_edits.push_back([x](spattn::SyntheticConfig& w) { w.heads = x; });
    return true;
  }
  if (f == "--kv-heads") {
    c.kv_heads = a.integer(f, 1, 1024);
    return true;
  }
  if (f == "--head-dim") {
    const int64_t x = a.integer(f, 16, 256);
    c.synthetic_edits.push_back([x](spattn::SyntheticConfig& w) { w.head_dim = x; });
    return true;
  }
  if (f == "--seed") {
    const auto x = static_cast<uint64_t>(a.integer(f, 0, 1LL << 62));
    c.synthetic_edits.push_back([x](spattn::SyntheticConfig& w) { w.seed = x; });
    return true;
  }
  if (f == "--workload") {
    const std::string w = a.value(f);
    if (w != "calibrated" && w != "base") spattn::cli::usage_error(a.tool, "--workload: expected calibrated or base");
    c.base_workload = w == "base";
    return true;
  }
  if (f == "--synthetic") {
    const std::string kv = a.value(f);
    const size_t eq = kv.find('=');
    char* end = nullptr;
    const double x = eq == std::string::npos ? 0.0 : std::strtod(kv.c_str() + eq + 1, &end);
    if (eq == std::string::npos || end == kv.c_str() + eq + 1 || *end != '\0')
      spattn::cli::usage_error(a.tool, "--synthetic: expected KEY=NUMBER, got '" + kv + "'");
    try {
      spattn::SyntheticConfig probe;
      spattn::set_synthetic_param(probe, kv.substr(0, eq), x);  // an unknown key fails here, as a usage error
    } catch (const spattn::Error& e) {
      spattn::cli::usage_error(a.tool, e.what());
    }
    c.synthetic_edits.push_back([key = kv.substr(0, eq), x](spattn::SyntheticConfig& w) {
      spattn::set_synthetic_param(w, key, x);
    });
    return true;
  }
  if (f == "--decode-block") {
    const int64_t x = a.integer(f, 0, 1 << 22);
    c.synthetic_edits.push_back([x](spattn::SyntheticConfig& w) { w.decode_block = x; });
    return true;
  }
  if (f == "--npy") {
    c.spec.npy_dir = a.value(f);
    return true;
  }
  if (f == "--layer") {
    c.spec.layer = static_cast<int>(a.integer(f, 0, 1 << 20));
    return true;
  }
  if (f == "--npy-prompt-len") {
    c.spec.npy_prompt_len = a.integer(f, 0, 1LL << 40);
    return true;
  }
  if (f == "--npy-steps-per-block") {
    c.spec.npy_steps_per_block = a.integer(f, 1, 1 << 30);
    return true;
  }
  return false;
}

// DPad's and the drift check's flags; false for any other.
bool dpad_or_drift_flag(spattn::cli::Args& a, const std::string& f, CliOptions& c) {
  auto& d = c.cfg.dpad;
  if (f == "--dpad-rule") {
    try {
      d.rule = spattn::parse_dpad_rule(a.value(f));
    } catch (const spattn::Error& e) {
      spattn::cli::usage_error(a.tool, e.what());
    }
  } else if (f == "--dpad-window") {
    d.window = a.integer(f, 0, 1LL << 40);
  } else if (f == "--dpad-k-sigma") {
    d.k_sigma = a.real(f, 0.0, 1e6);
  } else if (f == "--dpad-scale") {
    d.scale = a.real(f, 0.0, 1e6);
  } else if (f == "--dpad-sigma") {
    d.sigma = a.real(f, 0.0, 1e12, true);
  } else if (f == "--drift-every") {
    c.cfg.drift_check_every = a.integer(f, 0, 1 << 30);
  } else if (f == "--drift-min-recall") {
    c.cfg.drift_min_recall = a.real(f, 0.0, 1.0);
  } else if (f == "--drift-samples") {
    c.cfg.drift_sample_blocks = a.integer(f, 1, 1 << 20);
  } else {
    return false;
  }
  return true;
}

CliOptions parse_options(int argc, char** argv) {
  using namespace spattn;
  cli::Args a{"spattn-eval", argc, argv};
  CliOptions c;
  while (!a.done()) {
    const std::string f = a.flag();
    if (a.common(f, kUsage)) {
    } else if (f == "--policy") {
      const std::string p = a.value(f);
      try {
        c.cfg.policy = parse_policy(p);
      } catch (const Error& e) {
        cli::usage_error(a.tool, e.what());
      }
    } else if (f == "--block-size") {
      c.cfg.block_size = a.integer(f, 16, 128);
      c.set_block = true;
      if (!is_supported_block_size(c.cfg.block_size)) cli::usage_error(a.tool, std::string("--block-size ") + kBlockSizeRule);
    } else if (f == "--topk-ratio") {
      c.cfg.topk_ratio = c.cfg.unisparse.topk_ratio = a.real(f, 0.0, 1.0, true);
      c.set_topk = true;
    } else if (f == "--warmup-fraction") {
      c.cfg.warmup_fraction = a.real(f, 0.0, 0.999999);
      c.set_warmup = true;
    } else if (f == "--pooled-budget") {
      c.cfg.pooled_budget = true;
    } else if (f == "--mass-tau") {
      if (!c.cfg.mass_budget) c.cfg.mass_budget.emplace();
      c.cfg.mass_budget->tau = a.real(f, 0.0, 1.0, true);
    } else if (f == "--max-block-share") {
      if (!c.cfg.mass_budget) c.cfg.mass_budget.emplace();
      c.cfg.mass_budget->max_share = a.real(f, 0.0, 1.0, true);
    } else if (f == "--dense-head-share") {
      if (!c.cfg.mass_budget) c.cfg.mass_budget.emplace();
      c.cfg.mass_budget->dense_head_share = a.real(f, 0.0, 1.0, true);
    } else if (f == "--record-on-new-block") {
      c.cfg.record_on_new_block = true;
    } else if (f == "--refresh") {
      c.cfg.refresh_every = a.integer(f, 0, 1 << 30);
    } else if (f == "--tau") {
      c.cfg.unisparse.tau = a.real(f, 0.0, 1.0, true);
    } else if (f == "--unisparse-topk") {
      c.cfg.unisparse.select = UnisparseParams::Select::topk;
    } else if (f == "--sparsed-paper") {
      c.sparsed_paper = true;
    } else if (f == "--warmup-steps") {
      c.cfg.warmup_steps = a.integer(f, 0, 1 << 30);
    } else if (f == "--prefix-len") {
      c.prefix_len = a.integer(f, 0, 1LL << 40);
    } else if (dpad_or_drift_flag(a, f, c) || workload_flag(a, f, c)) {
    } else if (f == "--threads") {
      c.cfg.kernel.threads = a.threads(f);
      c.set_threads = true;
    } else if (f == "--cache") {
      c.cfg.cache = a.cache_mode(f);
    } else if (f == "--cache-refresh") {
      c.eo.refresh_first_only = a.cache_refresh_first(f);
    } else if (f == "--no-recall") {
      c.eo.recall = false;
    } else if (f == "--dtype") {
      c.eo.dtype = a.dtype(f);
    } else if (f == "--profile") {
#if SPATTN_HAS_YAML
      c.profile_path = a.value(f);
#else
      cli::usage_error(a.tool, "--profile: this build has no YAML profile support");
#endif
    } else if (f == "--lenient-profile") {
      c.lenient_profile = true;
    } else if (f == "--json") {
      c.json_path = a.value(f);
    } else if (f == "--quiet") {
      c.quiet = true;
    } else {
      cli::usage_error(a.tool, "unknown flag '" + f + "'");
    }
  }
  if (c.base_workload) {
    c.spec.synthetic = SyntheticConfig{};
    c.spec.synthetic.decode_block = 512;  // block-wise decoding, as the traces (and DPad) assume
  } else {
    SyntheticConfig probe = calibrated_synthetic_config();
    for (const auto& edit : c.synthetic_edits) edit(probe);  // the final head count
    c.spec.synthetic = calibrated_synthetic_config(std::max<int64_t>(1, probe.heads));
  }
  for (const auto& edit : c.synthetic_edits) edit(c.spec.synthetic);
  c.spec.synthetic.kv_heads = c.kv_heads > 0 ? c.kv_heads : c.spec.synthetic.heads;
  c.spec.synthetic.steps = c.steps;
  c.eo.max_steps = c.steps;
  return c;
}

#if SPATTN_HAS_YAML
// The profile's nearest entry fills what the flags left unset.
void apply_profile(CliOptions& c, const spattn::WorkloadSource& workload) {
  using namespace spattn;
  const AttentionShape shape = workload.shape();
  const Profile profile = Profile::load_for_machine(c.profile_path, /*strict=*/false);
  SessionConfig base = c.cfg;
  base.total_steps = std::min(c.steps, workload.steps());
  const ProfileFit fit = c.lenient_profile ? ProfileFit::lenient : ProfileFit::strict;
  // A trace's layer takes its own entry (spattn-tune --layers) where there is one.
  const SessionConfig from = c.spec.npy_dir.empty() || c.spec.layer < 0
                                 ? session_config_from_profile(profile, shape, base, fit, c.eo.dtype)
                                 : session_config_for_layer(profile, shape, c.spec.layer, base, fit, c.eo.dtype);
  if (from.policy != c.cfg.policy) {  // the layer's entry says dense (or sparsed)
    std::printf("profile %s: layer %d runs %s\n", c.profile_path.c_str(), c.spec.layer, policy_name(from.policy));
    c.cfg.policy = from.policy;
  }
  if (!c.set_block) c.cfg.block_size = from.block_size;
  if (!c.set_topk) c.cfg.topk_ratio = c.cfg.unisparse.topk_ratio = from.topk_ratio;
  if (!c.set_warmup) c.cfg.warmup_fraction = from.warmup_fraction;
  if (!c.set_threads) c.cfg.kernel.threads = from.kernel.threads;
  c.cfg.kernel.q_tile_rows = from.kernel.q_tile_rows;
  // The budget rule and the drift check come with the entry unless flags set them.
  if (!c.cfg.mass_budget && !c.cfg.pooled_budget) {
    c.cfg.mass_budget = from.mass_budget;
    c.cfg.pooled_budget = from.pooled_budget;
  }
  if (c.cfg.drift_check_every == 0) {
    c.cfg.drift_check_every = from.drift_check_every;
    c.cfg.drift_min_recall = from.drift_min_recall;
  }
  TunedShape key{shape.heads, shape.kv_heads, shape.kv_len, shape.head_dim, base.total_steps};
  key.dtype = dtype_name(c.eo.dtype);
  key.cache = cache_mode_name(c.cfg.cache);
  const ProfileMatch m =
      profile.match_any_dtype(key, policy_name(c.cfg.policy), c.spec.npy_dir.empty() ? -1 : c.spec.layer);
  std::printf("profile %s: %s%s\n", c.profile_path.c_str(),
              m.fits                                        ? "entry applied"
              : c.lenient_profile && m.entry != nullptr ? "nearest entry applied (lenient; it does not fit)"
                                                        : "no entry fits: documented defaults",
              m.entry != nullptr && m.other_dtype && (m.fits || c.lenient_profile)
                  ? (" (tuned at " + m.entry->shape.dtype + ": its pattern, not its tiles)").c_str()
                  : "");
}
#endif

// The authors' SparseD, keeping what the flags set explicitly.
void apply_sparsed_paper(CliOptions& c, int64_t steps, int64_t prefix, int64_t seq_len) {
  spattn::SessionConfig p = spattn::sparsed_paper_config(steps, prefix, seq_len);
  if (c.set_block) p.block_size = p.kernel.q_tile_rows = p.kernel.k_block = c.cfg.block_size;
  if (c.set_topk) p.topk_ratio = c.cfg.topk_ratio;
  if (c.cfg.warmup_steps >= 0) p.warmup_steps = c.cfg.warmup_steps;
  p.kernel.threads = c.cfg.kernel.threads;
  p.drift_check_every = c.cfg.drift_check_every;
  p.drift_min_recall = c.cfg.drift_min_recall;
  p.drift_sample_blocks = c.cfg.drift_sample_blocks;
  p.record_on_new_block = c.cfg.record_on_new_block;
  p.refresh_every = c.cfg.refresh_every;
  if (c.cfg.policy == spattn::Policy::dpad_sparsed) {
    p.policy = c.cfg.policy;
    p.dpad = c.cfg.dpad;
  }
  c.cfg = p;
}

void write_eval_json(const CliOptions& c, const spattn::WorkloadSource& workload, const spattn::EvalResult& r) {
  using namespace spattn;
  const AttentionShape shape = workload.shape();
  cli::Json j;
  j["policy"] = policy_name(c.cfg.policy);
  j["workload"] = workload.describe();
  j["seq_len"] = shape.kv_len;
  j["heads"] = shape.heads;
  j["kv_heads"] = shape.kv_heads;
  j["head_dim"] = shape.head_dim;
  j["block_size"] = c.cfg.block_size;
  j["topk_ratio"] = c.cfg.topk_ratio;
  j["warmup_fraction"] = c.cfg.warmup_fraction;
  j["mean_cosine"] = cli::number(r.mean_cosine);
  j["min_cosine"] = cli::number(r.min_cosine);
  j["mean_density"] = cli::number(r.mean_density);
  j["mean_rel_l2"] = cli::number(r.mean_rel_l2);
  j["mean_recall"] = cli::number(r.mean_recall);
  j["sparse_total_ms"] = cli::number(r.sparse_total_ms);
  j["dense_total_ms"] = cli::number(r.dense_total_ms);
  j["speedup_vs_dense"] = cli::number(r.speedup_vs_dense);
  j["rerecords"] = r.rerecords;
  j["drift_checks"] = r.drift_checks;
  j["drift_share_of_dense_step"] = cli::number(r.drift_share_of_dense_step);
  j["sparsed_paper"] = c.cfg.paper_select;
  j["dpad_rule"] = spattn::dpad_rule_name(c.cfg.dpad.rule);
  j["cache"] = cache_mode_name(c.cfg.cache);
  j["cache_refresh"] = c.eo.refresh_first_only ? "first" : "block";
  j["steps"] = cli::Json::array();
  for (const StepEval& e : r.steps)
    j["steps"].push_back({{"step", e.step}, {"path", step_path_name(e.path)}, {"density", cli::number(e.density)},
                          {"recall", cli::number(e.recall)}, {"cosine", cli::number(e.cosine)},
                          {"rel_l2", cli::number(e.rel_l2)}, {"ms", cli::number(e.ms)},
                          {"dense_ms", cli::number(e.dense_ms)}, {"dense_heads", e.dense_heads},
                          {"drift_recall", cli::number(e.drift_recall)}, {"drift_ms", cli::number(e.drift_ms)}, {"query_rows", e.query_rows},
                          {"head_cosine", e.head_cosine}, {"head_recall", e.head_recall}});
  cli::write_json_file(c.json_path, "spattn-eval", std::move(j));
}

}  // namespace

int eval_main(int argc, char** argv) {
  using namespace spattn;
  CliOptions c = parse_options(argc, argv);
  SessionConfig& cfg = c.cfg;
  try {
    WorkloadSource workload(c.spec);
    const AttentionShape shape = workload.shape();
#if SPATTN_HAS_YAML
    if (!c.profile_path.empty()) apply_profile(c, workload);
#endif
    const int64_t prefix = c.prefix_len >= 0 ? std::min(c.prefix_len, shape.kv_len) : shape.kv_len / 2;
    if (c.sparsed_paper) apply_sparsed_paper(c, std::min(c.steps, workload.steps()), prefix, shape.kv_len);
    // DPad's geometry: the prompt, then decoding at the block right after it
    // (a block-wise workload moves it along).
    if (cfg.dpad.block_end == 0) {
      cfg.dpad.prefix_len = prefix;
      cfg.dpad.block_start = prefix;
      cfg.dpad.block_end = std::min<int64_t>(shape.kv_len, prefix + 512);
    }
    std::printf("spattn-eval: policy %s on %s: heads %lld/%lld, N %lld, head_dim %lld, steps %lld, "
                "block %lld, topk %.3f, dense warmup steps %lld%s, dtype %s, ISA %s, threads %d, cache %s%s\n",
                policy_name(cfg.policy), workload.describe().c_str(), (long long)shape.heads,
                (long long)shape.kv_heads, (long long)shape.kv_len, (long long)shape.head_dim,
                (long long)std::min(c.steps, workload.steps()), (long long)cfg.block_size, cfg.topk_ratio,
                (long long)[&] {
                  SessionConfig t = cfg;
                  t.total_steps = std::min(c.steps, workload.steps());
                  return warmup_steps_for(t);
                }(),
                cfg.paper_select ? ", SparseD authors' selection" : "", dtype_name(c.eo.dtype), isa_name(active_isa()),
                resolve_threads(cfg.kernel), cache_mode_name(cfg.cache),
                cfg.cache == CacheMode::none ? "" : (c.eo.refresh_first_only ? " (refresh: first step)" : " (refresh: each block)"));
    if (!c.quiet) std::printf("%5s  %-17s %6s %8s %8s %9s %9s %10s %10s %6s\n", "step", "path", "rows", "density",
                              "recall", "cosine", "rel_l2", "ms", "dense_ms", "dense_h");
    c.eo.on_step = [&](const StepEval& e) {
      if (c.quiet) return;  // --quiet: nothing per step, on stdout or stderr
      std::printf("%5lld  %-17s %6lld %8.4f %8.4f %9.6f %9.2e %10.2f %10.2f %6lld", (long long)e.step,
                  step_path_name(e.path), (long long)e.query_rows, e.density, e.recall, e.cosine, e.rel_l2, e.ms,
                  e.dense_ms, (long long)e.dense_heads);
      if (!std::isnan(e.drift_recall)) std::printf("  drift check: kept %.3f (%.2f ms)", e.drift_recall, e.drift_ms);
      std::printf("\n");
      if (!e.head_cosine.empty()) {
        std::printf("       per head: cosine");
        for (double x : e.head_cosine) std::printf(" %.4f", x);
        if (!e.head_recall.empty()) {
          std::printf("; recall");
          for (double x : e.head_recall) std::printf(" %.3f", x);
        }
        std::printf("\n");
      }
      std::fflush(stdout);
    };
    const EvalResult r = evaluate(workload, cfg, c.eo);
    std::printf("overall: mean density %.4f, mean recall %.4f, mean cosine %.6f (min %.6f), "
                "mean rel_l2 %.2e, time %.1f ms vs dense %.1f ms: %.2fx\n",
                r.mean_density, r.mean_recall, r.mean_cosine, r.min_cosine, r.mean_rel_l2,
                r.sparse_total_ms, r.dense_total_ms, r.speedup_vs_dense);
    if (r.rerecords > 0 || r.drift_checks > 0)
      std::printf("patterns: %lld re-recorded after the first; %lld drift checks, each %.2f%% of a dense step on average\n",
                  (long long)r.rerecords, (long long)r.drift_checks,
                  r.drift_checks > 0 ? 100.0 * r.drift_share_of_dense_step / static_cast<double>(r.drift_checks) : 0.0);
    if (!c.json_path.empty()) write_eval_json(c, workload, r);
  } catch (const Error& e) {  // the run failed (not the flags): exit 1, as run_tool does
    std::fprintf(stderr, "spattn-eval: %s\n", e.what());
    return 1;
  }
  return 0;
}

int main(int argc, char** argv) { return spattn::cli::run_tool("spattn-eval", argc, argv, eval_main); }
