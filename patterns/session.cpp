// The DiffusionAttention session: which path each denoising step takes.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kernels/engine/phase_timer.hpp"
#include "kernels/validate.hpp"
#include "kernels/engine/kv_plan.hpp"
#include "patterns/cached_steps.hpp"
#include "patterns/step_policies.hpp"
#include "patterns/validate_params.hpp"
#include "spattn/error.hpp"
#include "spattn/session.hpp"

namespace spattn {
namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

bool uses_sparsed(Policy p) { return p == Policy::sparsed || p == Policy::dpad_sparsed; }
bool uses_dpad(Policy p) { return p == Policy::dpad || p == Policy::dpad_sparsed; }

}  // namespace

const char* policy_name(Policy p) {
  switch (p) {
    case Policy::dense: return "dense";
    case Policy::sparsed: return "sparsed";
    case Policy::unisparse: return "unisparse";
    case Policy::dpad: return "dpad";
    case Policy::dpad_sparsed: return "dpad+sparsed";
    case Policy::window: return "window";
  }
  return "unknown";
}

Policy parse_policy(const std::string& name) {
  for (Policy p : {Policy::dense, Policy::sparsed, Policy::unisparse, Policy::dpad,
                   Policy::dpad_sparsed, Policy::window})
    if (name == policy_name(p)) return p;
  throw_bad_argument("parse_policy", "policy", name,
                     "expected dense, sparsed, unisparse, dpad, dpad+sparsed or window");
}

const char* cache_mode_name(CacheMode m) {
  switch (m) {
    case CacheMode::none: return "none";
    case CacheMode::block: return "block";
    case CacheMode::dual: return "dual";
    case CacheMode::rows: return "rows";
  }
  return "unknown";
}

CacheMode parse_cache_mode(const std::string& name) {
  for (CacheMode m : {CacheMode::none, CacheMode::block, CacheMode::dual, CacheMode::rows})
    if (name == cache_mode_name(m)) return m;
  throw_bad_argument("parse_cache_mode", "cache", name, "expected none, block, dual or rows");
}

const char* step_path_name(StepPath p) {
  switch (p) {
    case StepPath::dense: return "dense";
    case StepPath::dense_record: return "dense+record";
    case StepPath::sparse_cached: return "sparse(cached)";
    case StepPath::sparse_selected: return "sparse(selected)";
    case StepPath::gathered: return "gathered";
  }
  return "unknown";
}

void SessionConfig::validate() const {
  const char* w = "SessionConfig";
  if (total_steps <= 0)
    throw_bad_argument(w, "total_steps", std::to_string(total_steps), "must be positive");
  if (!(warmup_fraction >= 0.0 && warmup_fraction < 1.0))
    throw_bad_argument(w, "warmup_fraction", std::to_string(warmup_fraction), "must be in [0, 1)");
  if (refresh_every < 0)
    throw_bad_argument(w, "refresh_every", std::to_string(refresh_every), "must be >= 0");
  check_block_size(w, "block_size", block_size);
  if (!(topk_ratio > 0.0 && topk_ratio <= 1.0))
    throw_bad_argument(w, "topk_ratio", std::to_string(topk_ratio), "must be in (0, 1]");
  if (mass_budget) {
    mass_budget->validate(w, "mass_budget.");
    if (pooled_budget)
      throw_bad_argument(w, "pooled_budget", "true", "cannot be combined with mass_budget (choose one budget)");
  }
  if (drift_check_every < 0)
    throw_bad_argument(w, "drift_check_every", std::to_string(drift_check_every), "must be >= 0 (0: no checks)");
  if (drift_check_every > 0) {
    if (drift_sample_blocks < 1)
      throw_bad_argument(w, "drift_sample_blocks", std::to_string(drift_sample_blocks), "must be >= 1");
    if (!(drift_min_recall >= 0.0 && drift_min_recall <= 1.0))
      throw_bad_argument(w, "drift_min_recall", detail::fmt_param(drift_min_recall), "must be in [0, 1]");
  }
  if (warmup_steps < -1)
    throw_bad_argument(w, "warmup_steps", std::to_string(warmup_steps), "must be >= 0, or -1 (from warmup_fraction)");
  if (paper_select) {
    if (pooled_budget || mass_budget)
      throw_bad_argument(w, "paper_select", "true", "cannot be combined with pooled_budget or mass_budget (choose one rule)");
    if (paper_prefix_len < 0)
      throw_bad_argument(w, "paper_prefix_len", std::to_string(paper_prefix_len), "must be >= 0");
  }
  detail::validate_dpad_rule(w, "dpad.", dpad);
  // A Policy cast from an integer (the C API, a config file) may be out of range.
  if (std::string_view(policy_name(policy)) == "unknown")
    throw_bad_argument(w, "policy", std::to_string(static_cast<int>(policy)),
                       "not a Policy value (dense, sparsed, unisparse, dpad, dpad+sparsed, window)");
  if (std::string_view(cache_mode_name(cache)) == "unknown")
    throw_bad_argument(w, "cache", std::to_string(static_cast<int>(cache)), "not a CacheMode value (none, block, dual, rows)");
  if (cache != CacheMode::none && uses_dpad(policy))
    throw_bad_argument(w, "cache", cache_mode_name(cache),
                       std::string("cached decoding does not run the DPad policies yet (policy ") + policy_name(policy) +
                           "): use dense, sparsed, unisparse or window");
  // Kernel options and the selected policy's parameters are checked here too,
  // so a bad value fails at construction, not at the first step that uses it.
  check_thread_count(w, "kernel.threads", kernel.threads);
  detail::check_tile_options(w, "kernel.", kernel);  // 0: preferred_tiles
  if (policy == Policy::unisparse) {
    UnisparseParams u = unisparse;
    u.block_size = block_size;  // the session overrides it
    detail::validate_unisparse_params(w, "unisparse.", u);
  }
  if (policy == Policy::window) {
    WindowSinkParams p = window;
    p.block_size = block_size;
    detail::validate_window_sink_params(w, "window.", p);
  }
}

