// SparseD with the block budget pooled across heads (see patterns.hpp).
#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "kernels/engine/parallel.hpp"
#include "spattn/error.hpp"
#include "patterns/validate_params.hpp"
#include "spattn/patterns.hpp"

namespace spattn {

namespace {

// Query block qb of every head: each head keeps its best block; the rest of
// the budget H * keep goes to the largest masses of any head (each head's row
// sums to 1, so masses compare across heads). Ties: lower head, then lower
// block.
void select_pooled_row(const BlockMass& mass, int64_t qb, int64_t keep, std::vector<std::vector<int32_t>>& rows) {
  const int64_t H = mass.heads, qbs = mass.q_blocks(), kbs = mass.k_blocks();
  std::vector<int64_t> order(static_cast<size_t>(H * kbs));
  std::iota(order.begin(), order.end(), 0);
  auto value = [&](int64_t c) {
    const float w = mass.row(c / kbs, qb)[c % kbs];
    return std::isnan(w) ? -INFINITY : w;
  };
  std::vector<char> taken(order.size(), 0);
  std::vector<std::vector<int32_t>*> out(static_cast<size_t>(H));
  for (int64_t h = 0; h < H; ++h) {
    out[h] = &rows[static_cast<size_t>(h * qbs + qb)];
    int32_t best = 0;
    for (int32_t j = 1; j < kbs; ++j)
      if (value(h * kbs + j) > value(h * kbs + best)) best = j;
    out[h]->push_back(best);
    taken[static_cast<size_t>(h * kbs + best)] = 1;
  }
  const int64_t extra = std::min<int64_t>(H * keep - H, H * kbs - H);
  std::partial_sort(order.begin(), order.begin() + std::min<int64_t>(H * kbs, extra + H), order.end(),
                    [&](int64_t a, int64_t b) {
                      const float va = value(a), vb = value(b);
                      return va > vb || (va == vb && a < b);
                    });
  int64_t added = 0;
  for (int64_t i = 0; i < H * kbs && added < extra; ++i) {
    const int64_t c = order[static_cast<size_t>(i)];
    if (taken[static_cast<size_t>(c)]) continue;
    out[c / kbs]->push_back(static_cast<int32_t>(c % kbs));
    ++added;
  }
  for (auto* r : out) std::sort(r->begin(), r->end());
}

}  // namespace

BlockMask sparsed_select_pooled(const BlockMass& mass, double topk_ratio) {
  // sparsed_select checks everything this function relies on; it also gives
  // the per-head count each head would get, which sets the pooled budget.
  detail::refuse_causal_mass("sparsed_select_pooled", mass);
  const BlockMask per_head = sparsed_select(mass, topk_ratio);
  const int64_t H = mass.heads, qbs = mass.q_blocks();
  const int64_t keep = per_head.row_ptr[1] - per_head.row_ptr[0];
  std::vector<std::vector<int32_t>> rows(static_cast<size_t>(H * qbs));
  detail::parallel_for(resolve_threads(KernelOptions{}), qbs, [&](int64_t begin, int64_t end) {
    for (int64_t qb = begin; qb < end; ++qb) select_pooled_row(mass, qb, keep, rows);
  });
  return BlockMask::from_rows(H, mass.q_len, mass.kv_len, mass.q_block, mass.k_block, rows);
}

}  // namespace spattn
