// Causal attention (LLM prefill): every kernel path on every ISA against the
// double reference with the causal mask, query offsets at and inside block
// boundaries, GQA, decode (q_len 1), chunked prefill, and the argument rules.
//
// Tolerances: fp32 paths meet kFp32Bound. The bf16 path (bf16 K/V on
// avx512_bf16) rounds P before the PV product, which moves an output element
// by at most 2^-8 x max|v|; the inputs here are already bf16 values, so the
// reference computes on exactly what the kernels read.
#include <gtest/gtest.h>

#include <cstring>

#include "test_util.hpp"

namespace spattn::test {
namespace {

AttentionShape causal_shape(int64_t heads, int64_t kv_heads, int64_t q_len, int64_t kv_len, int64_t d,
                            int64_t q_offset = AttentionShape::kQOffsetEnd) {
  AttentionShape s{heads, kv_heads, q_len, kv_len, d};
  s.causal = true;
  s.q_offset = q_offset;
  return s;
}

KernelOptions tiles(int64_t q_tile, int64_t k_block, int threads = 0) {
  KernelOptions o;
  o.q_tile_rows = q_tile;
  o.k_block = k_block;
  o.threads = threads;
  return o;
}

// Rounds every input to a bf16 value (kept in fp32), so that bf16 copies are exact.
void round_to_bf16(Qkv& x) {
  for (Tensor* t : {&x.q, &x.k, &x.v})
    for (float& f : t->data) f = to_float(to_bf16(f));
}

std::vector<uint16_t> bf16_copy(const Tensor& t) {
  std::vector<uint16_t> b(t.data.size());
  for (size_t i = 0; i < b.size(); ++i) b[i] = to_bf16(t.data[i]).bits;
  return b;
}

InputView bf16_view(const std::vector<uint16_t>& bits, const Tensor& like) {
  const TensorView& w = like.view;
  return InputView(bits.data(), DType::bf16, w.heads, w.tokens, w.head_dim, w.head_stride, w.token_stride);
}

double max_abs_of(const std::vector<float>& v) {
  double m = 0;
  for (float f : v) m = std::max(m, double(std::fabs(f)));
  return m;
}

class Causal : public PerIsa {};
SPATTN_INSTANTIATE_PER_ISA(Causal);

// The shapes every path is run on: offsets at the end (default), at a block
// boundary, inside a block; GQA; decode; self-attention of odd length.
std::vector<AttentionShape> shapes() {
  return {causal_shape(4, 2, 77, 131, 64),       causal_shape(2, 1, 33, 45, 128),
          causal_shape(3, 3, 1, 70, 32),         causal_shape(2, 2, 100, 100, 64),
          causal_shape(2, 1, 40, 150, 64, 64),   causal_shape(2, 2, 50, 150, 32, 37),
          causal_shape(1, 1, 129, 129, 16)};
}

TEST_P(Causal, DenseMatchesReferenceOnEveryTiling) {
  uint64_t seed = 1;
  for (const AttentionShape& s : shapes())
    for (const auto& [qt, kb] : {std::pair{16, 16}, std::pair{32, 64}, std::pair{64, 16}, std::pair{128, 128}}) {
      const Qkv x(s, seed++);
      Tensor out(s.heads, s.q_len, s.head_dim);
      dense_attention(s, x.q, x.k, x.v, out.view, tiles(qt, kb));
      EXPECT_LE(max_rel_error(out, reference(x), s), kFp32Bound)
          << "q_len " << s.q_len << " kv_len " << s.kv_len << " q_offset " << s.q_offset << " tiles " << qt << "/"
          << kb;
    }
}

TEST_P(Causal, Bf16KvMatchesReferenceWithinPRounding) {
  uint64_t seed = 50;
  for (const AttentionShape& s : shapes()) {
    Qkv x(s, seed++);
    round_to_bf16(x);
    const std::vector<uint16_t> q16 = bf16_copy(x.q), k16 = bf16_copy(x.k), v16 = bf16_copy(x.v);
    Tensor out(s.heads, s.q_len, s.head_dim);
    dense_attention(s, bf16_view(q16, x.q), bf16_view(k16, x.k), bf16_view(v16, x.v), out.view, tiles(32, 32));
    const std::vector<double> ref = reference(x);
    double err = 0, mref = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
      err = std::max(err, std::fabs(out.data[i] - ref[i]));
      mref = std::max(mref, std::fabs(ref[i]));
    }
    EXPECT_LE(err, kFp32Bound * mref + 0x1p-8 * max_abs_of(x.v.data)) << "kv_len " << s.kv_len;
  }
}

TEST_P(Causal, FirstRowSeesOnlyItsPrefix) {
  // Self-attention: query 0 sees key 0 alone, so its output is v[0] exactly,
  // however large the later logits are.
  AttentionShape s = causal_shape(1, 1, 70, 70, 32);
  Qkv x(s, 9, 5.0f);
  Tensor out(s.heads, s.q_len, s.head_dim);
  dense_attention(s, x.q, x.k, x.v, out.view, tiles(64, 64));
  for (int64_t c = 0; c < s.head_dim; ++c) EXPECT_EQ(out.view.row(0, 0)[c], x.v.view.row(0, 0)[c]);
}

TEST_P(Causal, LseMatchesTheVisibleKeys) {
  const AttentionShape s = causal_shape(2, 1, 45, 90, 64);
  const Qkv x(s, 4);
  Tensor out(s.heads, s.q_len, s.head_dim);
  std::vector<float> lse(static_cast<size_t>(s.heads * s.q_len));
  dense_attention_with_lse(s, x.q, x.k, x.v, out.view, lse.data(), tiles(16, 32));
  for (int64_t h = 0; h < s.heads; ++h)
    for (int64_t t = 0; t < s.q_len; ++t) {
      double mx = -INFINITY, sum = 0;
      std::vector<double> l;
      for (int64_t j = 0; j <= s.query_position0() + t; ++j) {
        double dot = 0;
        for (int64_t c = 0; c < s.head_dim; ++c) dot += double(x.q.view.row(h, t)[c]) * x.k.view.row(0, j)[c];
        l.push_back(dot * s.effective_scale());
        mx = std::max(mx, l.back());
      }
      for (double v : l) sum += std::exp(v - mx);
      EXPECT_NEAR(lse[h * s.q_len + t], mx + std::log(sum), 1e-4) << h << " " << t;
    }
}

// A random causal mask: each visible block with probability 1/2, plus the diagonal.
BlockMask random_causal_mask(const AttentionShape& s, int64_t qb_size, int64_t kb_size, uint64_t seed) {
  std::mt19937_64 rng(seed);
  BlockMask m{s.heads, s.q_len, s.kv_len, qb_size, kb_size, {0}, {}};
  for (int64_t h = 0; h < s.heads; ++h)
    for (int64_t qb = 0; qb < m.q_blocks(); ++qb) {
      const int64_t last = s.query_position0() + std::min(s.q_len, (qb + 1) * qb_size) - 1;
      for (int64_t kb = 0; kb <= last / kb_size; ++kb)
        if (kb == last / kb_size || rng() % 2) m.col_idx.push_back(static_cast<int32_t>(kb));
      m.row_ptr.push_back(static_cast<int64_t>(m.col_idx.size()));
    }
  return m;
}

TEST_P(Causal, BlockSparseMatchesReferenceWithTheSameMask) {
  uint64_t seed = 100;
  for (const AttentionShape& s : shapes())
    for (const auto& [qb, kb] : {std::pair{32, 32}, std::pair{64, 16}, std::pair{16, 64}}) {
      const Qkv x(s, seed);
      const BlockMask m = random_causal_mask(s, qb, kb, seed++);
      Tensor out(s.heads, s.q_len, s.head_dim);
      block_sparse_attention(s, x.q, x.k, x.v, m, out.view);
      EXPECT_LE(max_rel_error(out, reference(x, &m), s), kFp32Bound) << "kv_len " << s.kv_len << " blocks " << qb
                                                                       << "/" << kb;
    }
}

TEST_P(Causal, RowsThatSeeNothingInTheirBlocksAreZero) {
  // q_block 128 over k_block 64 listing only key block 1: rows 0-63 see no key.
  const AttentionShape s = causal_shape(1, 1, 128, 128, 32);
  const Qkv x(s, 7);
  const BlockMask m{1, 128, 128, 128, 64, {0, 1}, {1}};
  Tensor out(s.heads, s.q_len, s.head_dim);
  block_sparse_attention(s, x.q, x.k, x.v, m, out.view);
  for (int64_t t = 0; t < 64; ++t)
    for (int64_t c = 0; c < s.head_dim; ++c) ASSERT_EQ(out.view.row(0, t)[c], 0.0f) << t;
  EXPECT_LE(max_rel_error(out, reference(x, &m), s), kFp32Bound);
}

TEST(CausalRules, MaskListingAFutureBlockIsRefused) {
  const AttentionShape s = causal_shape(1, 1, 64, 128, 32);  // queries at 64..127
  const Qkv x(s, 1);
  Tensor out(s.heads, s.q_len, s.head_dim);
  const BlockMask ok{1, 64, 128, 32, 32, {0, 2, 5}, {0, 2, 1, 2, 3}};  // row 0 up to block 2 (last query 95)
  block_sparse_attention(s, x.q, x.k, x.v, ok, out.view);
  const BlockMask bad{1, 64, 128, 32, 32, {0, 2, 4}, {0, 3, 1, 3}};  // row 0 lists block 3 (keys 96..127)
  expect_error([&] { block_sparse_attention(s, x.q, x.k, x.v, bad, out.view); },
               {"query block 0", "key block 3", "position 95", "causal"});
}

TEST_P(Causal, GatheredMatchesReferenceOverKeptKeys) {
  uint64_t seed = 200;
  for (const AttentionShape& s : shapes()) {
    const Qkv x(s, seed);
    std::mt19937_64 rng(seed++);
    std::vector<int32_t> kept;
    for (int32_t t = 0; t < s.kv_len; ++t)
      if (t == 0 || rng() % 3 != 0) kept.push_back(t);
    Tensor out(s.heads, s.q_len, s.head_dim);
    gathered_attention(s, x.q, x.k, x.v, kept, out.view, tiles(32, 16));
    EXPECT_LE(max_rel_error(out, reference(x, nullptr, kept), s), kFp32Bound) << "kv_len " << s.kv_len;
  }
}

TEST_P(Causal, BlockMassSumsToOneOverVisibleBlocks) {
  const AttentionShape s = causal_shape(2, 1, 96, 160, 64);
  const Qkv x(s, 11);
  const BlockMass m = block_attention_mass(s, x.q, x.k, 32, 32);
  ASSERT_TRUE(m.causal);
  for (int64_t h = 0; h < s.heads; ++h)
    for (int64_t qb = 0; qb < m.q_blocks(); ++qb) {
      // Double reference: mean over the block's rows of each key block's probability.
      std::vector<double> want(static_cast<size_t>(m.k_blocks()), 0.0);
      const int64_t r1 = std::min(s.q_len, (qb + 1) * 32);
      for (int64_t t = qb * 32; t < r1; ++t) {
        const int64_t seen = s.query_position0() + t + 1;
        std::vector<double> l(static_cast<size_t>(seen));
        double mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j < seen; ++j) {
          double dot = 0;
          for (int64_t c = 0; c < s.head_dim; ++c) dot += double(x.q.view.row(h, t)[c]) * x.k.view.row(0, j)[c];
          l[j] = dot * s.effective_scale();
          mx = std::max(mx, l[j]);
        }
        for (double& v : l) sum += (v = std::exp(v - mx));
        for (int64_t j = 0; j < seen; ++j) want[j / 32] += l[j] / sum / double(r1 - qb * 32);
      }
      const float* row = m.row(h, qb);
      for (int64_t kb = 0; kb < m.k_blocks(); ++kb) {
        EXPECT_NEAR(row[kb], want[kb], 1e-5) << h << " " << qb << " " << kb;
        if (kb >= m.visible_k_blocks(qb)) {
          EXPECT_EQ(row[kb], 0.0f);
        }
      }
    }
}

