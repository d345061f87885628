// SparseD: exact block mass and top-k selection, against brute force.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "test_util.hpp"

namespace spattn::test {
namespace {

// Block mass in double, straight from the definition.
std::vector<double> brute_mass(const Qkv& x, int64_t qb, int64_t kb) {
  const auto& s = x.shape;
  const int64_t qbs = (s.q_len + qb - 1) / qb, kbs = (s.kv_len + kb - 1) / kb;
  std::vector<double> m(static_cast<size_t>(s.heads * qbs * kbs), 0.0);
  for (int64_t h = 0; h < s.heads; ++h)
    for (int64_t t = 0; t < s.q_len; ++t) {
      std::vector<double> l(s.kv_len);
      double mx = -INFINITY;
      for (int64_t j = 0; j < s.kv_len; ++j) {
        double dot = 0;
        for (int64_t c = 0; c < s.head_dim; ++c)
          dot += double(x.q.view.row(h, t)[c]) * x.k.view.row(h / s.group_size(), j)[c];
        l[j] = dot * s.effective_scale();
        mx = std::max(mx, l[j]);
      }
      double sum = 0;
      for (double& v : l) sum += (v = std::exp(v - mx));
      const int64_t rows = std::min(qb, s.q_len - (t / qb) * qb);
      for (int64_t j = 0; j < s.kv_len; ++j)
        m[((h * qbs) + t / qb) * kbs + j / kb] += l[j] / sum / rows;
    }
  return m;
}

class Sparsed : public PerIsa {};
SPATTN_INSTANTIATE_PER_ISA(Sparsed);

TEST_P(Sparsed, BlockMassIsExactAndRowsSumToOne) {
  AttentionShape s{4, 2, 100, 150, 64};
  Qkv x(s, 21, 1.5f);
  for (auto [qb, kb] : {std::pair<int64_t, int64_t>{32, 16}, {16, 64}}) {
    const BlockMass m = block_attention_mass(s, x.q, x.k, qb, kb);
    const auto ref = brute_mass(x, qb, kb);
    ASSERT_EQ(m.mass.size(), ref.size());
    for (size_t i = 0; i < ref.size(); ++i) ASSERT_NEAR(m.mass[i], ref[i], 2e-6) << i;
    for (int64_t h = 0; h < s.heads; ++h)
      for (int64_t r = 0; r < m.q_blocks(); ++r) {
        const float* row = m.row(h, r);
        EXPECT_NEAR(std::accumulate(row, row + m.k_blocks(), 0.0), 1.0, 1e-5);
      }
  }
}

TEST_P(Sparsed, MassFromDenseLseEqualsTwoPassMass) {
  AttentionShape s{2, 2, 90, 200, 32};
  Qkv x(s, 5);
  Tensor out(s.heads, s.q_len, s.head_dim);
  std::vector<float> lse(s.heads * s.q_len);
  dense_attention_with_lse(s, x.q, x.k, x.v, out.view, lse.data());
  EXPECT_LE(max_rel_error(out, reference(x), s), kFp32Bound);
  const BlockMass a = block_attention_mass(s, x.q, x.k, 32, 32);
  const BlockMass b = block_attention_mass_from_lse(s, x.q, x.k, lse.data(), 32, 32);
  for (size_t i = 0; i < a.mass.size(); ++i) ASSERT_NEAR(a.mass[i], b.mass[i], 1e-6);
}

TEST(SparsedSelect, TopkMatchesBruteForceWithTiesToLowerIndex) {
  std::mt19937 rng(3);
  BlockMass m{3, 200, 333, 64, 32, {}};
  const int64_t kbs = m.k_blocks(), rows = m.heads * m.q_blocks();
  m.mass.resize(rows * kbs);
  // Few distinct values so ties are common.
  for (auto& v : m.mass) v = float(rng() % 5) / 10.0f;
  for (double ratio : {0.01, 0.1, 0.33, 0.5, 1.0}) {
    const BlockMask mask = sparsed_select(m, ratio);
    EXPECT_NO_THROW(mask.validate());
    const int64_t keep = std::max<int64_t>(1, int64_t(std::ceil(ratio * kbs - 1e-9)));
    for (int64_t r = 0; r < rows; ++r) {
      const float* w = m.mass.data() + r * kbs;
      std::vector<int32_t> idx(kbs);
      std::iota(idx.begin(), idx.end(), 0);
      std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return w[a] > w[b]; });
      std::vector<int32_t> want(idx.begin(), idx.begin() + keep);
      std::sort(want.begin(), want.end());
      const auto got = mask.row(r / m.q_blocks(), r % m.q_blocks());
      ASSERT_EQ(std::vector<int32_t>(got.begin(), got.end()), want) << "ratio " << ratio;
    }
  }
  EXPECT_THROW(sparsed_select(m, 0.0), Error);
  EXPECT_THROW(sparsed_select(m, 1.5), Error);
}

TEST(SparsedSelect, PatternIsHeadSpecific) {
  // Head 0 attends to block 0, head 1 to the last block: the masks must differ.
  AttentionShape s{2, 2, 64, 256, 32};
  Qkv x(s, 8);
  for (int64_t j = 0; j < 64; ++j) {
    for (int64_t c = 0; c < 32; ++c) {
      x.k.view.row(0, j)[c] = 0.0f;
      x.k.view.row(1, 192 + j)[c] = 0.0f;
    }
    x.k.view.row(0, j)[0] = 8.0f;
    x.k.view.row(1, 192 + j)[1] = 8.0f;
  }
  for (int64_t t = 0; t < 64; ++t) {
    x.q.view.row(0, t)[0] = 8.0f;
    x.q.view.row(1, t)[1] = 8.0f;
  }
  const BlockMask mask = sparsed_select(block_attention_mass(s, x.q, x.k, 64, 64), 0.25);
  ASSERT_EQ(mask.row(0, 0).size(), 1u);
  EXPECT_EQ(mask.row(0, 0)[0], 0);
  EXPECT_EQ(mask.row(1, 0)[0], 3);
}

}  // namespace
}  // namespace spattn::test
