// The dense baselines (naive, OpenBLAS) against the double-precision reference.
#include <gtest/gtest.h>

#include "test_util.hpp"

namespace spattn::test {
namespace {

const std::vector<AttentionShape> kShapes = {
    {2, 2, 65, 129, 64}, {4, 2, 300, 77, 128}, {2, 1, 10, 33, 40}, {1, 1, 257, 513, 7}};

TEST(Baselines, NaiveMatchesReferenceIncludingOddHeadDims) {
  uint64_t seed = 1;
  for (const auto& s : kShapes) {
    Qkv x(s, seed++);
    Tensor out(s.heads, s.q_len, s.head_dim);
    naive_attention(s, x.q, x.k, x.v, out.view);
    EXPECT_LE(max_rel_error(out, reference(x), s), kFp32Bound) << s.head_dim;
  }
}

TEST(Baselines, BlasMatchesReferenceIncludingOddHeadDims) {
  if (!have_blas()) GTEST_SKIP() << "built without OpenBLAS";
  uint64_t seed = 10;
  for (const auto& s : kShapes) {
    const bool tokens_major = seed % 2 == 0;
    Qkv x(s, seed++, 1.0f, tokens_major);
    Tensor out(s.heads, s.q_len, s.head_dim, tokens_major);
    blas_attention(s, x.q, x.k, x.v, out.view);
    EXPECT_LE(max_rel_error(out, reference(x), s), kFp32Bound) << s.head_dim;
  }
}

TEST(Baselines, ReferenceOfOneKeyIsThatKeysValue) {
  AttentionShape s{1, 1, 3, 1, 5};
  Qkv x(s, 3);
  const auto ref = reference(x);
  for (int64_t t = 0; t < 3; ++t)
    for (int64_t c = 0; c < 5; ++c) EXPECT_DOUBLE_EQ(ref[t * 5 + c], x.v.view.row(0, 0)[c]);
}

}  // namespace
}  // namespace spattn::test
