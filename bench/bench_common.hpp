#pragma once
// Inputs shared by the benchmark binaries: random Q/K/V and scattered masks.
#include <cstdint>
#include <algorithm>
#include <random>
#include <vector>

#include "spattn/lab/lab.hpp"

namespace spattn::bench {

struct Inputs {
  AttentionShape shape;
  std::vector<float> q, k, v, out;
  Inputs(int64_t heads, int64_t n, int64_t d, uint64_t seed = 1) {
    shape = {heads, heads, n, n, d};
    q.resize(heads * n * d);
    k.resize(q.size());
    v.resize(q.size());
    out.resize(q.size());
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> nd;
    for (auto* t : {&q, &k, &v})
      for (float& x : *t) x = nd(rng);
  }
  ConstTensorView qv() const { return ConstTensorView::heads_major(q.data(), shape.heads, shape.q_len, shape.head_dim); }
  ConstTensorView kv() const { return ConstTensorView::heads_major(k.data(), shape.kv_heads, shape.kv_len, shape.head_dim); }
  ConstTensorView vv() const { return ConstTensorView::heads_major(v.data(), shape.kv_heads, shape.kv_len, shape.head_dim); }
  TensorView ov() { return TensorView::heads_major(out.data(), shape.heads, shape.q_len, shape.head_dim); }
  // q, k and v as dtype t (bf16 / f16 copies made on first use; f32: the views above).
  InputView typed(DType t, int which) {
    const std::vector<float>* src[] = {&q, &k, &v};
    const int64_t heads = which == 0 ? shape.heads : shape.kv_heads, n = which == 0 ? shape.q_len : shape.kv_len;
    if (t == DType::fp32)
      return ConstTensorView::heads_major(src[which]->data(), heads, n, shape.head_dim);
    std::vector<uint16_t>& dst = narrow[t == DType::bf16 ? 0 : 1][which];
    if (dst.empty())
      for (float x : *src[which]) dst.push_back(t == DType::bf16 ? to_bf16(x).bits : to_fp16(x).bits);
    return InputView(dst.data(), t, heads, n, shape.head_dim, n * shape.head_dim, shape.head_dim);
  }
  std::vector<uint16_t> narrow[2][3];
  double dense_flops() const {
    return 4.0 * double(shape.q_len) * double(shape.kv_len) * double(shape.head_dim) * double(shape.heads);
  }
};

// Q, K and V rounded once to a 16-bit dtype for the tools' --dtype: the fp32
// vectors are overwritten with the rounded values (so fp32-only baselines,
// accuracy references and exported inputs see the very numbers the kernels
// read), and the 16-bit copies are what the typed views hand over.
struct NarrowInputs {
  DType dtype = DType::fp32;
  std::vector<uint16_t> bits[3];  // q, k, v as dtype (bf16 / fp16 bits)
  void round(DType t, std::vector<float>& q, std::vector<float>& k, std::vector<float>& v) {
    dtype = t;
    std::vector<float>* src[] = {&q, &k, &v};
    for (int i = 0; i < 3 && t != DType::fp32; ++i) {
      bits[i].resize(src[i]->size());
      for (size_t j = 0; j < src[i]->size(); ++j) {
        bits[i][j] = t == DType::bf16 ? to_bf16((*src[i])[j]).bits : to_fp16((*src[i])[j]).bits;
        (*src[i])[j] = t == DType::bf16 ? to_float(bf16_t{bits[i][j]}) : to_float(fp16_t{bits[i][j]});
      }
    }
  }
  // which: 0 q, 1 k, 2 v; f: the fp32 view of the same tensor (heads-major).
  InputView view(int which, ConstTensorView f) const {
    if (dtype == DType::fp32) return f;
    return InputView(bits[which].data(), dtype, f.heads, f.tokens, f.head_dim, f.tokens * f.head_dim, f.head_dim);
  }
};

// Exactly round(density * k_blocks) key blocks per query block, scattered at random.
inline BlockMask scattered_mask(const AttentionShape& s, int64_t block, double density, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const int64_t qbs = (s.q_len + block - 1) / block, kbs = (s.kv_len + block - 1) / block;
  const int64_t keep = std::max<int64_t>(1, int64_t(density * double(kbs) + 0.5));
  std::vector<std::vector<int32_t>> rows(s.heads * qbs);
  std::vector<int32_t> all(kbs);
  for (int64_t i = 0; i < kbs; ++i) all[i] = int32_t(i);
  for (auto& r : rows) {
    std::shuffle(all.begin(), all.end(), rng);
    r.assign(all.begin(), all.begin() + keep);
  }
  return BlockMask::from_rows(s.heads, s.q_len, s.kv_len, block, block, rows);
}

}  // namespace spattn::bench