DiffusionAttention::DiffusionAttention(const AttentionShape& shape, const SessionConfig& config)
    : shape_(shape), config_(config) {
  shape_.validate();
  // Diffusion decoding is bidirectional, and the session's record / drift /
  // DPad steps assume it. Causal prefill runs the kernels and patterns directly.
  if (shape_.causal)
    throw_bad_argument("DiffusionAttention", "shape.causal", "true",
                       "the session serves bidirectional diffusion decoding; for causal prefill call "
                       "dense_attention / block_sparse_attention with a causal shape and a pattern");
  config_.validate();
  // Every path runs the hand-vectorized kernels: refuse what they cannot run now.
  // (Tiles left 0 resolve per step, for that step's K/V dtype.)
  detail::check_dense_tiles("DiffusionAttention", shape_, config_.kernel, DType::fp32);
  config_.unisparse.block_size = config_.block_size;
  config_.window.block_size = config_.block_size;
  if (uses_dpad(config_.policy)) {
    // DPad drops tokens from the step as queries and as keys: both are the
    // same sequence, as in a diffusion LM. Anything else is refused here, not
    // read out of bounds at the first step.
    if (shape_.q_len != shape_.kv_len)
      throw_bad_argument("DiffusionAttention", "shape.q_len", std::to_string(shape_.q_len),
                         "must equal shape.kv_len " + std::to_string(shape_.kv_len) +
                             " for the DPad policies (queries and keys are the same tokens)");
    dpad_kept_tokens(shape_.kv_len, config_.dpad);  // validates early
  }
  policy_ = detail::make_step_policy(config_);
  if (config_.cache != CacheMode::none) cached_ = std::make_unique<detail::CachedSteps>(shape_, config_);
}

int64_t warmup_steps_for(Policy policy, double warmup_fraction, int64_t total_steps) {
  int64_t w = static_cast<int64_t>(std::ceil(warmup_fraction * static_cast<double>(total_steps) - 1e-9));
  if (uses_sparsed(policy)) w = std::max<int64_t>(w, 1);  // SparseD needs one full step
  return std::min(w, total_steps);
}

int64_t warmup_steps_for(const SessionConfig& c) {
  if (c.warmup_steps < 0) return warmup_steps_for(c.policy, c.warmup_fraction, c.total_steps);
  const int64_t w = uses_sparsed(c.policy) ? std::max<int64_t>(c.warmup_steps, 1) : c.warmup_steps;
  return std::min(w, c.total_steps);
}

int64_t DiffusionAttention::warmup_steps() const { return warmup_steps_for(config_); }

void DiffusionAttention::set_decoding_block(int64_t begin, int64_t end) {
  if (begin < 0 || end <= begin || end > shape_.kv_len)
    throw_bad_argument("DiffusionAttention::set_decoding_block", "block",
                       "[" + std::to_string(begin) + ", " + std::to_string(end) + ")",
                       "must satisfy 0 <= begin < end <= kv_len " + std::to_string(shape_.kv_len));
  policy_->set_decoding_block(begin, end);
  block_begin_ = begin;
  block_end_ = end;
}

