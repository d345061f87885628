// Cached steps of the DiffusionAttention session (see cached_steps.hpp).
#include "patterns/cached_steps.hpp"

#include <algorithm>
#include <chrono>

#include "kernels/engine/engine.hpp"
#include "kernels/engine/kv_plan.hpp"
#include "kernels/validate.hpp"
#include "spattn/error.hpp"

namespace spattn::detail {
namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

// Share of (row, key block) pairs the rows visit on the pattern.
double rows_density(const BlockMask& p, std::span<const int32_t> rows) {
  double kept = 0.0;
  for (int64_t h = 0; h < p.heads; ++h)
    for (int32_t r : rows) kept += static_cast<double>(p.row(h, r / p.q_block).size());
  return kept / (static_cast<double>(p.heads) * static_cast<double>(rows.size()) * static_cast<double>(p.k_blocks()));
}

}  // namespace

CachedSteps::CachedSteps(const AttentionShape& shape, const SessionConfig& config)
    : shape_(shape), c_(config), warm_(warmup_steps_for(config)) {}

void CachedSteps::refresh(InputView k, InputView v) {
  if (!cache_) cache_.emplace(shape_.kv_heads, shape_.kv_len, shape_.head_dim, k.dtype, c_.block_size, c_.kernel);
  cache_->write(0, k, v, c_.kernel);
  drifted_ = false;
  sparse_steps_ = 0;
}

StepReport CachedSteps::run(int64_t s, std::span<const int32_t> rows, InputView q, InputView k, InputView v,
                            OutputView out, const BlockMask* pattern) {
  StepReport r;
  r.query_rows = static_cast<int64_t>(rows.size());
  cache_->write_rows(rows, k, v, c_.kernel);
  AttentionShape shape = shape_;
  shape.q_len = static_cast<int64_t>(rows.size());
  CachedQueries queries;
  queries.rows = rows;
  const bool sparse = s >= warm_ && pattern != nullptr && !drifted_;
  if (sparse && c_.drift_check_every > 0 && sparse_steps_ % c_.drift_check_every == c_.drift_check_every - 1) {
    const auto t0 = Clock::now();
    r.drift_recall = drift_recall(rows, q, *pattern);
    r.drift_ms = ms_since(t0);
    drifted_ = r.drift_recall < c_.drift_min_recall;  // dense until the next refresh re-records
  }
  if (sparse && !drifted_) {
    ++sparse_steps_;
    cached_block_sparse_attention(shape, q, *cache_, *pattern, out, queries, c_.kernel);
    r.path = StepPath::sparse_cached;
    r.density = rows_density(*pattern, rows);
    return r;
  }
  cached_attention(shape, q, *cache_, out, queries, c_.kernel);
  return r;  // dense
}

// The lowest per-head share of the exact attention mass that the pattern's
// rows keep, over up to 16 x drift_sample_blocks of the step's rows (spread
// over them, a different set at each check): one QK pass over those rows.
double CachedSteps::drift_recall(std::span<const int32_t> rows, InputView q, const BlockMask& p) {
  const auto n_rows = static_cast<int64_t>(rows.size());
  const int64_t n = std::min(n_rows, 16 * c_.drift_sample_blocks);
  std::vector<int32_t> picked;  // indices into rows, ascending
  for (int64_t j = 0; j < n; ++j) picked.push_back(static_cast<int32_t>((checks_ + j * n_rows / n) % n_rows));
  ++checks_;
  std::sort(picked.begin(), picked.end());
  picked.erase(std::unique(picked.begin(), picked.end()), picked.end());
  const int threads = resolve_threads(c_.kernel);
  const InputView qs = gather_tokens(q, picked, threads, sample_q_);
  AttentionShape ss = shape_;
  ss.q_len = static_cast<int64_t>(picked.size());
  constexpr int64_t kTile = 16;
  const int64_t tiles = (ss.q_len + kTile - 1) / kTile, nk = cache_->length();
  std::vector<double> kept(static_cast<size_t>(ss.heads * tiles), 0.0);  // one slot per tile: no sharing
  key_softmax_rows(ss, qs, cache_->plan(), kTile, 0.0f, {}, threads,
                   [&](int64_t h, int64_t r0, int rn, const float* probs, int64_t ld) {
                     double sum = 0.0;
                     for (int i = 0; i < rn; ++i) {
                       const int32_t pos = rows[static_cast<size_t>(picked[static_cast<size_t>(r0 + i)])];
                       for (int32_t kb : p.row(h, pos / p.q_block)) {
                         const int64_t c0 = kb * p.k_block, len = std::min(nk, c0 + p.k_block) - c0;
                         for (int64_t j = 0; j < len; ++j) sum += probs[i * ld + c0 + j];
                       }
                     }
                     kept[static_cast<size_t>(h * tiles + r0 / kTile)] = sum;
                   });
  double lowest = 1.0;
  for (int64_t h = 0; h < ss.heads; ++h) {
    double head = 0.0;
    for (int64_t t = 0; t < tiles; ++t) head += kept[static_cast<size_t>(h * tiles + t)];
    lowest = std::min(lowest, head / static_cast<double>(ss.q_len));
  }
  return lowest;
}

}  // namespace spattn::detail
