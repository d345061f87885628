// The autotuner's search (see include/spattn/lab/tune.hpp for the method).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <thread>

#include "spattn/error.hpp"
#include "spattn/isa.hpp"
#include "spattn/lab/timing.hpp"
#include "spattn/lab/tune.hpp"

namespace spattn {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// The one median of the lab and the tools (mean of the middle two for an
// even count).
using lab::median_ms;

// One step's inputs and its dense flash output (the accuracy reference).
struct StepData {
  int64_t step = 0;
  std::vector<float> q, k, v;
  std::vector<double> ref;
};

struct Problem {
  const WorkloadSource& workload;
  AttentionShape shape;
  int64_t steps;
  ConstTensorView q(const StepData& d) const { return view(d.q, shape.heads, shape.q_len); }
  ConstTensorView k(const StepData& d) const { return view(d.k, shape.kv_heads, shape.kv_len); }
  ConstTensorView v(const StepData& d) const { return view(d.v, shape.kv_heads, shape.kv_len); }
  static ConstTensorView view(const std::vector<float>& t, int64_t h, int64_t n, int64_t d) {
    return ConstTensorView::heads_major(t.data(), h, n, d);
  }
  ConstTensorView view(const std::vector<float>& t, int64_t h, int64_t n) const {
    return view(t, h, n, shape.head_dim);
  }
  TensorView out_view(std::vector<float>& t) const {
    return TensorView::heads_major(t.data(), shape.heads, shape.q_len, shape.head_dim);
  }
  size_t out_size() const { return static_cast<size_t>(shape.heads * shape.q_len * shape.head_dim); }
  StepData load(int64_t s) const {
    StepData d;
    d.step = s;
    workload.step(s, d.q, d.k, d.v);
    return d;
  }
};

// A top-k ratio that makes sparsed_select keep exactly `kept` of `k_blocks`.
double ratio_for(int64_t kept, int64_t k_blocks) {
  return static_cast<double>(kept) / static_cast<double>(k_blocks);
}

void validate(const TuneOptions& o) {
  const char* w = "tune";
  if (o.steps <= 0) throw_bad_argument(w, "steps", std::to_string(o.steps), "must be positive");
  for (double c : {o.min_mean_cosine, o.min_step_cosine})
    if (!(c >= -1.0 && c <= 1.0))
      throw_bad_argument(w, "accuracy bound", std::to_string(c), "cosine bounds must be in [-1, 1]");
  if (o.block_sizes.empty()) throw_bad_argument(w, "block_sizes", "{}", "must not be empty");
  for (int64_t b : o.block_sizes)
    if (!is_supported_block_size(b))
      throw_bad_argument(w, "block_sizes", std::to_string(b), kBlockSizeRule);
  if (!(o.min_topk > 0.0 && o.min_topk <= 1.0))
    throw_bad_argument(w, "min_topk", std::to_string(o.min_topk), "must be in (0, 1]");
  if (!(o.max_topk >= o.min_topk && o.max_topk <= 1.0))
    throw_bad_argument(w, "max_topk", std::to_string(o.max_topk), "must be in [min_topk, 1]");
  if (o.warmup_fractions.empty()) throw_bad_argument(w, "warmup_fractions", "{}", "must not be empty");
  for (double f : o.warmup_fractions)
    if (!(f >= 0.0 && f < 1.0))
      throw_bad_argument(w, "warmup_fractions", std::to_string(f), "must be in [0, 1)");
  if (o.q_tiles.empty()) throw_bad_argument(w, "q_tiles", "{}", "must not be empty");
  for (int64_t q : o.q_tiles)
    if (!is_supported_block_size(q))
      throw_bad_argument(w, "q_tiles", std::to_string(q), kBlockSizeRule);
  for (int t : o.threads)
    if (t < 1) throw_bad_argument(w, "threads", std::to_string(t), "must be >= 1");
  if (o.reps < 1) throw_bad_argument(w, "reps", std::to_string(o.reps), "must be >= 1");
  if (o.sample_steps < 1)
    throw_bad_argument(w, "sample_steps", std::to_string(o.sample_steps), "must be >= 1");
  if (!(o.budget_s > 0.0)) throw_bad_argument(w, "budget_s", std::to_string(o.budget_s), "must be > 0");
  if (o.verify_retries < 0)
    throw_bad_argument(w, "verify_retries", std::to_string(o.verify_retries), "must be >= 0");
}

std::vector<int> default_thread_candidates() {
  const int cores = std::max(1u, std::thread::hardware_concurrency());
  std::vector<int> t;
  for (int x = 1; x < cores; x *= 2) t.push_back(x);
  t.push_back(cores);
  return t;
}

class ProgressReporter {
 public:
  ProgressReporter(const TuneOptions& o, Clock::time_point t0) : o_(o), t0_(t0) {}
  void report(const std::string& phase, double remaining_s) const {
    if (!o_.on_progress) return;
    TuneProgress p;
    p.elapsed_s = seconds_since(t0_);
    p.eta_s = std::max(0.0, remaining_s);
    p.fraction = p.elapsed_s / std::max(1e-9, p.elapsed_s + p.eta_s);
    p.phase = phase;
    o_.on_progress(p);
  }