TEST_P(Causal, ThreadCountDoesNotChangeABit) {
  const AttentionShape s = causal_shape(3, 1, 150, 201, 64);
  const Qkv x(s, 5);
  Tensor one(s.heads, s.q_len, s.head_dim), three(s.heads, s.q_len, s.head_dim);
  dense_attention(s, x.q, x.k, x.v, one.view, tiles(32, 32, 1));
  dense_attention(s, x.q, x.k, x.v, three.view, tiles(32, 32, 3));
  EXPECT_EQ(0, std::memcmp(one.data.data(), three.data.data(), one.data.size() * 4));
}

// Prefill of n tokens in chunks of `chunk` queries against a cache of
// capacity n filled up to the chunk's end (heads-major with the capacity's
// head stride, so kv_len < the buffer's rows).
Tensor chunked_prefill(const Qkv& x, int64_t chunk, const KernelOptions& o) {
  const AttentionShape& full = x.shape;
  Tensor out(full.heads, full.q_len, full.head_dim);
  for (int64_t c0 = 0; c0 < full.q_len; c0 += chunk) {
    const int64_t c1 = std::min(full.q_len, c0 + chunk);
    AttentionShape s = causal_shape(full.heads, full.kv_heads, c1 - c0, c1, full.head_dim, c0);
    ConstTensorView q = x.q.view, k = x.k.view, v = x.v.view;
    q.data = x.q.view.row(0, c0);
    q.tokens = c1 - c0;
    k.tokens = v.tokens = c1;  // the filled part of the cache
    TensorView o_view = out.view;
    o_view.data = out.view.row(0, c0);
    o_view.tokens = c1 - c0;
    dense_attention(s, q, k, v, o_view, o);
  }
  return out;
}

