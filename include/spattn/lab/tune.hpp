#pragma once
// The autotuner: finds the fastest SparseD setting (block size, top-k ratio,
// warmup fraction, query tile rows, threads) whose whole denoising run stays
// within an accuracy bound against dense attention, on this machine, for one
// shape and workload. spattn-tune is a thin CLI over tune().
//
// How it searches (why it is cheap enough to run in about two minutes):
//  - Accuracy is monotone in the top-k ratio and in the warmup fraction, so for
//    each (warmup, block size) the smallest number of key blocks per query
//    block that meets the bound is found by bisection over integers, and a
//    larger warmup starts its bisection below the previous answer.
//  - The pattern of a warmup fraction is recorded once (one dense pass with
//    log-sum-exp, one QK pass per block size) and every top-k is a cheap
//    selection from those exact block masses.
//  - Accuracy during the search is judged on a few sample steps (spread over
//    the sparse part of the run, the last step always included), against the
//    dense flash output of each; the chosen setting is then re-run through a
//    real DiffusionAttention session over every step (verification), and
//    stepped up if a step the samples missed falls below the bound.
//  - The best setting is then bisected again with the budget pooled across
//    heads (sparsed_select_pooled): diffuse heads get more blocks, sharp ones
//    fewer; it is kept when it needs fewer blocks and runs faster.
//  - Then the adaptive budget (per row the blocks holding tau of its mass, a
//    head above dense_head_share of the blocks running dense) is bisected
//    over tau for each block size and share; it is kept when it runs faster.
//  - The objective is the whole run's attention time, modelled from medians of
//    repeated timings: (W - 1) dense steps + the record step (dense + block
//    masses + selection) + (S - W) block-sparse steps. The verification run
//    measures the real whole-run time next to dense in the same run.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "spattn/lab/evaluate.hpp"
#include "spattn/profile.hpp"

