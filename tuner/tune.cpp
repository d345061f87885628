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
  std::vector<uint16_t> q16, k16, v16;  // q, k, v rounded to a 16-bit dtype (tuning at bf16 / fp16)
  std::vector<double> ref;
};

struct Problem {
  const WorkloadSource& workload;
  AttentionShape shape;
  int64_t steps;
  DType dtype = DType::fp32;  // what the session and the dense baseline get, rounded from the workload
  InputView q(const StepData& d) const { return typed(d.q, d.q16, shape.heads, shape.q_len); }
  InputView k(const StepData& d) const { return typed(d.k, d.k16, shape.kv_heads, shape.kv_len); }
  InputView v(const StepData& d) const { return typed(d.v, d.v16, shape.kv_heads, shape.kv_len); }
  InputView typed(const std::vector<float>& t, const std::vector<uint16_t>& narrow, int64_t h, int64_t n) const {
    if (dtype == DType::fp32) return view(t, h, n);
    return InputView(narrow.data(), dtype, h, n, shape.head_dim, n * shape.head_dim, shape.head_dim);
  }
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
    if (dtype != DType::fp32) {
      auto narrow = [&](const std::vector<float>& t, std::vector<uint16_t>& out) {
        out.resize(t.size());
        for (size_t i = 0; i < t.size(); ++i) out[i] = dtype == DType::bf16 ? to_bf16(t[i]).bits : to_fp16(t[i]).bits;
      };
      narrow(d.q, d.q16);
      narrow(d.k, d.k16);
      narrow(d.v, d.v16);
    }
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
  if (o.drift_check_every < 0)
    throw_bad_argument(w, "drift_check_every", std::to_string(o.drift_check_every), "must be >= 0");
  if (!(o.drift_min_recall >= 0.0 && o.drift_min_recall <= 1.0))
    throw_bad_argument(w, "drift_min_recall", std::to_string(o.drift_min_recall), "must be in [0, 1]");
  for (size_t i = 0; i < o.taus.size(); ++i)
    if (!(o.taus[i] > 0.0 && o.taus[i] <= 1.0) || (i > 0 && !(o.taus[i] > o.taus[i - 1])))
      throw_bad_argument(w, "taus", std::to_string(o.taus[i]), "must be ascending, each in (0, 1]");
  for (double d : o.dense_head_shares)
    if (!(d > 0.0 && d <= 1.0)) throw_bad_argument(w, "dense_head_shares", std::to_string(d), "must be in (0, 1]");
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

// One search, its phases as member functions over the state they share:
// dense tiles, warmup candidates, accuracy samples, the (warmup, block)
// search, the pooled budget, threads, verification, the profile entry.
class Search {
 public:
  explicit Search(const TuneOptions& o)
      : o_(o), t0_(Clock::now()), progress_(o, t0_), spec_(workload_spec(o)), workload_(spec_),
        S_(std::min(o.steps, workload_.steps())), P_{workload_, workload_.shape(), S_, o.dtype}, shape_(P_.shape),
        out_(P_.out_size()), lse_(static_cast<size_t>(shape_.heads * shape_.q_len)), lse_out_(P_.out_size()) {}

  TuneResult run() {
    choose_thread_candidates();
    time_dense_tiles();
    choose_warmups();
    load_samples();
    search_warmups_and_blocks();
    if (best_) try_pooled_budget();
    try_adaptive_budget();
    if (!best_) return no_setting_found();
    TuneCandidate chosen = choose_threads(*best_);
    samples_.clear();  // free the cached inputs before the verification run
    verify(chosen);
    write_entry(chosen);
    res_.elapsed_s = seconds_since(t0_);
    progress_.report("done", 0);
    return res_;
  }

 private:
  struct Found {  // the smallest passing count of kept key blocks, with its estimates
    int64_t kept = 0;
    double mean = 0, min = 0;
  };

  static WorkloadSpec workload_spec(const TuneOptions& o) {
    WorkloadSpec spec = o.workload;
    if (spec.npy_dir.empty()) spec.synthetic.steps = std::max(spec.synthetic.steps, o.steps);
    return spec;
  }

  void choose_thread_candidates() {
    threads_ = o_.threads.empty() ? default_thread_candidates() : o_.threads;
    std::sort(threads_.begin(), threads_.end());
    threads_.erase(std::unique(threads_.begin(), threads_.end()), threads_.end());
    kopt_.threads = threads_.back();
  }

