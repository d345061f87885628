// dense_attention, block_sparse_attention and gathered_attention on every ISA
// against the double-precision reference.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "test_util.hpp"

namespace spattn::test {
namespace {

class Attention : public PerIsa {};
SPATTN_INSTANTIATE_PER_ISA(Attention);

struct Case {
  AttentionShape shape;
  int64_t q_block, k_block;
  bool tokens_major;
};

std::string describe(const Case& c) {
  const auto& s = c.shape;
  return "heads=" + std::to_string(s.heads) + " kv_heads=" + std::to_string(s.kv_heads) +
         " q_len=" + std::to_string(s.q_len) + " kv_len=" + std::to_string(s.kv_len) +
         " d=" + std::to_string(s.head_dim) + " blocks=" + std::to_string(c.q_block) + "x" +
         std::to_string(c.k_block) + (c.tokens_major ? " tokens-major" : "");
}

TEST_P(Attention, DenseMatchesReferenceOnOddShapesGqaAndLayouts) {
  const std::vector<Case> cases = {
      {{2, 2, 64, 64, 64}, 64, 64, false},
      {{4, 2, 77, 131, 64}, 32, 64, false},     // GQA, lengths mid-block
      {{2, 1, 50, 97, 96}, 16, 128, false},     // MQA, head_dim 96
      {{3, 3, 129, 45, 128}, 128, 16, true},    // tokens-major, kv shorter than a block
      {{2, 2, 1, 300, 256}, 64, 32, false},     // one query row, head_dim 256
      {{1, 1, 33, 1, 16}, 16, 16, false},       // one key
      {{2, 2, 70, 600, 64}, 64, 256, false},    // long key blocks (dense only), kv mid-block
      {{2, 1, 33, 1100, 128}, 32, 512, true},   // the longest, GQA, tokens-major
  };
  uint64_t seed = 1;
  for (const Case& c : cases) {
    Qkv x(c.shape, seed++, 1.0f, c.tokens_major);
    Tensor out(c.shape.heads, c.shape.q_len, c.shape.head_dim, c.tokens_major);
    KernelOptions opts;
    opts.q_tile_rows = c.q_block;
    opts.k_block = c.k_block;
    dense_attention(c.shape, x.q, x.k, x.v, out.view, opts);
    EXPECT_LE(max_rel_error(out, reference(x), c.shape), kFp32Bound) << describe(c);
  }
}

TEST_P(Attention, DenseHandlesHugeLogitsWithoutOverflow) {
  // q, k ~ N(0, 30^2) with d = 64 gives logits of order 1e4 after scaling.
  AttentionShape s{2, 2, 70, 90, 64};
  Qkv x(s, 42, 30.0f);
  double max_logit = 0;
  for (int64_t j = 0; j < s.kv_len; ++j) {
    double dot = 0;
    for (int64_t c = 0; c < s.head_dim; ++c) dot += double(x.q.view.row(0, 0)[c]) * x.k.view.row(0, j)[c];
    max_logit = std::max(max_logit, std::abs(dot) * s.effective_scale());
  }
  ASSERT_GT(max_logit, 1e3) << "test must exercise huge logits";
  Tensor out(s.heads, s.q_len, s.head_dim);
  dense_attention(s, x.q, x.k, x.v, out.view);
  EXPECT_LE(max_rel_error(out, reference(x), s), kFp32Bound);
}

TEST_P(Attention, ResultIsBitwiseIdenticalForOneAndTwoThreads) {
  AttentionShape s{3, 3, 200, 150, 64};
  Qkv x(s, 9);
  Tensor a(s.heads, s.q_len, s.head_dim), b(s.heads, s.q_len, s.head_dim);
  KernelOptions one, two;
  one.threads = 1;
  two.threads = 2;
  one.q_tile_rows = two.q_tile_rows = 32;
  dense_attention(s, x.q, x.k, x.v, a.view, one);
  dense_attention(s, x.q, x.k, x.v, b.view, two);
  EXPECT_EQ(0, std::memcmp(a.data.data(), b.data.data(), a.data.size() * sizeof(float)));
  const BlockMask m = BlockMask::dense(s.heads, s.q_len, s.kv_len, 32, 32);
  block_sparse_attention(s, x.q, x.k, x.v, m, a.view, one);
  block_sparse_attention(s, x.q, x.k, x.v, m, b.view, two);
  EXPECT_EQ(0, std::memcmp(a.data.data(), b.data.data(), a.data.size() * sizeof(float)));
}

TEST_P(Attention, FullBlockMaskEqualsDenseBitwise) {
  AttentionShape s{4, 2, 100, 140, 64};
  Qkv x(s, 3);
  for (int64_t bs : {16, 32, 64, 128}) {
    Tensor dense(s.heads, s.q_len, s.head_dim), sparse(s.heads, s.q_len, s.head_dim);
    KernelOptions opts;
    opts.q_tile_rows = opts.k_block = bs;
    dense_attention(s, x.q, x.k, x.v, dense.view, opts);
    block_sparse_attention(s, x.q, x.k, x.v, BlockMask::dense(s.heads, s.q_len, s.kv_len, bs, bs),
                           sparse.view);
    EXPECT_EQ(0, std::memcmp(dense.data.data(), sparse.data.data(), dense.data.size() * 4)) << bs;
  }
}

BlockMask random_mask(const AttentionShape& s, int64_t qb, int64_t kb, double keep, uint64_t seed,
                      bool allow_empty) {
  std::mt19937_64 rng(seed);
  std::bernoulli_distribution coin(keep);
  std::vector<std::vector<int32_t>> rows;
  const int64_t qbs = (s.q_len + qb - 1) / qb, kbs = (s.kv_len + kb - 1) / kb;
  for (int64_t r = 0; r < s.heads * qbs; ++r) {
    std::vector<int32_t> row;
    for (int32_t c = 0; c < kbs; ++c)
      if (coin(rng)) row.push_back(c);
    if (row.empty() && !allow_empty) row.push_back(static_cast<int32_t>(rng() % kbs));
    rows.push_back(row);
  }
  return BlockMask::from_rows(s.heads, s.q_len, s.kv_len, qb, kb, rows);
}

TEST_P(Attention, BlockSparseMatchesMaskedReference) {
  const std::vector<Case> cases = {
      {{4, 2, 150, 230, 64}, 32, 16, false},
      {{2, 2, 90, 333, 128}, 16, 64, true},
      {{2, 1, 130, 260, 96}, 128, 32, false},
  };
  uint64_t seed = 100;
  for (const Case& c : cases) {
    Qkv x(c.shape, seed, 1.5f, c.tokens_major);
    const BlockMask m = random_mask(c.shape, c.q_block, c.k_block, 0.3, seed++, false);
    Tensor out(c.shape.heads, c.shape.q_len, c.shape.head_dim, c.tokens_major);
    block_sparse_attention(c.shape, x.q, x.k, x.v, m, out.view);
    EXPECT_LE(max_rel_error(out, reference(x, &m), c.shape), kFp32Bound) << describe(c);
  }
}

TEST_P(Attention, FullyMaskedQueryBlocksGiveZerosNotNan) {
  AttentionShape s{2, 2, 64, 64, 32};
  Qkv x(s, 5);
  // Head 0, query block 1 lists nothing; every other row lists block 0.
  const BlockMask m = BlockMask::from_rows(2, 64, 64, 32, 32, {{0}, {}, {0, 1}, {1}});
  Tensor out(s.heads, s.q_len, s.head_dim);
  std::fill(out.data.begin(), out.data.end(), NAN);
  block_sparse_attention(s, x.q, x.k, x.v, m, out.view);
  for (int64_t t = 32; t < 64; ++t)
    for (int64_t c = 0; c < s.head_dim; ++c) ASSERT_EQ(out.view.row(0, t)[c], 0.0f);
  EXPECT_LE(max_rel_error(out, reference(x, &m), s), kFp32Bound);
}

TEST_P(Attention, GatheredMatchesReferenceOverKeptTokens) {
  AttentionShape s{4, 2, 70, 300, 64};
  Qkv x(s, 77);
  std::vector<int32_t> kept;
  std::mt19937 rng(1);
  for (int32_t t = 0; t < s.kv_len; ++t)
    if (t < 40 || rng() % 5 == 0) kept.push_back(t);
  Tensor out(s.heads, s.q_len, s.head_dim);
  gathered_attention(s, x.q, x.k, x.v, kept, out.view);
  EXPECT_LE(max_rel_error(out, reference(x, nullptr, kept), s), kFp32Bound);

  // Nothing kept: zeros.
  std::fill(out.data.begin(), out.data.end(), NAN);
  gathered_attention(s, x.q, x.k, x.v, {}, out.view);
  for (float v : out.data) ASSERT_EQ(v, 0.0f);
}

}  // namespace
}  // namespace spattn::test