 private:
  const TuneOptions& o_;
  Clock::time_point t0_;
};

}  // namespace

TuneResult tune(const TuneOptions& o) {
  validate(o);
  const auto t0 = Clock::now();
  ProgressReporter progress(o, t0);
  TuneResult res;

  WorkloadSpec spec = o.workload;
  if (spec.npy_dir.empty()) spec.synthetic.steps = std::max(spec.synthetic.steps, o.steps);
  const WorkloadSource workload(spec);
  const int64_t S = std::min(o.steps, workload.steps());
  const Problem P{workload, workload.shape(), S};
  const AttentionShape& shape = P.shape;
  std::vector<int> thread_set = o.threads.empty() ? default_thread_candidates() : o.threads;
  std::sort(thread_set.begin(), thread_set.end());
  thread_set.erase(std::unique(thread_set.begin(), thread_set.end()), thread_set.end());

  KernelOptions kopt;
  kopt.threads = thread_set.back();

  // --- Dense tiles, on the last step (also the first accuracy sample).
  progress.report("loading the workload", 0);
  const auto tl = Clock::now();
  StepData last = P.load(S - 1);
  const double load_s = seconds_since(tl);
  std::vector<float> out(P.out_size());
  double t_dense = std::numeric_limits<double>::infinity();
  for (int64_t qt : o.q_tiles) {
    KernelOptions k = kopt;
    k.q_block = qt;
    progress.report("timing dense tiles", 0);
    const double t = median_ms(o.reps, [&] {
      dense_attention(shape, P.q(last), P.k(last), P.v(last), P.out_view(out), k);
    });
    if (t < t_dense) {
      t_dense = t;
      kopt.q_block = qt;
    }
  }
  auto compute_ref = [&](StepData& d) {
    dense_attention(shape, P.q(d), P.k(d), P.v(d), P.out_view(out), kopt);
    d.ref.assign(out.begin(), out.end());
  };

  // --- Warmup candidates (distinct warmup step counts that leave sparse steps).
  std::vector<std::pair<double, int64_t>> warmups;  // (fraction, W)
  {
    std::vector<double> fr = o.warmup_fractions;
    std::sort(fr.begin(), fr.end());
    for (double f : fr) {
      const int64_t W = warmup_steps_for(Policy::sparsed, f, S);
      if (W >= S && S > 1) continue;  // no sparse step left: nothing to tune
      if (!warmups.empty() && warmups.back().second == W) continue;
      warmups.emplace_back(f, W);
    }
    if (warmups.empty()) warmups.emplace_back(o.warmup_fractions.front(), warmup_steps_for(Policy::sparsed, o.warmup_fractions.front(), S));
  }

  // --- Accuracy samples: spread over [first warmup, S - 1], the last step included.
  std::vector<StepData> samples;
  {
    const int64_t lo = std::min(warmups.front().second, S - 1);
    const int64_t span = S - 1 - lo;
    const int64_t per_sample =
        static_cast<int64_t>((2 * shape.heads * shape.q_len + 2 * shape.kv_heads * shape.kv_len) *
                             shape.head_dim * sizeof(float) + shape.heads * shape.q_len * shape.head_dim * 4);
    int64_t m = std::min<int64_t>(o.sample_steps, span + 1);
    m = std::max<int64_t>(1, std::min(m, o.sample_memory_bytes / std::max<int64_t>(1, per_sample)));
    std::vector<int64_t> at;
    for (int64_t i = 0; i < m; ++i)
      at.push_back(m == 1 ? S - 1 : S - 1 - static_cast<int64_t>(std::llround(double(i) * double(span) / double(m - 1))));
    std::sort(at.begin(), at.end());
    at.erase(std::unique(at.begin(), at.end()), at.end());
    for (int64_t s : at) {
      progress.report("loading accuracy samples", double(at.size() - samples.size()) * (load_s + t_dense / 1e3));
      if (s == S - 1) {
        samples.push_back(std::move(last));
      } else {
        samples.push_back(P.load(s));
      }
      compute_ref(samples.back());
    }
  }
  const StepData& timing_step = samples.back();  // step S - 1

  // Accuracy of a mask on the samples at or after W; stops at the first step
  // under the bound (samples are tried last step first: drift makes it the worst).
  auto judge = [&](const BlockMask& mask, int64_t W, double& mean_cos, double& min_cos) {
    double sum = 0;
    int64_t n = 0;
    min_cos = 1.0;
    for (auto it = samples.rbegin(); it != samples.rend(); ++it) {
      if (it->step < W) break;
      block_sparse_attention(shape, P.q(*it), P.k(*it), P.v(*it), mask, P.out_view(out), kopt);
      const double c = cosine_similarity(P.view(out, shape.heads, shape.q_len), it->ref);
      ++res.accuracy_evals;
      sum += c;
      ++n;
      min_cos = std::min(min_cos, c);
      if (c < o.min_step_cosine) break;
    }
    // Dense steps match the reference; sparse steps are estimated by the samples' mean.
    const double sparse_mean = n ? sum / double(n) : 1.0;
    mean_cos = (double(W) + double(S - W) * sparse_mean) / double(S);
    return min_cos >= o.min_step_cosine && mean_cos >= o.min_mean_cosine;
  };

  // Seconds the verification run is expected to take for a candidate.
  auto verify_cost_s = [&](double sparse_ms) {
    return double(S) * (load_s + (t_dense + sparse_ms) / 1e3) * 1.1;
  };
  auto model_run_ms = [&](int64_t W, double record_ms, double sparse_ms) {
    return double(W - 1) * t_dense + record_ms + double(S - W) * sparse_ms;
  };

  auto select = [](const BlockMass& m, bool pooled, double ratio) {
    return pooled ? sparsed_select_pooled(m, ratio) : sparsed_select(m, ratio);
  };
  // Key blocks per query block a top-k ratio keeps (sparsed_select's rule).
  auto blocks_for = [](double ratio, int64_t nk) {
    return blocks_for_ratio(ratio, nk);
  };
  // The smallest count in [lo, hi] whose mask meets the bound on the samples
  // (accuracy is monotone in it), with its estimates; 0 when even hi misses.
  // hi is tried first: a (warmup, block) that cannot reach the bound costs one check.
  struct Found {
    int64_t kept = 0;
    double mean = 0, min = 0;
  };
  auto smallest_passing = [&](int64_t lo, int64_t hi, int64_t W, const std::function<BlockMask(int64_t)>& mask_for,
                              const std::function<void(int64_t)>& report) {
    Found f;
    double mean_c = 0, min_c = 0;
    auto passes = [&](int64_t kept) {
      report(kept);
      return judge(mask_for(kept), W, mean_c, min_c);
    };
    if (lo > hi || !passes(hi)) return f;
    f = {hi, mean_c, min_c};
    while (lo < f.kept) {
      const int64_t mid = lo + (f.kept - lo) / 2;
      if (passes(mid)) f = {mid, mean_c, min_c};
      else lo = mid + 1;
    }
    return f;
  };
  // Fills the candidate's timings for the mask it selects.
  auto time_candidate = [&](TuneCandidate& c, const BlockMass& mass, double record_base_ms) {
    BlockMask mask;
    const double t_select = median_ms(1, [&] { mask = select(mass, c.pooled_budget, c.topk_ratio); });
    c.record_ms = record_base_ms + t_select;
    c.sparse_step_ms = median_ms(o.reps, [&] {
      block_sparse_attention(shape, P.q(timing_step), P.k(timing_step), P.v(timing_step), mask,
                             P.out_view(out), kopt);
    });
    c.est_run_ms = model_run_ms(c.warmup_steps, c.record_ms, c.sparse_step_ms);
  };

  // --- The search: warmups ascending, block sizes inside; each (warmup, block)
  // bisects the number of kept key blocks.
  std::optional<TuneCandidate> best;
  std::map<int64_t, int64_t> hi_kept;  // per block size: smallest passing count at a smaller warmup
  const size_t pairs_total = warmups.size() * o.block_sizes.size();
  size_t pairs_done = 0;
  double pair_cost_s = 0;  // running mean of a (warmup, block) search
  std::vector<float> lse(static_cast<size_t>(shape.heads * shape.q_len));
  std::vector<float> lse_out(P.out_size());
  for (const auto& fw : warmups) {
    const double fraction = fw.first;  // named copies: lambdas below capture them
    const int64_t W = fw.second;
    // A larger warmup only adds dense steps: once they alone cost more than the best run, stop.
    if (best && double(W - 1) * t_dense >= best->est_run_ms) break;
    progress.report("recording the pattern at step " + std::to_string(W - 1),
                    double(pairs_total - pairs_done) * pair_cost_s + verify_cost_s(t_dense * 0.2));
    StepData rec = P.load(W - 1);
    const double t_lse = median_ms(1, [&] {
      dense_attention_with_lse(shape, P.q(rec), P.k(rec), P.v(rec), P.out_view(lse_out), lse.data(), kopt);
    });
    for (int64_t b : o.block_sizes) {
      const auto tp = Clock::now();
      const double remaining = double(pairs_total - pairs_done) * pair_cost_s;
      const double reserve = verify_cost_s(best ? best->sparse_step_ms : t_dense * 0.2) +
                             o.reserve_dense_steps * t_dense / 1e3;
      if (seconds_since(t0) + std::max(pair_cost_s, 0.0) + reserve > o.budget_s && best) {
        res.budget_hit = true;
        break;
      }
      BlockMass mass;
      const double t_mass = median_ms(1, [&] {
        mass = block_attention_mass_from_lse(shape, P.q(rec), P.k(rec), lse.data(), b, b, kopt);
      });
      const int64_t nk = mass.k_blocks();
      int64_t hi = blocks_for(o.max_topk, nk);
      if (auto it = hi_kept.find(b); it != hi_kept.end()) hi = std::min(hi, it->second);
      const Found f = smallest_passing(
          std::min(blocks_for(o.min_topk, nk), hi), hi, W,
          [&](int64_t kept) { return sparsed_select(mass, ratio_for(kept, nk)); },
          [&](int64_t kept) {
            progress.report("block " + std::to_string(b) + ", warmup " + std::to_string(W) + "/" +
                                std::to_string(S) + " steps, trying " + std::to_string(kept) + "/" +
                                std::to_string(nk) + " key blocks",
                            remaining + reserve);
          });
      if (f.kept == 0) {  // even the largest allowed budget misses the bound here
        ++pairs_done;
        continue;
      }
      hi_kept[b] = f.kept;
      TuneCandidate c;
      c.block_size = b;
      c.warmup_fraction = fraction;
      c.warmup_steps = W;
      c.blocks_kept = f.kept;
      c.topk_ratio = ratio_for(f.kept, nk);
      c.est_mean_cosine = f.mean;
      c.est_min_cosine = f.min;
      time_candidate(c, mass, t_lse + t_mass);
      res.candidates.push_back(c);
      if (!best || c.est_run_ms < best->est_run_ms) best = c;
      ++pairs_done;
      const double took = seconds_since(tp);
      pair_cost_s = pair_cost_s == 0 ? took : 0.7 * pair_cost_s + 0.3 * took;
    }
    if (res.budget_hit) break;
  }

  if (!best) {
    res.elapsed_s = seconds_since(t0);
    res.note = "no setting in the search space (top-k ratio up to " + std::to_string(o.max_topk) +
               ", warmup up to " + std::to_string(warmups.back().first) +
               ") met the accuracy bound on the sample steps";
    return res;
  }

  // --- The best (warmup, block) again with the budget pooled across heads.
  if (o.try_pooled_budget && best->blocks_kept > 1) {
    const int64_t W = best->warmup_steps, b = best->block_size;
    progress.report("block " + std::to_string(b) + ", pooled budget", verify_cost_s(best->sparse_step_ms));
    StepData rec = P.load(W - 1);
    dense_attention_with_lse(shape, P.q(rec), P.k(rec), P.v(rec), P.out_view(lse_out), lse.data(), kopt);
    const BlockMass mass = block_attention_mass_from_lse(shape, P.q(rec), P.k(rec), lse.data(), b, b, kopt);
    const int64_t nk = mass.k_blocks();
    // It must beat the per-head count to matter.
    const Found f = smallest_passing(
        std::min(blocks_for(o.min_topk, nk), best->blocks_kept - 1), best->blocks_kept - 1, W,
        [&](int64_t kept) { return sparsed_select_pooled(mass, ratio_for(kept, nk)); }, [](int64_t) {});
    if (f.kept > 0) {
      TuneCandidate c = *best;
      c.pooled_budget = true;
      c.blocks_kept = f.kept;
      c.topk_ratio = ratio_for(f.kept, nk);
      c.est_mean_cosine = f.mean;
      c.est_min_cosine = f.min;
      // The dense pass and block masses are the per-head candidate's (one noisy
      // run each); only the selection differs.
      time_candidate(c, mass, best->record_ms);
      res.candidates.push_back(c);
      if (c.est_run_ms < best->est_run_ms) best = c;
    }
  }

  // --- Threads for the chosen setting: the whole-run model per thread count.
  TuneCandidate chosen = *best;
  {
    progress.report("timing threads", verify_cost_s(chosen.sparse_step_ms) + o.reserve_dense_steps * t_dense / 1e3);
    StepData rec = P.load(chosen.warmup_steps - 1);
    double best_run = std::numeric_limits<double>::infinity();
    int best_threads = kopt.threads;
    for (int th : thread_set) {
      KernelOptions k = kopt;
      k.threads = th;
      const double td = median_ms(o.reps, [&] {
        dense_attention(shape, P.q(timing_step), P.k(timing_step), P.v(timing_step), P.out_view(out), k);
      });
      BlockMask mask;
      const double trec = median_ms(1, [&] {
        dense_attention_with_lse(shape, P.q(rec), P.k(rec), P.v(rec), P.out_view(lse_out), lse.data(), k);
        const BlockMass m = block_attention_mass_from_lse(shape, P.q(rec), P.k(rec), lse.data(),
                                                          chosen.block_size, chosen.block_size, k);
        mask = select(m, chosen.pooled_budget, chosen.topk_ratio);
      });
      const double ts = median_ms(o.reps, [&] {
        block_sparse_attention(shape, P.q(timing_step), P.k(timing_step), P.v(timing_step), mask,
                               P.out_view(out), k);
      });
      const double run = double(chosen.warmup_steps - 1) * td + trec + double(S - chosen.warmup_steps) * ts;
      if (run < best_run) {
        best_run = run;
        best_threads = th;
        t_dense = td;
        chosen.record_ms = trec;
        chosen.sparse_step_ms = ts;
        chosen.est_run_ms = run;
      }
    }
    kopt.threads = best_threads;
  }
  samples.clear();  // free the cached inputs before the verification run

  // --- Verification: the real session over every step; step the top-k up if
  // a step the samples did not see falls below the bound.
  SessionConfig cfg;
  cfg.policy = Policy::sparsed;
  cfg.total_steps = S;
  cfg.block_size = chosen.block_size;
  cfg.warmup_fraction = chosen.warmup_fraction;
  cfg.pooled_budget = chosen.pooled_budget;
  cfg.kernel = kopt;
  const int64_t nk = (shape.kv_len + chosen.block_size - 1) / chosen.block_size;
  for (int attempt = 0; attempt <= o.verify_retries; ++attempt) {
    cfg.topk_ratio = chosen.topk_ratio;
    EvalOptions eo;
    eo.max_steps = S;
    eo.recall = false;
    const double vc = verify_cost_s(chosen.sparse_step_ms);
    eo.on_step = [&](const StepEval& e) {
      progress.report("verifying on all " + std::to_string(S) + " steps, step " + std::to_string(e.step + 1),
                      vc * double(S - e.step - 1) / double(S) + o.reserve_dense_steps * t_dense / 1e3);
    };
    res.verify = evaluate(workload, cfg, eo);
    res.met = res.verify.mean_cosine >= o.min_mean_cosine && res.verify.min_cosine >= o.min_step_cosine;
    if (res.met || chosen.blocks_kept >= nk) break;
    if (attempt == o.verify_retries || seconds_since(t0) + vc > o.budget_s * 1.25) break;
    // Step up by ~25% (at least one block) and re-verify.
    chosen.blocks_kept = std::min(nk, std::max(chosen.blocks_kept + 1, (chosen.blocks_kept * 5 + 3) / 4));
    chosen.topk_ratio = ratio_for(chosen.blocks_kept, nk);
    res.note += "verification missed the bound at " + std::to_string(res.verify.min_cosine) +
                " (min step cosine); stepped top-k up to " + std::to_string(chosen.blocks_kept) + "/" +
                std::to_string(nk) + " blocks. ";
  }
  if (!res.met)
    res.note += "the chosen setting did not meet the bound on every step of the verification run";
  if (res.budget_hit) res.note += "the search stopped early to keep within the time budget. ";

  res.chosen = chosen;
  res.dense_step_ms = t_dense;
  ProfileEntry& e = res.entry;
  e.shape = TunedShape{shape.heads, shape.kv_heads, shape.kv_len, shape.head_dim, S};
  e.workload = workload.describe();
  e.policy = policy_name(Policy::sparsed);
  e.min_mean_cosine = o.min_mean_cosine;
  e.min_step_cosine = o.min_step_cosine;
  e.block_size = chosen.block_size;
  e.topk_ratio = chosen.topk_ratio;
  e.warmup_fraction = chosen.warmup_fraction;
  e.q_tile_rows = kopt.q_block;
  e.threads = kopt.threads;
  e.pooled_budget = chosen.pooled_budget;
  e.dense_ms = res.verify.dense_total_ms;
  e.sparse_ms = res.verify.sparse_total_ms;
  e.speedup = res.verify.speedup_vs_dense;
  e.mean_cosine = res.verify.mean_cosine;
  e.min_cosine = res.verify.min_cosine;
  e.mean_density = res.verify.mean_density;
  e.tuned_at = utc_timestamp_now();
  res.elapsed_s = seconds_since(t0);
  progress.report("done", 0);
  return res;
}

}  // namespace spattn