void DiffusionAttention::set_query_rows(std::vector<int32_t> rows) {
  detail::check_positions("DiffusionAttention::set_query_rows", "rows", rows, shape_.kv_len, "kv_len");
  query_rows_ = std::move(rows);
}

std::vector<int32_t> DiffusionAttention::cached_rows() const {
  if (config_.cache == CacheMode::rows) return query_rows_;
  if (block_begin_ < 0) return {};
  const int64_t end = config_.cache == CacheMode::block ? shape_.kv_len : block_end_;
  std::vector<int32_t> rows;
  for (int64_t t = block_begin_; t < end; ++t) rows.push_back(static_cast<int32_t>(t));
  return rows;
}

const KVCache* DiffusionAttention::kv_cache() const { return cached_ ? cached_->cache() : nullptr; }

void DiffusionAttention::set_dpad(const DpadParams& params) {
  dpad_kept_tokens(shape_.kv_len, params);  // validates
  config_.dpad = params;
  policy_->set_dpad(params);
}

StepReport DiffusionAttention::step(InputView q, InputView k, InputView v, OutputView out) {
  // The arguments first, then the session's state. The DPad policies read
  // q, k and v themselves before any kernel runs.
  const detail::PhaseTimer timer("session_step");
  detail::check_views("DiffusionAttention::step", shape_, q, k, v, out);
  const int64_t s = steps_done();
  if (s >= config_.total_steps)
    throw_bad_argument("DiffusionAttention::step", "step", std::to_string(s),
                       "past total_steps " + std::to_string(config_.total_steps));
  const auto t0 = Clock::now();
  // With a cache the refresh comes first (part of the step's time), and the
  // step reads the cache instead of packing K/V a second time.
  if (cached_) cached_->refresh(k, v);
  const detail::KVPlan* plan = cached_ ? &cached_->cache()->plan() : nullptr;
  StepReport r = policy_->run(s, detail::StepTensors{shape_, q, k, v, out, plan});
  r.step = s;
  r.ms = ms_since(t0);
  r.query_rows = uses_dpad(config_.policy) ? static_cast<int64_t>(policy_->dpad_kept().size()) : shape_.q_len;
  const bool sparse = r.path == StepPath::sparse_cached || r.path == StepPath::sparse_selected;
  last_mask_ = sparse ? policy_->last_mask() : nullptr;
  refresh_mask_ = r.path == StepPath::sparse_selected ? last_mask_ : nullptr;
  reports_.push_back(r);
  return r;
}

StepReport DiffusionAttention::cached_step(InputView q, InputView k, InputView v, OutputView out) {
  const char* where = "DiffusionAttention::cached_step";
  const detail::PhaseTimer timer("session_cached_step");
  if (!cached_)
    throw_bad_argument(where, "config.cache", "none", "a cached step needs a cache mode (block, dual or rows)");
  if (cached_->cache() == nullptr)
    throw_bad_argument(where, "step", std::to_string(steps_done()), "the first step must be a full step() (the refresh)");
  const std::vector<int32_t> rows = cached_rows();
  if (rows.empty())
    throw_bad_argument(where, "rows", "none",
                       config_.cache == CacheMode::rows ? "set_query_rows() lists no rows"
                                                        : "set_decoding_block() first: the mode follows the decoding block");
  AttentionShape s = shape_;
  s.q_len = s.kv_len = static_cast<int64_t>(rows.size());
  detail::check_views(where, s, q, k, v, out);
  const int64_t step = steps_done();
  if (step >= config_.total_steps)
    throw_bad_argument(where, "step", std::to_string(step), "past total_steps " + std::to_string(config_.total_steps));
  // The refresh's pattern: SparseD's recorded one, else the selected mask of
  // a step that selected one (UniSparse, window); over the full keys only.
  const BlockMask* pattern = policy_->cached_pattern() != nullptr ? policy_->cached_pattern() : refresh_mask_;
  const auto t0 = Clock::now();
  StepReport r = cached_->run(step, rows, q, k, v, out, pattern);
  r.step = step;
  r.ms = ms_since(t0);
  last_mask_ = r.path == StepPath::sparse_cached ? pattern : nullptr;
  reports_.push_back(r);
  return r;
}

const BlockMask* DiffusionAttention::cached_pattern() const { return policy_->cached_pattern(); }
const std::vector<int32_t>& DiffusionAttention::dpad_kept() const { return policy_->dpad_kept(); }

DiffusionAttention::~DiffusionAttention() = default;
DiffusionAttention::DiffusionAttention(DiffusionAttention&&) noexcept = default;
DiffusionAttention& DiffusionAttention::operator=(DiffusionAttention&&) noexcept = default;

}  // namespace spattn
