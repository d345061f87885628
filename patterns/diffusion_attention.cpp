// The DiffusionAttention session: which path each denoising step takes.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>
#include <string_view>

#include "kernels/validate.hpp"
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
  if (!is_supported_block_size(block_size))
    throw_bad_argument(w, "block_size", std::to_string(block_size), "must be 16, 32, 64 or 128");
  if (!(topk_ratio > 0.0 && topk_ratio <= 1.0))
    throw_bad_argument(w, "topk_ratio", std::to_string(topk_ratio), "must be in (0, 1]");
  if (dpad.window < 0) throw_bad_argument(w, "dpad.window", std::to_string(dpad.window), "must be >= 0");
  if (!(dpad.sigma > 0.0) || !std::isfinite(dpad.sigma))
    throw_bad_argument(w, "dpad.sigma", std::to_string(dpad.sigma), "must be positive and finite");
  // A Policy cast from an integer (the C API, a config file) may be out of range.
  if (std::string_view(policy_name(policy)) == "unknown")
    throw_bad_argument(w, "policy", std::to_string(static_cast<int>(policy)),
                       "not a Policy value (dense, sparsed, unisparse, dpad, dpad+sparsed, window)");
  // Kernel options and the selected policy's parameters are checked here too,
  // so a bad value fails at construction, not at the first step that uses it.
  if (kernel.threads < 0)
    throw_bad_argument(w, "kernel.threads", std::to_string(kernel.threads), "must be >= 0 (0: default)");
  if (!is_supported_block_size(kernel.q_block))
    throw_bad_argument(w, "kernel.q_block", std::to_string(kernel.q_block), "must be 16, 32, 64 or 128");
  if (!is_supported_block_size(kernel.k_block))
    throw_bad_argument(w, "kernel.k_block", std::to_string(kernel.k_block), "must be 16, 32, 64 or 128");
  if (policy == Policy::unisparse) {
    UnisparseParams u = unisparse;
    u.block = block_size;  // the session overrides it
    detail::validate_unisparse_params(w, "unisparse.", u);
  }
  if (policy == Policy::window) {
    WindowSinkParams p = window;
    p.block = block_size;
    detail::validate_window_sink_params(w, "window.", p);
  }
}

DiffusionAttention::DiffusionAttention(const AttentionShape& shape, const SessionConfig& config)
    : shape_(shape), config_(config) {
  shape_.validate();
  config_.validate();
  // Every path runs the hand-vectorized kernels: refuse what they cannot run now.
  detail::check_kernel_limits("DiffusionAttention", shape_, config_.kernel.q_block, config_.kernel.k_block);
  config_.unisparse.block = config_.block_size;
  config_.window.block = config_.block_size;
  if (uses_dpad(config_.policy)) dpad_kept_tokens(shape_.kv_len, config_.dpad);  // validates early
}

int64_t warmup_steps_for(Policy policy, double warmup_fraction, int64_t total_steps) {
  int64_t w = static_cast<int64_t>(std::ceil(warmup_fraction * static_cast<double>(total_steps) - 1e-9));
  if (uses_sparsed(policy)) w = std::max<int64_t>(w, 1);  // SparseD needs one full step
  return std::min(w, total_steps);
}

int64_t DiffusionAttention::warmup_steps() const {
  return warmup_steps_for(config_.policy, config_.warmup_fraction, config_.total_steps);
}

void DiffusionAttention::set_dpad(const DpadParams& params) {
  dpad_kept_tokens(shape_.kv_len, params);  // validates
  config_.dpad = params;
  kept_dirty_ = true;
}

StepReport DiffusionAttention::run_sparsed(int64_t s, ConstTensorView q, ConstTensorView k,
                                           ConstTensorView v, TensorView out,
                                           const AttentionShape& shape) {
  StepReport r;
  r.step = s;
  const int64_t warm = warmup_steps();
  const int64_t R = config_.refresh_every;
  const bool record = s == warm - 1 || (s >= warm && !pattern_) ||
                      (R > 0 && s >= warm && s - last_record_step_ > R);
  const auto t0 = Clock::now();
  if (s < warm - 1) {
    dense_attention(shape, q, k, v, out, config_.kernel);
    r.path = StepPath::dense;
  } else if (record) {
    lse_.resize(static_cast<size_t>(shape.heads * shape.q_len));
    dense_attention_with_lse(shape, q, k, v, out, lse_.data(), config_.kernel);
    const auto t1 = Clock::now();
    const BlockMass mass = block_attention_mass_from_lse(shape, q, k, lse_.data(), config_.block_size,
                                                         config_.block_size, config_.kernel);
    pattern_ = config_.pooled_budget ? sparsed_select_pooled(mass, config_.topk_ratio)
                                     : sparsed_select(mass, config_.topk_ratio);
    r.select_ms = ms_since(t1);
    r.path = StepPath::dense_record;
    last_record_step_ = s;
  } else {
    block_sparse_attention(shape, q, k, v, *pattern_, out, config_.kernel);
    r.path = StepPath::sparse_cached;
    r.density = pattern_->density();
  }
  r.ms = ms_since(t0);
  return r;
}

