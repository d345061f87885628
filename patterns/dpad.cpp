// DPad (diffusion scratchpad): which key tokens a block-wise diffusion step
// keeps, decided before attention from positions alone.
//
// Regions, for a token at position t:
//  - [0, block_start): the prompt [0, prefix_len) and the blocks decoded
//    before the current one: always kept (decoded content).
//  - [block_start, block_end): the current block: always kept.
//  - suffix t >= block_end at distance dist = t - block_end + 1 (the first
//    suffix token has distance 1): kept if dist <= window, else kept with
//    probability exp(-(dist - window)^2 / (2 sigma^2)).
//
// The draw for token t is u(seed, t) < p(t), with u a counter-based hash of
// (seed, t) mapped to [0, 1) (53 bits): the decision for t depends on nothing
// else, so it is the same for any kv_len and any order of evaluation.
//
// The DPad paper shapes the keep probability as a Gaussian over the suffix
// window itself and drops everything beyond; this library's variant keeps a
// dense window and lets the Gaussian tail decide farther tokens, which gives
// the paper's behaviour with window = 0 and sigma ~ W / 3.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "patterns/validate_params.hpp"
#include "spattn/error.hpp"
#include "spattn/patterns.hpp"

namespace spattn {
namespace {

void validate_params(const char* where, const DpadParams& p) {
  auto num = [](int64_t v) { return std::to_string(v); };
  if (p.prefix_len < 0) throw_bad_argument(where, "params.prefix_len", num(p.prefix_len), "must be >= 0");
  if (p.block_start < 0)
    throw_bad_argument(where, "params.block_start", num(p.block_start), "must be >= 0");
  if (p.prefix_len > p.block_start)
    throw_bad_argument(where, "params.prefix_len", num(p.prefix_len),
                       "must be <= params.block_start = " + num(p.block_start));
  if (p.block_start > p.block_end)
    throw_bad_argument(where, "params.block_start", num(p.block_start),
                       "must be <= params.block_end = " + num(p.block_end));
  if (p.window < 0) throw_bad_argument(where, "params.window", num(p.window), "must be >= 0");
  if (!(p.sigma > 0.0) || !std::isfinite(p.sigma))
    throw_bad_argument(where, "params.sigma", detail::fmt_param(p.sigma), "must be positive and finite");
}

// Keep probability; params already validated, t >= 0.
double keep_probability(int64_t t, const DpadParams& p) {
  if (t < p.block_end) return 1.0;
  const double dist = static_cast<double>(t - p.block_end + 1);
  const double w = static_cast<double>(p.window);
  if (dist <= w) return 1.0;
  const double x = (dist - w) / p.sigma;
  return std::exp(-0.5 * x * x);
}

// splitmix64's finalizer: a bijection on 64 bits with full avalanche.
uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Uniform in [0, 1), a function of (seed, t) only.
double uniform(uint64_t seed, int64_t t) {
  const uint64_t h = mix64(mix64(seed) + 0x9e3779b97f4a7c15ULL * (static_cast<uint64_t>(t) + 1));
  return static_cast<double>(h >> 11) * 0x1.0p-53;
}

}  // namespace

double dpad_keep_probability(int64_t t, const DpadParams& params) {
  validate_params("dpad_keep_probability", params);
  if (t < 0) throw_bad_argument("dpad_keep_probability", "t", std::to_string(t), "must be >= 0");
  return keep_probability(t, params);
}

std::vector<int32_t> dpad_kept_tokens(int64_t kv_len, const DpadParams& params) {
  const char* where = "dpad_kept_tokens";
  if (kv_len < 0 || kv_len > std::numeric_limits<int32_t>::max())
    throw_bad_argument(where, "kv_len", std::to_string(kv_len), "must be in [0, 2^31 - 1]");
  validate_params(where, params);
  if (params.block_end > kv_len)
    throw_bad_argument(where, "params.block_end", std::to_string(params.block_end),
                       "must be <= kv_len = " + std::to_string(kv_len));
  std::vector<int32_t> kept;
  kept.reserve(static_cast<size_t>(std::min<int64_t>(kv_len, params.block_end + params.window + 1024)));
  for (int64_t t = 0; t < kv_len; ++t) {
    const double p = keep_probability(t, params);
    if (p == 0.0) break;  // p only falls with distance: nothing farther is kept
    if (p >= 1.0 || uniform(params.seed, t) < p) kept.push_back(static_cast<int32_t>(t));
  }
  return kept;
}

}  // namespace spattn