TEST_P(Causal, ChunkedPrefillEqualsOneShotBitForBitOnAlignedChunks) {
  // Chunks that are multiples of the query tile and the key block visit the
  // same blocks in the same order with the same packed keys: identical bits.
  const AttentionShape s = causal_shape(2, 1, 300, 300, 64);
  const Qkv x(s, 21);
  Tensor one(s.heads, s.q_len, s.head_dim);
  dense_attention(s, x.q, x.k, x.v, one.view, tiles(32, 32));
  const Tensor chunked = chunked_prefill(x, 64, tiles(32, 32));
  EXPECT_EQ(0, std::memcmp(one.data.data(), chunked.data.data(), one.data.size() * 4));
  // Unaligned chunks: same keys per row, other block boundaries; within tolerance.
  const Tensor odd = chunked_prefill(x, 45, tiles(32, 32));
  EXPECT_LE(max_rel_error(odd, reference(x), s), kFp32Bound);
}

TEST(CausalRules, ShapeChecksNameTheField) {
  AttentionShape s{1, 1, 10, 20, 32};
  s.q_offset = 3;  // without causal
  expect_error([&] { s.validate(); }, {"q_offset", "causal"});
  s.causal = true;
  s.q_offset = 11;  // 11 + 10 > 20
  expect_error([&] { s.validate(); }, {"q_len", "q_offset + q_len", "kv_len 20"});
  s.q_offset = -5;
  expect_error([&] { s.validate(); }, {"q_offset", "-5"});
  s.q_offset = AttentionShape::kQOffsetEnd;
  s.q_len = 21;  // more queries than keys
  expect_error([&] { s.validate(); }, {"q_len", "kv_len 20"});
  s.q_len = 10;
  s.validate();
  EXPECT_EQ(s.query_position0(), 10);
}

TEST(CausalBaselines, NaiveAndBlasMatchReference) {
  for (const AttentionShape& s : shapes()) {
    const Qkv x(s, 31);
    const std::vector<double> ref = reference(x);
    Tensor a(s.heads, s.q_len, s.head_dim), b(s.heads, s.q_len, s.head_dim);
    naive_attention(s, x.q, x.k, x.v, a.view);
    EXPECT_LE(max_rel_error(a, ref, s), kFp32Bound) << s.kv_len;
    if (!have_blas()) continue;
    blas_attention(s, x.q, x.k, x.v, b.view);
    EXPECT_LE(max_rel_error(b, ref, s), kFp32Bound) << s.kv_len;
  }
}

}  // namespace
}  // namespace spattn::test
