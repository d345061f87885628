// SparseD: exact per-block softmax mass from a full-attention step, then a
// head-specific top-k of key blocks per query block, reused on later steps.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "kernels/engine/engine.hpp"
#include "kernels/validate.hpp"
#include "patterns/validate_params.hpp"
#include "spattn/error.hpp"
#include "spattn/patterns.hpp"

namespace spattn {
namespace {

void check_mass_args(const char* where, const AttentionShape& shape, InputView q,
                     InputView k, int64_t q_block, int64_t k_block) {
  detail::check_input_views(where, shape, q, k);  // V is not read
  detail::check_kernel_limits(where, shape, q_block, k_block);
}

BlockMass mass_on_plan(const AttentionShape& shape, InputView q, const detail::KVPlan& kv,
                       const float* lse, int64_t q_block, int threads) {
  BlockMass m{shape.heads, shape.q_len, shape.kv_len, q_block, kv.k_block(), {}, shape.causal,
              shape.causal ? shape.query_position0() : 0};
  m.mass.resize(static_cast<size_t>(shape.heads * m.q_blocks() * m.k_blocks()));
  detail::block_mass(shape, q, kv, lse, q_block, threads, m.mass.data());
  return m;
}

}  // namespace

BlockMass block_attention_mass(const AttentionShape& shape, InputView q, InputView k,
                               int64_t q_block, int64_t k_block, const KernelOptions& opts) {
  check_mass_args("block_attention_mass", shape, q, k, q_block, k_block);
  const int threads = resolve_threads(opts);
  const detail::KVPlan kv(shape, k, InputView{}, k_block, threads);
  const std::vector<float> lse = detail::row_lse(shape, q, kv, q_block, threads);
  return mass_on_plan(shape, q, kv, lse.data(), q_block, threads);
}

BlockMass block_attention_mass_from_lse(const AttentionShape& shape, InputView q,
                                        InputView k, const float* lse, int64_t q_block,
                                        int64_t k_block, const KernelOptions& opts) {
  check_mass_args("block_attention_mass_from_lse", shape, q, k, q_block, k_block);
  if (lse == nullptr)
    throw_bad_argument("block_attention_mass_from_lse", "lse", "nullptr", "must not be null");
  const int threads = resolve_threads(opts);
  const detail::KVPlan kv(shape, k, InputView{}, k_block, threads);
  return mass_on_plan(shape, q, kv, lse, q_block, threads);
}

namespace detail {

void validate_block_mass(const char* where, const BlockMass& mass) {
  // q_blocks() / k_blocks() divide by the block sizes: check them first.
  auto positive = [&](const char* field, int64_t v) {
    if (v <= 0) throw_bad_argument(where, field, std::to_string(v), "must be positive");
  };
  positive("mass.heads", mass.heads);
  positive("mass.q_len", mass.q_len);
  positive("mass.kv_len", mass.kv_len);
  positive("mass.q_block", mass.q_block);
  positive("mass.k_block", mass.k_block);
  const int64_t kbs = mass.k_blocks(), rows = mass.heads * mass.q_blocks();
  if (static_cast<int64_t>(mass.mass.size()) != rows * kbs)
    throw_bad_argument(where, "mass.mass.size()", std::to_string(mass.mass.size()),
                       "must be heads * q_blocks * k_blocks = " + std::to_string(rows * kbs));
}

void refuse_causal_mass(const char* where, const BlockMass& mass) {
  if (mass.causal)
    throw_bad_argument(where, "mass.causal", "true",
                       "this selection serves bidirectional (diffusion) attention; use sparsed_select for causal masses");
}

}  // namespace detail

BlockMask sparsed_select(const BlockMass& mass, double topk_ratio) {
  if (!(topk_ratio > 0.0 && topk_ratio <= 1.0))
    throw_bad_argument("sparsed_select", "topk_ratio", std::to_string(topk_ratio),
                       "must be in (0, 1]");
  detail::validate_block_mass("sparsed_select", mass);
  const int64_t kbs = mass.k_blocks(), qbs = mass.q_blocks(), rows = mass.heads * qbs;
  BlockMask m{mass.heads, mass.q_len, mass.kv_len, mass.q_block, mass.k_block, {}, {}};
  m.row_ptr.assign(static_cast<size_t>(rows + 1), 0);
  for (int64_t r = 0; r < rows; ++r)  // rows keep the same count unless causal
    m.row_ptr[r + 1] = m.row_ptr[r] + blocks_for_ratio(topk_ratio, mass.visible_k_blocks(r % qbs));
  m.col_idx.resize(static_cast<size_t>(m.row_ptr[rows]));
  detail::parallel_for(resolve_threads(KernelOptions{}), rows, [&](int64_t r_begin, int64_t r_end) {
    std::vector<int32_t> idx(kbs);
    for (int64_t r = r_begin; r < r_end; ++r) {
      const float* w = mass.mass.data() + r * kbs;
      const int64_t n = mass.visible_k_blocks(r % qbs), keep = m.row_ptr[r + 1] - m.row_ptr[r];
      std::iota(idx.begin(), idx.begin() + n, 0);
      // Largest mass first; equal mass goes to the lower index. NaN mass (from
      // non-finite inputs) ranks lowest: a NaN in the comparison would break
      // the strict weak order partial_sort relies on.
      auto key = [w](int32_t i) { return std::isnan(w[i]) ? -INFINITY : w[i]; };
      std::partial_sort(idx.begin(), idx.begin() + keep, idx.begin() + n, [&key](int32_t a, int32_t b) {
        const float ka = key(a), kb = key(b);
        return ka > kb || (ka == kb && a < b);
      });
      std::sort(idx.begin(), idx.begin() + keep);
      std::copy_n(idx.begin(), keep, m.col_idx.begin() + m.row_ptr[r]);
    }
  });
  return m;
}

double mask_recall(const BlockMass& mass, const BlockMask& mask) {
  const char* where = "mask_recall";
  auto agree = [&](const char* field, int64_t a, int64_t b) {
    if (a != b)
      throw_bad_argument(where, field, std::to_string(b),
                         "mask and mass disagree (mass has " + std::to_string(a) + ")");
  };
  agree("mask.heads", mass.heads, mask.heads);
  agree("mask.q_len", mass.q_len, mask.q_len);
  agree("mask.kv_len", mass.kv_len, mask.kv_len);
  agree("mask.q_block", mass.q_block, mask.q_block);
  agree("mask.k_block", mass.k_block, mask.k_block);
  if (mass.q_block <= 0 || mass.k_block <= 0)
    throw_bad_argument(where, "mass.q_block/k_block",
                       std::to_string(mass.q_block) + "/" + std::to_string(mass.k_block),
                       "must be > 0");
  const int64_t rows = mass.heads * mass.q_blocks(), kbs = mass.k_blocks();
  if (static_cast<int64_t>(mass.mass.size()) != rows * kbs)
    throw_bad_argument(where, "mass.mass.size()", std::to_string(mass.mass.size()),
                       "must be heads * q_blocks * k_blocks = " + std::to_string(rows * kbs));
  mask.validate();
  if (rows == 0) return 1.0;
  double total = 0.0;
  for (int64_t h = 0; h < mass.heads; ++h)
    for (int64_t qb = 0; qb < mass.q_blocks(); ++qb) {
      const float* m = mass.row(h, qb);
      double kept = 0.0;
      for (int32_t kb : mask.row(h, qb)) kept += m[kb];
      total += kept;
    }
  return total / static_cast<double>(rows);
}

}  // namespace spattn