  // Dense tiles, on the last step (also the first accuracy sample).
  void time_dense_tiles() {
    progress_.report("loading the workload", 0);
    const auto tl = Clock::now();
    last_ = P_.load(S_ - 1);
    load_s_ = seconds_since(tl);
    for (int64_t qt : o_.q_tiles) {
      KernelOptions k = kopt_;
      k.q_tile_rows = qt;
      progress_.report("timing dense tiles", 0);
      const double t = median_ms(o_.reps, [&] {
        dense_attention(shape_, P_.q(last_), P_.k(last_), P_.v(last_), P_.out_view(out_), k);
      });
      if (t < t_dense_) {
        t_dense_ = t;
        kopt_.q_tile_rows = qt;
      }
    }
  }

  void compute_ref(StepData& d) {
    dense_attention(shape_, P_.q(d), P_.k(d), P_.v(d), P_.out_view(out_), kopt_);
    d.ref.assign(out_.begin(), out_.end());
  }

  // Distinct warmup step counts that leave sparse steps, ascending.
  void choose_warmups() {
    std::vector<double> fr = o_.warmup_fractions;
    std::sort(fr.begin(), fr.end());
    for (double f : fr) {
      const int64_t W = warmup_steps_for(Policy::sparsed, f, S_);
      if (W >= S_ && S_ > 1) continue;  // no sparse step left: nothing to tune
      if (!warmups_.empty() && warmups_.back().second == W) continue;
      warmups_.emplace_back(f, W);
    }
    if (warmups_.empty())
      warmups_.emplace_back(o_.warmup_fractions.front(),
                            warmup_steps_for(Policy::sparsed, o_.warmup_fractions.front(), S_));
  }

  // Accuracy samples: spread over [first warmup, S - 1], the last step included.
  void load_samples() {
    const int64_t lo = std::min(warmups_.front().second, S_ - 1);
    const int64_t span = S_ - 1 - lo;
    const int64_t per_sample =
        static_cast<int64_t>((2 * shape_.heads * shape_.q_len + 2 * shape_.kv_heads * shape_.kv_len) *
                                 shape_.head_dim * sizeof(float) +
                             shape_.heads * shape_.q_len * shape_.head_dim * 4);
    int64_t m = std::min<int64_t>(o_.sample_steps, span + 1);
    m = std::max<int64_t>(1, std::min(m, o_.sample_memory_bytes / std::max<int64_t>(1, per_sample)));
    std::vector<int64_t> at;
    for (int64_t i = 0; i < m; ++i)
      at.push_back(m == 1 ? S_ - 1
                          : S_ - 1 - static_cast<int64_t>(std::llround(double(i) * double(span) / double(m - 1))));
    std::sort(at.begin(), at.end());
    at.erase(std::unique(at.begin(), at.end()), at.end());
    for (int64_t s : at) {
      progress_.report("loading accuracy samples", double(at.size() - samples_.size()) * (load_s_ + t_dense_ / 1e3));
      samples_.push_back(s == S_ - 1 ? std::move(last_) : P_.load(s));
      compute_ref(samples_.back());
    }
  }
  const StepData& timing_step() const { return samples_.back(); }  // step S - 1

  // Accuracy of a mask on the samples at or after W; stops at the first step
  // under the bound (samples are tried last step first: drift makes it the worst).
  bool judge(const BlockMask& mask, int64_t W, double& mean_cos, double& min_cos) {
    double sum = 0;
    int64_t n = 0;
    min_cos = 1.0;
    for (auto it = samples_.rbegin(); it != samples_.rend(); ++it) {
      if (it->step < W) break;
      block_sparse_attention(shape_, P_.q(*it), P_.k(*it), P_.v(*it), mask, P_.out_view(out_), kopt_);
      const double c = cosine_similarity(P_.view(out_, shape_.heads, shape_.q_len), it->ref);
      ++res_.accuracy_evals;
      sum += c;
      ++n;
      min_cos = std::min(min_cos, c);
      if (c < o_.min_step_cosine) break;
    }
    // Dense steps match the reference; sparse steps are estimated by the samples' mean.
    const double sparse_mean = n ? sum / double(n) : 1.0;
    mean_cos = (double(W) + double(S_ - W) * sparse_mean) / double(S_);
    return min_cos >= o_.min_step_cosine && mean_cos >= o_.min_mean_cosine;
  }

