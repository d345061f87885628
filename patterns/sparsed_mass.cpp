// SparseD with an adaptive budget: a cumulative-mass threshold per row, a
// cap, a floor, and heads that run dense (see patterns.hpp).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include "kernels/engine/parallel.hpp"
#include "patterns/validate_params.hpp"
#include "spattn/error.hpp"
#include "spattn/patterns.hpp"

namespace spattn {
namespace {

// The kept blocks of one row, ascending: largest masses first (NaN lowest,
// ties to the lower index) until tau of the row's mass, within [lo, hi].
void select_row(const float* w, int64_t kbs, double tau, int64_t lo, int64_t hi, std::vector<int32_t>& idx,
                std::vector<int32_t>& out) {
  idx.resize(static_cast<size_t>(kbs));
  std::iota(idx.begin(), idx.end(), 0);
  auto key = [w](int32_t i) { return std::isnan(w[i]) ? -INFINITY : w[i]; };
  std::sort(idx.begin(), idx.end(), [&key](int32_t a, int32_t b) {
    const float ka = key(a), kb = key(b);
    return ka > kb || (ka == kb && a < b);
  });
  double total = 0.0;
  for (int64_t j = 0; j < kbs; ++j) total += std::max(0.0f, key(static_cast<int32_t>(j)));
  const double target = tau * total;
  int64_t n = 0;
  double kept = 0.0;
  while (n < hi && (n < lo || kept < target)) kept += std::max(0.0f, key(idx[static_cast<size_t>(n++)]));
  out.assign(idx.begin(), idx.begin() + n);
  std::sort(out.begin(), out.end());
}

}  // namespace

void MassBudget::validate(const char* where, const std::string& prefix) const {
  if (!(tau > 0.0 && tau <= 1.0)) throw_bad_argument(where, (prefix + "tau").c_str(), detail::fmt_param(tau), "must be in (0, 1]");
  if (!(max_share > 0.0 && max_share <= 1.0))
    throw_bad_argument(where, (prefix + "max_share").c_str(), detail::fmt_param(max_share), "must be in (0, 1]");
  if (min_blocks < 1)
    throw_bad_argument(where, (prefix + "min_blocks").c_str(), std::to_string(min_blocks), "must be >= 1");
  if (!(dense_head_share > 0.0 && dense_head_share <= 1.0))
    throw_bad_argument(where, (prefix + "dense_head_share").c_str(), detail::fmt_param(dense_head_share), "must be in (0, 1]");
}

BlockMask sparsed_select_mass(const BlockMass& mass, const MassBudget& budget, std::vector<uint8_t>* dense_heads) {
  budget.validate("sparsed_select_mass", "budget.");
  detail::refuse_causal_mass("sparsed_select_mass", mass);
  detail::validate_block_mass("sparsed_select_mass", mass);
  const int64_t H = mass.heads, qbs = mass.q_blocks(), kbs = mass.k_blocks();
  const int64_t lo = std::min(kbs, budget.min_blocks);
  const int64_t hi = std::max(lo, blocks_for_ratio(budget.max_share, kbs));
  std::vector<std::vector<int32_t>> rows(static_cast<size_t>(H * qbs));
  detail::parallel_for(resolve_threads(KernelOptions{}), H * qbs, [&](int64_t begin, int64_t end) {
    std::vector<int32_t> idx;
    for (int64_t r = begin; r < end; ++r)
      select_row(mass.mass.data() + r * kbs, kbs, budget.tau, lo, hi, idx, rows[static_cast<size_t>(r)]);
  });
  if (dense_heads != nullptr) dense_heads->assign(static_cast<size_t>(H), 0);
  for (int64_t h = 0; h < H; ++h) {
    int64_t kept = 0;
    for (int64_t qb = 0; qb < qbs; ++qb) kept += static_cast<int64_t>(rows[static_cast<size_t>(h * qbs + qb)].size());
    const double share = static_cast<double>(kept) / static_cast<double>(qbs * kbs);
    if (budget.dense_head_share < 1.0 && share > budget.dense_head_share) {
      for (int64_t qb = 0; qb < qbs; ++qb) {
        std::vector<int32_t>& row = rows[static_cast<size_t>(h * qbs + qb)];
        row.resize(static_cast<size_t>(kbs));
        std::iota(row.begin(), row.end(), 0);
      }
      if (dense_heads != nullptr) (*dense_heads)[static_cast<size_t>(h)] = 1;
    }
  }
  return BlockMask::from_rows(H, mass.q_len, mass.kv_len, mass.q_block, mass.k_block, rows);
}

}  // namespace spattn
