// SparseD: exact per-block softmax mass from a full-attention step, then a
// head-specific top-k of key blocks per query block, reused on later steps.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "kernels/attention_internal.hpp"
#include "kernels/validate.hpp"
#include "spattn/error.hpp"
#include "spattn/patterns.hpp"

namespace spattn {
namespace {

void check_mass_args(const char* where, const AttentionShape& shape, ConstTensorView q,
                     ConstTensorView k, int64_t q_block, int64_t k_block) {
  // V is not read; q stands in for it and for the output in the view checks.
  detail::check_views(where, shape, q, k, k,
                      ConstTensorView::heads_major(q.data, shape.heads, shape.q_len, shape.head_dim));
  detail::check_kernel_limits(where, shape, q_block, k_block);
}

// Per row log-sum-exp of the scaled logits, QK only (no V).
std::vector<float> row_lse(const AttentionShape& shape, ConstTensorView q, const float* packed,
                           int64_t q_block, int64_t k_block, int threads) {
  const detail::KernelTable& kt = detail::active_kernels();
  const int64_t d = shape.head_dim, q_blocks = (shape.q_len + q_block - 1) / q_block;
  const int64_t k_blocks = (shape.kv_len + k_block - 1) / k_block;
  const int64_t per_head = detail::packed_key_floats(shape.kv_len, k_block, d);
  const int W = kt.vector_floats;
  const float scale = shape.effective_scale();
  std::vector<float> lse(static_cast<size_t>(shape.heads * shape.q_len));
#pragma omp parallel num_threads(threads)
  {
    std::vector<float> s(static_cast<size_t>(q_block * k_block)), mx(q_block), sum(q_block),
        resc(q_block);
#pragma omp for schedule(static)
    for (int64_t item = 0; item < shape.heads * q_blocks; ++item) {
      const int64_t h = item / q_blocks, qb = item % q_blocks, kvh = h / shape.group_size();
      const int64_t r0 = qb * q_block;
      const int rows = static_cast<int>(std::min(q_block, shape.q_len - r0));
      std::fill(mx.begin(), mx.end(), -INFINITY);
      std::fill(sum.begin(), sum.end(), 0.0f);
      for (int64_t b = 0; b < k_blocks; ++b) {
        const int valid = static_cast<int>(std::min(k_block, shape.kv_len - b * k_block));
        kt.qk_scores(q.row(h, r0), q.token_stride, rows, packed + kvh * per_head + b * k_block * d,
                     static_cast<int>(k_block), (valid + W - 1) / W * W, static_cast<int>(d), scale,
                     s.data(), static_cast<int>(k_block));
        kt.online_softmax_update(s.data(), static_cast<int>(k_block), rows, valid, mx.data(),
                                 sum.data(), resc.data());
      }
      for (int r = 0; r < rows; ++r) lse[h * shape.q_len + r0 + r] = mx[r] + std::log(sum[r]);
    }
  }
  return lse;
}

BlockMass mass_from_lse(const AttentionShape& shape, ConstTensorView q, const float* packed,
                        const float* lse, int64_t q_block, int64_t k_block, int threads) {
  const detail::KernelTable& kt = detail::active_kernels();
  BlockMass m{shape.heads, shape.q_len, shape.kv_len, q_block, k_block, {}};
  const int64_t d = shape.head_dim, q_blocks = m.q_blocks(), k_blocks = m.k_blocks();
  const int64_t per_head = detail::packed_key_floats(shape.kv_len, k_block, d);
  const int W = kt.vector_floats;
  const float scale = shape.effective_scale();
  m.mass.assign(static_cast<size_t>(shape.heads * q_blocks * k_blocks), 0.0f);
#pragma omp parallel num_threads(threads)
  {
    std::vector<float> s(static_cast<size_t>(q_block * k_block));
#pragma omp for schedule(static)
    for (int64_t item = 0; item < shape.heads * q_blocks; ++item) {
      const int64_t h = item / q_blocks, qb = item % q_blocks, kvh = h / shape.group_size();
      const int64_t r0 = qb * q_block;
      const int rows = static_cast<int>(std::min(q_block, shape.q_len - r0));
      const float* row_lse = lse + h * shape.q_len + r0;
      float* out = m.mass.data() + item * k_blocks;
      for (int64_t b = 0; b < k_blocks; ++b) {
        const int valid = static_cast<int>(std::min(k_block, shape.kv_len - b * k_block));
        kt.qk_scores(q.row(h, r0), q.token_stride, rows, packed + kvh * per_head + b * k_block * d,
                     static_cast<int>(k_block), (valid + W - 1) / W * W, static_cast<int>(d), scale,
                     s.data(), static_cast<int>(k_block));
        double total = 0.0;
        for (int r = 0; r < rows; ++r) {
          float* sr = s.data() + r * k_block;
          const float l = row_lse[r];
          for (int j = 0; j < valid; ++j) sr[j] -= l;
          kt.exp_inplace(sr, valid);
          float acc = 0.0f;
          for (int j = 0; j < valid; ++j) acc += sr[j];
          total += acc;
        }
        out[b] = static_cast<float>(total / rows);
      }
    }
  }
  return m;
}

}  // namespace

BlockMass block_attention_mass(const AttentionShape& shape, ConstTensorView q, ConstTensorView k,
                               int64_t q_block, int64_t k_block, const KernelOptions& opts) {
  check_mass_args("block_attention_mass", shape, q, k, q_block, k_block);
  const int threads = resolve_threads(opts);
  const std::vector<float> packed =
      detail::pack_keys(detail::active_kernels(), shape, k, k_block, threads);
  const std::vector<float> lse = row_lse(shape, q, packed.data(), q_block, k_block, threads);
  return mass_from_lse(shape, q, packed.data(), lse.data(), q_block, k_block, threads);
}

BlockMass block_attention_mass_from_lse(const AttentionShape& shape, ConstTensorView q,
                                        ConstTensorView k, const float* lse, int64_t q_block,
                                        int64_t k_block, const KernelOptions& opts) {
  check_mass_args("block_attention_mass_from_lse", shape, q, k, q_block, k_block);
  if (lse == nullptr)
    throw_bad_argument("block_attention_mass_from_lse", "lse", "nullptr", "must not be null");
  const int threads = resolve_threads(opts);
  const std::vector<float> packed =
      detail::pack_keys(detail::active_kernels(), shape, k, k_block, threads);
  return mass_from_lse(shape, q, packed.data(), lse, q_block, k_block, threads);
}

BlockMask sparsed_select(const BlockMass& mass, double topk_ratio) {
  if (!(topk_ratio > 0.0 && topk_ratio <= 1.0))
    throw_bad_argument("sparsed_select", "topk_ratio", std::to_string(topk_ratio),
                       "must be in (0, 1]");
  // q_blocks() / k_blocks() divide by the block sizes: check them first.
  auto positive = [](const char* field, int64_t v) {
    if (v <= 0) throw_bad_argument("sparsed_select", field, std::to_string(v), "must be positive");
  };
  positive("mass.heads", mass.heads);
  positive("mass.q_len", mass.q_len);
  positive("mass.kv_len", mass.kv_len);
  positive("mass.q_block", mass.q_block);
  positive("mass.k_block", mass.k_block);
  const int64_t kbs = mass.k_blocks(), rows = mass.heads * mass.q_blocks();
  if (static_cast<int64_t>(mass.mass.size()) != rows * kbs)
    throw_bad_argument("sparsed_select", "mass.mass.size()", std::to_string(mass.mass.size()),
                       "must be heads * q_blocks * k_blocks = " + std::to_string(rows * kbs));
  const int64_t keep = std::clamp<int64_t>(
      static_cast<int64_t>(std::ceil(topk_ratio * static_cast<double>(kbs) - 1e-9)), 1, kbs);
  BlockMask m{mass.heads, mass.q_len, mass.kv_len, mass.q_block, mass.k_block, {}, {}};
  m.row_ptr.resize(rows + 1);
  m.col_idx.resize(rows * keep);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* w = mass.mass.data() + r * kbs;
    std::vector<int32_t> idx(kbs);
    std::iota(idx.begin(), idx.end(), 0);
    // Largest mass first; equal mass goes to the lower index. NaN mass (from
    // non-finite inputs) ranks lowest: a NaN in the comparison would break
    // the strict weak order partial_sort relies on.
    auto key = [w](int32_t i) { return std::isnan(w[i]) ? -INFINITY : w[i]; };
    std::partial_sort(idx.begin(), idx.begin() + keep, idx.end(), [&key](int32_t a, int32_t b) {
      const float ka = key(a), kb = key(b);
      return ka > kb || (ka == kb && a < b);
    });
    std::sort(idx.begin(), idx.begin() + keep);
    std::copy_n(idx.begin(), keep, m.col_idx.begin() + r * keep);
    m.row_ptr[r + 1] = (r + 1) * keep;
  }
  m.row_ptr[0] = 0;
  return m;
}

}  // namespace spattn