namespace spattn {

struct TuneProgress {
  double fraction = 0;   // 0..1 of the planned work
  double elapsed_s = 0;
  double eta_s = 0;      // estimated seconds left
  std::string phase;     // what runs now
};

struct TuneOptions {
  WorkloadSpec workload;         // synthetic (default) or a folder of .npy steps
  // Q, K, V are rounded to this dtype for every timing and accuracy run (the
  // reference is dense at the same dtype); entries record it (shape.dtype).
  DType dtype = DType::fp32;
  int64_t steps = 64;            // S, denoising steps of the tuned run (npy: at most its step folders)
  double min_mean_cosine = 0.99; // accuracy bound against dense, over all S steps
  double min_step_cosine = 0.98; // and for every single step
  std::vector<int64_t> block_sizes = {16, 32, 64, 128};
  double min_topk = 0.01, max_topk = 0.5;                 // top-k ratio range searched
  std::vector<double> warmup_fractions = {0.0, 0.1, 0.2, 0.3, 0.4};
  std::vector<int64_t> q_tiles = {32, 64, 128};           // dense query tile rows tried
  std::vector<int> threads;      // thread counts tried; empty: 1, 2, 4, ... and the core count
  int reps = 5;                  // repetitions per timing (median)
  int sample_steps = 4;          // steps the search judges accuracy on
  int64_t sample_memory_bytes = int64_t{3} << 30;  // cap on cached sample inputs
  double budget_s = 120;         // wall-clock budget of the whole tune
  double reserve_dense_steps = 0;  // work the caller does after tune() within budget_s, in dense steps
  int verify_retries = 3;        // top-k step-ups when verification misses the bound
  bool try_pooled_budget = true; // also bisect the best setting with the budget pooled across heads
  // The adaptive budget (sparsed_select_mass): for each block size at the
  // chosen warmup (or, when no top-k setting met the bound, at each warmup)
  // and each dense_head_share, the smallest tau that meets the bound. Learned
  // attention mixes sharp and diffuse heads, where a fixed top-k is either
  // wasteful or unsafe; a head above the share runs dense.
  bool try_adaptive_budget = true;
  std::vector<double> taus = {0.9, 0.93, 0.95, 0.97, 0.98, 0.99};  // ascending
  std::vector<double> dense_head_shares = {0.3, 0.5, 1.0};
  // The chosen setting carries a drift check every this many sparse steps
  // (0: none): learned attention drifts across decoding blocks (the traces'
  // first layer loses a third of its mass on a pattern that held when it was
  // recorded), and a check costs about 1.5% of a dense step per sampled
  // block at N 4096. The verification run, and so the measured whole-run
  // time, includes the checks and any re-record they cause.
  int64_t drift_check_every = 1;
  double drift_min_recall = 0.9;
  // Cached decoding (SessionConfig::cache; EvalOptions::refresh_first_only):
  // the verification run, whose figures the entry records, runs the mode's
  // cached steps; the search's samples and time model are full steps.
  CacheMode cache = CacheMode::none;
  bool refresh_first_only = false;
  std::function<void(const TuneProgress&)> on_progress;
};

struct TuneCandidate {
  int64_t block_size = 0;
  double warmup_fraction = 0;
  int64_t warmup_steps = 0;
  bool pooled_budget = false;    // blocks_kept per head on average, pooled across heads
  double mass_tau = 0;           // > 0: the adaptive budget (blocks_kept / topk_ratio unused)
  double dense_head_share = 1;   // with mass_tau
  int64_t blocks_kept = 0;       // key blocks per query block
  double topk_ratio = 0;         // blocks_kept / key blocks
  double est_mean_cosine = 0, est_min_cosine = 0;  // from the sample steps
  double sparse_step_ms = 0;     // median block-sparse step
  double record_ms = 0;          // dense + block masses + selection
  double est_run_ms = 0;         // modelled whole run
};

struct TuneResult {
  bool met = false;                 // a setting met the bound on verification
  ProfileEntry entry;               // chosen setting and what was measured (valid when met)
  TuneCandidate chosen;
  std::vector<TuneCandidate> candidates;  // best feasible one per (warmup, block size) searched
  EvalResult verify;                // the verification run of the chosen setting
  double dense_step_ms = 0;         // median dense flash step at the chosen tiles and threads
  int accuracy_evals = 0;           // (candidate, sample steps) accuracy checks run
  bool budget_hit = false;          // the search stopped early to stay within budget_s
  double elapsed_s = 0;
  std::string note;                 // why nothing met the bound, what was cut short, etc.
};

// Throws spattn::Error on bad options or workload. Never writes files.
TuneResult tune(const TuneOptions& options);

// ---------------------------------------------------------------------------
// A whole model: one setting per layer of a captured trace (spattn-tune --npy
// DIR --layers ...). Learned attention differs by layer (some diffuse, some
// drifting across decoding blocks), so each layer gets the cheapest adaptive
// budget that keeps the bound on every step, or runs dense when none does or
// when sparse is not faster. The pattern is recorded at the first step the
// way the session does it (warmup_fraction), and every candidate is judged by
// a real session over all the trace's steps next to dense.
struct LayerTuneOptions {
  std::string npy_dir;
  DType dtype = DType::fp32;  // as TuneOptions::dtype
  std::vector<int> layers;  // empty: every layer found
  int64_t steps = 0;        // 0: every step folder
  double min_mean_cosine = 0.995;
  double min_step_cosine = 0.99;
  int64_t block_size = 64;
  double warmup_fraction = 0.0;  // 0: the pattern is recorded at step 0
  std::vector<double> taus = {0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99};  // tried ascending
  double dense_head_share = 1.0;  // MassBudget::dense_head_share of every candidate
  // Optionally also a bound on the mean attention-mass recall of the sparse
  // steps (the share of each row's mass the pattern keeps): 0, off.
  double min_mean_recall = 0.0;
  int64_t drift_check_every = 0;  // SessionConfig::drift_check_every of every candidate (0: none)
  // Every candidate's run in this cache mode (entries record it); cached
  // steps need the trace's decoding blocks (WorkloadSpec's npy_prompt_len,
  // npy_steps_per_block, synthetic.decode_block).
  CacheMode cache = CacheMode::none;
  bool refresh_first_only = false;
  int64_t npy_prompt_len = 0, npy_steps_per_block = 0, decode_block = 512;
  KernelOptions kernel;
  std::function<void(const std::string&)> on_progress;  // one line per candidate
};

struct LayerChoice {
  int layer = -1;
  bool dense = false;   // no candidate met the bound faster than dense
  double tau = 0;       // the chosen adaptive budget (when !dense)
  EvalResult result;    // the chosen setting's run (dense: the dense run)
  std::vector<std::pair<double, EvalResult>> tried;  // every candidate, by tau
};

struct LayerTuneResult {
  std::vector<LayerChoice> layers;
  double sparse_total_ms = 0, dense_total_ms = 0;  // attention over all layers and steps
  std::vector<ProfileEntry> entries;               // one per layer (policy sparsed or dense)
};

LayerTuneResult tune_layers(const LayerTuneOptions& options);

// The measured part of a profile entry from a session run next to dense
// (dense_ms, sparse_ms, speedup, cosines, density) and tuned_at = now.
void set_measured(ProfileEntry& e, const EvalResult& run);

}  // namespace spattn