  // Seconds the verification run is expected to take for a candidate.
  double verify_cost_s(double sparse_ms) const { return double(S_) * (load_s_ + (t_dense_ + sparse_ms) / 1e3) * 1.1; }
  double model_run_ms(int64_t W, double record_ms, double sparse_ms) const {
    return double(W - 1) * t_dense_ + record_ms + double(S_ - W) * sparse_ms;
  }
  static BlockMask select(const BlockMass& m, const TuneCandidate& c) {
    if (c.mass_tau > 0) return sparsed_select_mass(m, mass_budget(c));
    return c.pooled_budget ? sparsed_select_pooled(m, c.topk_ratio) : sparsed_select(m, c.topk_ratio);
  }
  static MassBudget mass_budget(const TuneCandidate& c) {
    MassBudget b;
    b.tau = c.mass_tau;
    b.dense_head_share = c.dense_head_share;
    return b;
  }

  // The smallest count in [lo, hi] whose mask meets the bound on the samples
  // (accuracy is monotone in it), with its estimates; 0 when even hi misses.
  // hi is tried first: a (warmup, block) that cannot reach the bound costs one check.
  Found smallest_passing(int64_t lo, int64_t hi, int64_t W, const std::function<BlockMask(int64_t)>& mask_for,
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
  }

  // Fills the candidate's timings for the mask it selects.
  void time_candidate(TuneCandidate& c, const BlockMass& mass, double record_base_ms) {
    BlockMask mask;
    const double t_select = median_ms(1, [&] { mask = select(mass, c); });
    c.record_ms = record_base_ms + t_select;
    const StepData& ts = timing_step();
    c.sparse_step_ms = median_ms(o_.reps, [&] {
      block_sparse_attention(shape_, P_.q(ts), P_.k(ts), P_.v(ts), mask, P_.out_view(out_), kopt_);
    });
    c.est_run_ms = model_run_ms(c.warmup_steps, c.record_ms, c.sparse_step_ms);
  }

  // The dense pass with LSE at step W - 1 (its time), then the block masses.
  double record_lse(const StepData& rec, const KernelOptions& k) {
    return median_ms(1, [&] {
      dense_attention_with_lse(shape_, P_.q(rec), P_.k(rec), P_.v(rec), P_.out_view(lse_out_), lse_.data(), k);
    });
  }
  BlockMass masses(const StepData& rec, int64_t block, const KernelOptions& k) {
    return block_attention_mass_from_lse(shape_, P_.q(rec), P_.k(rec), lse_.data(), block, block, k);
  }

  // Warmups ascending, block sizes inside; each (warmup, block) bisects the
  // number of kept key blocks.
  void search_warmups_and_blocks() {
    pairs_total_ = warmups_.size() * o_.block_sizes.size();
    for (const auto& [fraction, W] : warmups_) {
      // A larger warmup only adds dense steps: once they alone cost more than the best run, stop.
      if (best_ && double(W - 1) * t_dense_ >= best_->est_run_ms) break;
      progress_.report("recording the pattern at step " + std::to_string(W - 1),
                       double(pairs_total_ - pairs_done_) * pair_cost_s_ + verify_cost_s(t_dense_ * 0.2));
      const StepData rec = P_.load(W - 1);
      const double t_lse = record_lse(rec, kopt_);
      for (int64_t b : o_.block_sizes)
        if (!search_block(fraction, W, b, rec, t_lse)) break;
      if (res_.budget_hit) break;
    }
  }

