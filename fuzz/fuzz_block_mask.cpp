// Fuzzes BlockMask::validate and block_sparse_attention. The bytes give the
// mask's sizes (small ones, or raw 64-bit values for the overflow checks), its
// CSR arrays (either per-row bitmaps, which are valid, optionally corrupted in
// one place, or raw values), the attention shape, head_dim, the ISA path and
// the Q/K/V seed. A mask that validate() accepts must run through the kernel
// without a sanitizer report, give finite output and, on small inputs, match
// the double-precision reference with that mask.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "spattn/attention.hpp"
#include "spattn/lab/baselines.hpp"
#include "spattn/block_mask.hpp"
#include "spattn/error.hpp"
#include "spattn/isa.hpp"

namespace {

constexpr int64_t kBlockSizes[] = {16, 32, 64, 128};

int64_t consume_block(FuzzedDataProvider& fdp, bool any) {
  if (any) return fdp.ConsumeIntegralInRange<int64_t>(-2, 160);  // mostly unsupported sizes
  return kBlockSizes[fdp.ConsumeIntegralInRange<int>(0, 3)];
}

void fill(std::vector<float>& x, uint32_t seed, float amplitude) {
  uint32_t s = seed * 2654435761u + 1u;
  for (float& f : x) {
    s = s * 1664525u + 1013904223u;
    f = amplitude * (static_cast<float>(s >> 8) / 8388608.0f - 1.0f);  // uniform in [-a, a)
  }
}

[[noreturn]] void bug(const char* what) {
  std::fprintf(stderr, "fuzz_block_mask: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider fdp(data, size);
  const uint8_t mode = fdp.ConsumeIntegral<uint8_t>();
  const bool raw_dims = mode & 1, any_block = mode & 2, raw_csr = mode & 4, corrupt = mode & 8;

  spattn::BlockMask m;
  if (raw_dims) {
    m.heads = fdp.ConsumeIntegral<int64_t>();
    m.q_len = fdp.ConsumeIntegral<int64_t>();
    m.kv_len = fdp.ConsumeIntegral<int64_t>();
    m.q_block = fdp.ConsumeIntegral<int64_t>();
    m.k_block = fdp.ConsumeIntegral<int64_t>();
  } else {
    m.heads = fdp.ConsumeIntegralInRange<int64_t>(1, 4);
    m.q_len = fdp.ConsumeIntegralInRange<int64_t>(1, 300);
    m.kv_len = fdp.ConsumeIntegralInRange<int64_t>(1, 300);
    m.q_block = consume_block(fdp, any_block);
    m.k_block = consume_block(fdp, any_block);
  }

  if (raw_csr || raw_dims || m.q_block <= 0 || m.k_block <= 0) {
    const size_t n_ptr = fdp.ConsumeIntegralInRange<size_t>(0, 80);
    for (size_t i = 0; i < n_ptr; ++i) m.row_ptr.push_back(fdp.ConsumeIntegralInRange<int64_t>(-3, 400));
    const size_t n_col = fdp.ConsumeIntegralInRange<size_t>(0, 400);
    for (size_t i = 0; i < n_col; ++i) m.col_idx.push_back(fdp.ConsumeIntegralInRange<int32_t>(-2, 24));
  } else {
    // One bitmap per row: sorted, unique, in range.
    const int64_t kbs = std::min<int64_t>(m.k_blocks(), 64);
    m.row_ptr.push_back(0);
    for (int64_t r = 0; r < m.rows(); ++r) {
      const uint64_t bits = fdp.ConsumeIntegral<uint64_t>();
      for (int64_t c = 0; c < kbs; ++c)
        if ((bits >> c) & 1) m.col_idx.push_back(static_cast<int32_t>(c));
      m.row_ptr.push_back(static_cast<int64_t>(m.col_idx.size()));
    }
    if (corrupt) {
      const int64_t value = fdp.ConsumeIntegralInRange<int64_t>(-2, 40);
      if (fdp.ConsumeBool() && !m.col_idx.empty())
        m.col_idx[fdp.ConsumeIntegralInRange<size_t>(0, m.col_idx.size() - 1)] = static_cast<int32_t>(value);
      else
        m.row_ptr[fdp.ConsumeIntegralInRange<size_t>(0, m.row_ptr.size() - 1)] = value;
    }
  }

  try {
    m.validate();
  } catch (const spattn::Error&) {
    return 0;
  }
  (void)m.density();

  // Only sizes the kernels take and a test can afford go on to attention.
  if (m.heads > 4 || m.q_len > 512 || m.kv_len > 512 || !spattn::is_supported_block_size(m.q_block) ||
      !spattn::is_supported_block_size(m.k_block))
    return 0;
  for (int64_t h = 0; h < m.heads; ++h)
    for (int64_t qb = 0; qb < m.q_blocks(); ++qb) (void)m.row(h, qb);

  const std::vector<spattn::Isa> isas = spattn::supported_isas();
  spattn::set_isa(isas[fdp.ConsumeIntegralInRange<size_t>(0, isas.size() - 1)]);
  spattn::AttentionShape s;
  s.heads = m.heads;
  s.kv_heads = m.heads;
  while (fdp.ConsumeBool() && s.kv_heads > 1 && s.heads % (s.kv_heads / 2) == 0 && s.kv_heads % 2 == 0)
    s.kv_heads /= 2;  // GQA / MQA
  s.q_len = m.q_len;
  s.kv_len = m.kv_len;
  s.head_dim = kBlockSizes[fdp.ConsumeIntegralInRange<int>(0, 3)];
  const uint8_t mismatch = fdp.ConsumeIntegral<uint8_t>();
  if (mismatch == 1) s.q_len += 1;   // must be refused: mask and shape disagree
  if (mismatch == 2) s.kv_len += 1;
  const bool large_logits = fdp.ConsumeBool();
  const uint32_t seed = fdp.ConsumeIntegral<uint32_t>();
  // Causal: a shape with more queries than keys, or a mask row listing a key
  // block after its last query (queries are the last q_len positions), must
  // be refused; anything else must run and match the causal reference.
  s.causal = fdp.ConsumeBool();
  bool refuse_causal = s.causal && s.q_len > s.kv_len;
  if (s.causal && !refuse_causal && mismatch != 1 && mismatch != 2)
    for (int64_t h = 0; h < m.heads; ++h)
      for (int64_t qb = 0; qb < m.q_blocks(); ++qb)
        for (int32_t kb : m.row(h, qb))
          if (kb * m.k_block > s.kv_len - s.q_len + std::min(s.q_len, (qb + 1) * m.q_block) - 1) refuse_causal = true;

  std::vector<float> q(static_cast<size_t>(s.heads * s.q_len * s.head_dim)),
      k(static_cast<size_t>(s.kv_heads * s.kv_len * s.head_dim)), v(k.size()), out(q.size());
  fill(q, seed, large_logits ? 60.0f : 2.0f);
  fill(k, seed + 1, large_logits ? 60.0f : 2.0f);
  fill(v, seed + 2, 1.0f);
  using spattn::ConstTensorView;
  const auto qv = ConstTensorView::heads_major(q.data(), s.heads, s.q_len, s.head_dim);
  const auto kv = ConstTensorView::heads_major(k.data(), s.kv_heads, s.kv_len, s.head_dim);
  const auto vv = ConstTensorView::heads_major(v.data(), s.kv_heads, s.kv_len, s.head_dim);
  const auto ov = spattn::TensorView::heads_major(out.data(), s.heads, s.q_len, s.head_dim);
  spattn::KernelOptions opts;
  opts.threads = 1;
  try {
    spattn::block_sparse_attention(s, qv, kv, vv, m, ov, opts);
  } catch (const spattn::Error&) {
    if (mismatch == 1 || mismatch == 2 || refuse_causal) return 0;
    bug("block_sparse_attention refused a mask that validate() accepted");
  }
  if (mismatch == 1 || mismatch == 2) bug("block_sparse_attention accepted a mask of another shape");
  if (refuse_causal) bug("block_sparse_attention accepted a causal mask listing future blocks");
  for (float x : out)
    if (!std::isfinite(x)) bug("non-finite output");

  // Reference check where it is cheap (the double reference is O(N^2 d)).
  if (!large_logits && s.heads * s.q_len * s.kv_len * s.head_dim <= (1 << 19)) {
    std::vector<double> ref(out.size());
    spattn::reference_attention(s, qv, kv, vv, ref.data(), &m);
    double err = 0.0, mag = 0.0;
    for (size_t i = 0; i < out.size(); ++i) {
      err = std::max(err, std::fabs(out[i] - ref[i]));
      mag = std::max(mag, std::fabs(ref[i]));
    }
    if (err > 2e-5 * std::max(mag, 1e-30) + 1e-30) bug("output differs from the masked reference");
  }
  return 0;
}