AttentionShape DiffusionAttention::compact_inputs(ConstTensorView q, ConstTensorView k, ConstTensorView v) {
  const int64_t n = static_cast<int64_t>(kept_.size()), d = shape_.head_dim;
  qc_.resize(static_cast<size_t>(shape_.heads * n * d));
  oc_.resize(qc_.size());
  kc_.resize(static_cast<size_t>(shape_.kv_heads * n * d));
  vc_.resize(kc_.size());
  const int threads = resolve_threads(config_.kernel);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t item = 0; item < shape_.heads * n; ++item) {
    const int64_t h = item / n, i = item % n;
    std::copy_n(q.row(h, kept_[i]), d, qc_.data() + item * d);
    if (h < shape_.kv_heads) {
      std::copy_n(k.row(h, kept_[i]), d, kc_.data() + item * d);
      std::copy_n(v.row(h, kept_[i]), d, vc_.data() + item * d);
    }
  }
  AttentionShape cs = shape_;
  cs.q_len = cs.kv_len = n;
  return cs;
}

ConstTensorView DiffusionAttention::compact_view(const std::vector<float>& t, int64_t heads,
                                                 const AttentionShape& cs) const {
  return ConstTensorView::heads_major(t.data(), heads, cs.q_len, cs.head_dim);
}

void DiffusionAttention::scatter_output(TensorView out) const {
  const int64_t n = static_cast<int64_t>(kept_.size()), d = shape_.head_dim;
  const int threads = resolve_threads(config_.kernel);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t h = 0; h < shape_.heads; ++h) {
    int64_t i = 0;
    for (int64_t t = 0; t < shape_.q_len; ++t) {
      float* row = out.row(h, t);
      if (i < n && kept_[i] == t) {
        std::copy_n(oc_.data() + (h * n + i) * d, d, row);
        ++i;
      } else {
        std::fill_n(row, d, 0.0f);  // a token DPad dropped: not part of this step
      }
    }
  }
}

StepReport DiffusionAttention::step(ConstTensorView q, ConstTensorView k, ConstTensorView v,
                                    TensorView out) {
  const int64_t s = steps_done();
  if (s >= config_.total_steps)
    throw_bad_argument("DiffusionAttention::step", "step", std::to_string(s),
                       "past total_steps " + std::to_string(config_.total_steps));
  // The dpad+sparsed path reads k and v itself before any kernel runs.
  detail::check_views("DiffusionAttention::step", shape_, q, k, v, out);
  const auto t0 = Clock::now();
  const bool warm = s < warmup_steps();
  if (uses_dpad(config_.policy) && kept_dirty_) {
    kept_ = dpad_kept_tokens(shape_.kv_len, config_.dpad);
    kept_dirty_ = false;
    pattern_.reset();  // the compacted keys changed: the SparseD pattern must be re-recorded
  }
  StepReport r;
  r.step = s;
  switch (config_.policy) {
    case Policy::dense:
      dense_attention(shape_, q, k, v, out, config_.kernel);
      break;
    case Policy::sparsed:
      r = run_sparsed(s, q, k, v, out, shape_);
      break;
    case Policy::dpad_sparsed: {
      if (kept_.empty()) {  // DPad kept nothing: no token takes part in this step
        scatter_output(out);
        r.path = StepPath::gathered;
        r.density = 0;
        break;
      }
      // DPad removes the dropped suffix tokens from the step (as queries and
      // as keys); SparseD then runs over the kept tokens.
      const AttentionShape cs = compact_inputs(q, k, v);
      const TensorView oc = TensorView::heads_major(oc_.data(), cs.heads, cs.q_len, cs.head_dim);
      r = run_sparsed(s, compact_view(qc_, cs.heads, cs), compact_view(kc_, cs.kv_heads, cs),
                      compact_view(vc_, cs.kv_heads, cs), oc, cs);
      scatter_output(out);
      const double kept_share = static_cast<double>(cs.kv_len) / static_cast<double>(shape_.kv_len);
      r.density *= kept_share * kept_share;
      break;
    }
    case Policy::unisparse:
    case Policy::window:
      if (warm) {
        dense_attention(shape_, q, k, v, out, config_.kernel);
      } else {
        const auto t1 = Clock::now();
        selected_ = config_.policy == Policy::unisparse
                        ? unisparse_select(shape_, q, k, config_.unisparse, config_.kernel)
                        : window_sink_mask(shape_, config_.window);
        r.select_ms = ms_since(t1);
        block_sparse_attention(shape_, q, k, v, *selected_, out, config_.kernel);
        r.path = StepPath::sparse_selected;
        r.density = selected_->density();
      }
      break;
    case Policy::dpad:
      if (warm) {
        dense_attention(shape_, q, k, v, out, config_.kernel);
      } else if (kept_.empty()) {
        scatter_output(out);
        r.path = StepPath::gathered;
        r.density = 0;
      } else {
        const AttentionShape cs = compact_inputs(q, k, v);
        dense_attention(cs, compact_view(qc_, cs.heads, cs), compact_view(kc_, cs.kv_heads, cs),
                        compact_view(vc_, cs.kv_heads, cs),
                        TensorView::heads_major(oc_.data(), cs.heads, cs.q_len, cs.head_dim), config_.kernel);
        scatter_output(out);
        r.path = StepPath::gathered;
        const double kept_share = static_cast<double>(cs.kv_len) / static_cast<double>(shape_.kv_len);
        r.density = kept_share * kept_share;
      }
      break;
  }
  r.ms = ms_since(t0);
  last_mask_ = r.path == StepPath::sparse_selected ? &*selected_
               : r.path == StepPath::sparse_cached && config_.policy == Policy::sparsed ? &*pattern_
                                                                                       : nullptr;
  reports_.push_back(r);
  return r;
}

}  // namespace spattn