  // One (warmup, block) pair; false when the budget stops the search.
  bool search_block(double fraction, int64_t W, int64_t b, const StepData& rec, double t_lse) {
    const auto tp = Clock::now();
    const double remaining = double(pairs_total_ - pairs_done_) * pair_cost_s_;
    const double reserve = verify_cost_s(best_ ? best_->sparse_step_ms : t_dense_ * 0.2) +
                           o_.reserve_dense_steps * t_dense_ / 1e3;
    if (seconds_since(t0_) + std::max(pair_cost_s_, 0.0) + reserve > o_.budget_s && best_) {
      res_.budget_hit = true;
      return false;
    }
    BlockMass mass;
    const double t_mass = median_ms(1, [&] { mass = masses(rec, b, kopt_); });
    const int64_t nk = mass.k_blocks();
    int64_t hi = blocks_for_ratio(o_.max_topk, nk);
    if (auto it = hi_kept_.find(b); it != hi_kept_.end()) hi = std::min(hi, it->second);
    const Found f = smallest_passing(
        std::min(blocks_for_ratio(o_.min_topk, nk), hi), hi, W,
        [&](int64_t kept) { return sparsed_select(mass, ratio_for(kept, nk)); },
        [&](int64_t kept) {
          progress_.report("block " + std::to_string(b) + ", warmup " + std::to_string(W) + "/" +
                               std::to_string(S_) + " steps, trying " + std::to_string(kept) + "/" +
                               std::to_string(nk) + " key blocks",
                           remaining + reserve);
        });
    ++pairs_done_;
    if (f.kept == 0) return true;  // even the largest allowed budget misses the bound here
    hi_kept_[b] = f.kept;
    TuneCandidate c;
    c.block_size = b;
    c.warmup_fraction = fraction;
    c.warmup_steps = W;
    c.blocks_kept = f.kept;
    c.topk_ratio = ratio_for(f.kept, nk);
    c.est_mean_cosine = f.mean;
    c.est_min_cosine = f.min;
    time_candidate(c, mass, t_lse + t_mass);
    res_.candidates.push_back(c);
    if (!best_ || c.est_run_ms < best_->est_run_ms) best_ = c;
    const double took = seconds_since(tp);
    pair_cost_s_ = pair_cost_s_ == 0 ? took : 0.7 * pair_cost_s_ + 0.3 * took;
    return true;
  }

  TuneResult no_setting_found() {
    res_.elapsed_s = seconds_since(t0_);
    res_.note = "no setting in the search space (top-k ratio up to " + std::to_string(o_.max_topk) +
                ", warmup up to " + std::to_string(warmups_.back().first) +
                ") met the accuracy bound on the sample steps";
    return res_;
  }

  // The best (warmup, block) again with the budget pooled across heads.
  void try_pooled_budget() {
    if (!o_.try_pooled_budget || best_->blocks_kept <= 1) return;
    const int64_t W = best_->warmup_steps, b = best_->block_size;
    progress_.report("block " + std::to_string(b) + ", pooled budget", verify_cost_s(best_->sparse_step_ms));
    const StepData rec = P_.load(W - 1);
    (void)record_lse(rec, kopt_);
    const BlockMass mass = masses(rec, b, kopt_);
    const int64_t nk = mass.k_blocks();
    // It must beat the per-head count to matter.
    const Found f = smallest_passing(
        std::min(blocks_for_ratio(o_.min_topk, nk), best_->blocks_kept - 1), best_->blocks_kept - 1, W,
        [&](int64_t kept) { return sparsed_select_pooled(mass, ratio_for(kept, nk)); }, [](int64_t) {});
    if (f.kept == 0) return;
    TuneCandidate c = *best_;
    c.pooled_budget = true;
    c.blocks_kept = f.kept;
    c.topk_ratio = ratio_for(f.kept, nk);
    c.est_mean_cosine = f.mean;
    c.est_min_cosine = f.min;
    // The dense pass and block masses are the per-head candidate's (one noisy
    // run each); only the selection differs.
    time_candidate(c, mass, best_->record_ms);
    res_.candidates.push_back(c);
    if (c.est_run_ms < best_->est_run_ms) best_ = c;
  }

  // The adaptive budget: per block size and dense-head share, the smallest
  // tau meeting the bound (bisection over o_.taus), at the best warmup, or at
  // each warmup in turn while nothing has met the bound.
  void try_adaptive_budget() {
    if (!o_.try_adaptive_budget || o_.taus.empty() || res_.budget_hit) return;
    for (const auto& [fraction, W] : warmups_) {
      if (best_ && W != best_->warmup_steps) continue;
      const StepData rec = P_.load(W - 1);
      const double t_lse = record_lse(rec, kopt_);
      for (int64_t b : o_.block_sizes) {
        if (seconds_since(t0_) + verify_cost_s(t_dense_ * 0.5) > o_.budget_s) {
          res_.budget_hit = true;
          return;
        }
        BlockMass mass;
        const double t_mass = median_ms(1, [&] { mass = masses(rec, b, kopt_); });
        for (double share : o_.dense_head_shares) adaptive_candidate(fraction, W, b, share, mass, t_lse + t_mass);
      }
      if (best_) return;
    }
  }

  void adaptive_candidate(double fraction, int64_t W, int64_t b, double share, const BlockMass& mass,
                          double record_base_ms) {
    const int64_t n = static_cast<int64_t>(o_.taus.size());
    TuneCandidate c;
    c.block_size = b;
    c.warmup_fraction = fraction;
    c.warmup_steps = W;
    c.dense_head_share = share;
    const Found f = smallest_passing(
        1, n, W,
        [&](int64_t i) {
          c.mass_tau = o_.taus[static_cast<size_t>(i - 1)];
          return select(mass, c);
        },
        [&](int64_t i) {
          progress_.report("block " + std::to_string(b) + ", adaptive budget tau " +
                               std::to_string(o_.taus[static_cast<size_t>(i - 1)]).substr(0, 4) + ", dense above " +
                               std::to_string(share).substr(0, 4),
                           verify_cost_s(best_ ? best_->sparse_step_ms : t_dense_ * 0.5));
        });
    if (f.kept == 0) return;
    c.mass_tau = o_.taus[static_cast<size_t>(f.kept - 1)];
    const BlockMask m = select(mass, c);
    c.topk_ratio = m.density();  // for the tables: the share of blocks it keeps
    c.blocks_kept = 0;
    c.est_mean_cosine = f.mean;
    c.est_min_cosine = f.min;
    time_candidate(c, mass, record_base_ms);
    res_.candidates.push_back(c);
    if (!best_ || c.est_run_ms < best_->est_run_ms) best_ = c;
  }

  // Threads for the chosen setting: the whole-run model per thread count.
  TuneCandidate choose_threads(TuneCandidate chosen) {
    progress_.report("timing threads", verify_cost_s(chosen.sparse_step_ms) + o_.reserve_dense_steps * t_dense_ / 1e3);
    const StepData rec = P_.load(chosen.warmup_steps - 1);
    const StepData& ts = timing_step();
    double best_run = std::numeric_limits<double>::infinity();
    int best_threads = kopt_.threads;
    for (int th : threads_) {
      KernelOptions k = kopt_;
      k.threads = th;
      const double td = median_ms(o_.reps, [&] {
        dense_attention(shape_, P_.q(ts), P_.k(ts), P_.v(ts), P_.out_view(out_), k);
      });
      BlockMask mask;
      const double trec = median_ms(1, [&] {
        (void)record_lse(rec, k);
        mask = select(masses(rec, chosen.block_size, k), chosen);
      });
      const double tsp = median_ms(o_.reps, [&] {
        block_sparse_attention(shape_, P_.q(ts), P_.k(ts), P_.v(ts), mask, P_.out_view(out_), k);
      });
      const double run = double(chosen.warmup_steps - 1) * td + trec + double(S_ - chosen.warmup_steps) * tsp;
      if (run < best_run) {
        best_run = run;
        best_threads = th;
        t_dense_ = td;
        chosen.record_ms = trec;
        chosen.sparse_step_ms = tsp;
        chosen.est_run_ms = run;
      }
    }
    kopt_.threads = best_threads;
    return chosen;
  }

  // The real session over every step; the top-k steps up when a step the
  // samples did not see falls below the bound.
  void verify(TuneCandidate& chosen) {
    SessionConfig cfg;
    cfg.policy = Policy::sparsed;
    cfg.total_steps = S_;
    cfg.block_size = chosen.block_size;
    cfg.warmup_fraction = chosen.warmup_fraction;
    cfg.pooled_budget = chosen.pooled_budget;
    if (chosen.mass_tau > 0) cfg.mass_budget = mass_budget(chosen);
    cfg.drift_check_every = o_.drift_check_every;
    cfg.drift_min_recall = o_.drift_min_recall;
    cfg.cache = o_.cache;
    cfg.kernel = kopt_;
    const int64_t nk = (shape_.kv_len + chosen.block_size - 1) / chosen.block_size;
    for (int attempt = 0; attempt <= o_.verify_retries; ++attempt) {
      cfg.topk_ratio = chosen.topk_ratio;
      EvalOptions eo;
      eo.max_steps = S_;
      eo.dtype = o_.dtype;
      eo.recall = false;
      eo.refresh_first_only = o_.refresh_first_only;
      const double vc = verify_cost_s(chosen.sparse_step_ms);
      eo.on_step = [&](const StepEval& e) {
        progress_.report("verifying on all " + std::to_string(S_) + " steps, step " + std::to_string(e.step + 1),
                         vc * double(S_ - e.step - 1) / double(S_) + o_.reserve_dense_steps * t_dense_ / 1e3);
      };
      res_.verify = evaluate(workload_, cfg, eo);
      res_.met = res_.verify.mean_cosine >= o_.min_mean_cosine && res_.verify.min_cosine >= o_.min_step_cosine;
      if (res_.met) break;
      if (chosen.mass_tau > 0) {  // step tau up to the next one tried
        auto next = std::upper_bound(o_.taus.begin(), o_.taus.end(), chosen.mass_tau);
        if (next == o_.taus.end() || attempt == o_.verify_retries) break;
        chosen.mass_tau = *next;
        cfg.mass_budget = mass_budget(chosen);
        res_.note += "verification missed the bound; stepped tau up to " + std::to_string(chosen.mass_tau) + ". ";
        continue;
      }
      if (chosen.blocks_kept >= nk) break;
      if (attempt == o_.verify_retries || seconds_since(t0_) + vc > o_.budget_s * 1.25) break;
      // Step up by ~25% (at least one block) and re-verify.
      chosen.blocks_kept = std::min(nk, std::max(chosen.blocks_kept + 1, (chosen.blocks_kept * 5 + 3) / 4));
      chosen.topk_ratio = ratio_for(chosen.blocks_kept, nk);
      res_.note += "verification missed the bound at " + std::to_string(res_.verify.min_cosine) +
                   " (min step cosine); stepped top-k up to " + std::to_string(chosen.blocks_kept) + "/" +
                   std::to_string(nk) + " blocks. ";
    }
    if (!res_.met) res_.note += "the chosen setting did not meet the bound on every step of the verification run";
    if (res_.budget_hit) res_.note += "the search stopped early to keep within the time budget. ";
  }

  void write_entry(const TuneCandidate& chosen) {
    res_.chosen = chosen;
    res_.dense_step_ms = t_dense_;
    ProfileEntry& e = res_.entry;
    e.shape = TunedShape{shape_.heads, shape_.kv_heads, shape_.kv_len, shape_.head_dim, S_};
    e.shape.dtype = dtype_name(o_.dtype);
    e.shape.cache = cache_mode_name(o_.cache);
    e.workload = workload_.describe();
    e.policy = policy_name(Policy::sparsed);
    e.min_mean_cosine = o_.min_mean_cosine;
    e.min_step_cosine = o_.min_step_cosine;
    e.block_size = chosen.block_size;
    e.topk_ratio = chosen.topk_ratio;
    e.warmup_fraction = chosen.warmup_fraction;
    e.q_tile_rows = kopt_.q_tile_rows;
    e.threads = kopt_.threads;
    e.pooled_budget = chosen.pooled_budget;
    e.mass_tau = chosen.mass_tau;
    e.dense_head_share = chosen.mass_tau > 0 ? chosen.dense_head_share : 1.0;
    e.drift_check_every = o_.drift_check_every;
    e.drift_min_recall = o_.drift_min_recall;
    set_measured(e, res_.verify);
  }

  const TuneOptions& o_;
  Clock::time_point t0_;
  ProgressReporter progress_;
  WorkloadSpec spec_;
  WorkloadSource workload_;
  int64_t S_;
  Problem P_;
  const AttentionShape& shape_;
  TuneResult res_;
  std::vector<int> threads_;
  KernelOptions kopt_;
  StepData last_;
  double load_s_ = 0;
  double t_dense_ = std::numeric_limits<double>::infinity();
  std::vector<std::pair<double, int64_t>> warmups_;  // (fraction, W)
  std::vector<StepData> samples_;
  std::vector<float> out_, lse_, lse_out_;
  std::optional<TuneCandidate> best_;
  std::map<int64_t, int64_t> hi_kept_;  // per block size: smallest passing count at a smaller warmup
  size_t pairs_total_ = 0, pairs_done_ = 0;
  double pair_cost_s_ = 0;  // running mean of a (warmup, block) search
};

}  // namespace

TuneResult tune(const TuneOptions& o) {
  validate(o);
  return Search(o).run();
}

void set_measured(ProfileEntry& e, const EvalResult& run) {
  e.dense_ms = run.dense_total_ms;
  e.sparse_ms = run.sparse_total_ms;
  e.speedup = run.speedup_vs_dense;
  e.mean_cosine = run.mean_cosine;
  e.min_cosine = run.min_cosine;
  e.mean_density = run.mean_density;
  e.tuned_at = utc_timestamp_now();
}

}  // namespace spattn
