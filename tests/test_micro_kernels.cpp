// Each micro-kernel of the active table, on every ISA, against double precision.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "kernels/kernel_table.hpp"
#include "test_util.hpp"

namespace spattn::test {
namespace {

class MicroKernels : public PerIsa {
 protected:
  const detail::KernelTable& kt() { return detail::active_kernels(); }
};
SPATTN_INSTANTIATE_PER_ISA(MicroKernels);

TEST_P(MicroKernels, ExpIsAccurateOverTheSoftmaxRange) {
  // Softmax feeds exp with x - max <= 0; below about -87 the result underflows.
  std::vector<float> x;
  for (float v = -87.0f; v <= 0.0f; v += 0.0137f) x.push_back(v);
  x.push_back(0.0f);
  x.push_back(-1e-7f);
  std::vector<float> y = x;
  kt().exp_inplace(y.data(), static_cast<int64_t>(y.size()));
  double worst = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double ref = std::exp(static_cast<double>(x[i]));
    worst = std::max(worst, std::abs(y[i] - ref) / ref);
  }
  EXPECT_LE(worst, 1e-6);
  // Far below the range: 0 (never NaN), and -inf gives exactly 0.
  std::vector<float> tiny = {-200.0f, -1e4f, -std::numeric_limits<float>::infinity()};
  kt().exp_inplace(tiny.data(), 3);
  for (float t : tiny) {
    EXPECT_FALSE(std::isnan(t));
    EXPECT_LE(t, 1e-30f);
  }
}

TEST_P(MicroKernels, QkScoresMatchesDoubleForEdgeTiles) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  const int W = kt().vector_floats;
  for (int d : {16, 48, 128, 256}) {
    for (int rows : {1, 3, 8, 13}) {
      for (int cols : {W, 3 * W, 64}) {
        const int ld_kt = 64, ld_s = 64;
        if (cols > ld_kt) continue;
        std::vector<float> q(rows * d + 5), kt_(d * ld_kt), s(rows * ld_s, -1.0f);
        for (auto& x : q) x = nd(rng);
        for (auto& x : kt_) x = nd(rng);
        kt().qk_scores(q.data(), d, rows, kt_.data(), ld_kt, cols, d, 0.25f, s.data(), ld_s);
        for (int r = 0; r < rows; ++r)
          for (int j = 0; j < cols; ++j) {
            double ref = 0;
            for (int c = 0; c < d; ++c) ref += double(q[r * d + c]) * kt_[c * ld_kt + j];
            ASSERT_NEAR(s[r * ld_s + j], 0.25 * ref, 2e-5 * std::sqrt(d))
                << "d=" << d << " rows=" << rows << " cols=" << cols;
          }
      }
    }
  }
}

TEST_P(MicroKernels, OnlineSoftmaxOverTwoTilesEqualsOneShotSoftmax) {
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 5.0f);
  const int rows = 5, ld = 48;
  for (int cols : {1, 7, 16, 33, 48}) {
    std::vector<float> a(rows * ld), b(rows * ld);
    for (auto& x : a) x = nd(rng);
    for (auto& x : b) x = nd(rng) + 10.0f;  // second tile raises the max: rescale < 1
    std::vector<float> a0 = a, b0 = b;
    std::vector<float> m(rows, -INFINITY), l(rows, 0.0f), alpha(rows);
    kt().online_softmax_update(a.data(), ld, rows, cols, m.data(), l.data(), alpha.data());
    for (int r = 0; r < rows; ++r) EXPECT_EQ(alpha[r], 0.0f) << "first tile has nothing to rescale";
    std::vector<float> m1 = m;
    kt().online_softmax_update(b.data(), ld, rows, cols, m.data(), l.data(), alpha.data());
    for (int r = 0; r < rows; ++r) {
      double mx = -INFINITY;
      for (int j = 0; j < cols; ++j) mx = std::max({mx, double(a0[r * ld + j]), double(b0[r * ld + j])});
      double sum = 0;
      for (int j = 0; j < cols; ++j) sum += std::exp(a0[r * ld + j] - mx) + std::exp(b0[r * ld + j] - mx);
      EXPECT_FLOAT_EQ(m[r], float(mx));
      EXPECT_NEAR(alpha[r], std::exp(double(m1[r]) - mx), 1e-6 * std::max(1.0, double(alpha[r])));
      EXPECT_NEAR(l[r], sum, 2e-6 * sum) << "cols=" << cols;
      for (int j = 0; j < cols; ++j)
        EXPECT_NEAR(b[r * ld + j], std::exp(double(b0[r * ld + j]) - mx), 2e-6);
    }
  }
}

// The probabilities' exp (a cheaper 2^t on AVX2 and AVX-512) down to where
// fp32 underflows: while e^x is a normal float, relative error 1e-6 plus
// |x| 2^-24 (the 2^t paths round their argument x log2 e to fp32, as any
// softmax rounds x - max: an error of |x| 2^-24 in the exponent), and
// beyond that 0 or a tiny value, never NaN or negative. Every vector lane
// and the padded tail see the whole range.
TEST_P(MicroKernels, OnlineSoftmaxProbabilitiesHoldDownToUnderflow) {
  std::vector<float> x;
  for (float v = 0.0f; v >= -110.0f; v -= 0.173f) x.push_back(v);
  const int cols = static_cast<int>(x.size());
  std::vector<float> s = x;
  float m = -INFINITY, l = 0.0f, alpha = 0.0f;
  kt().online_softmax_update(s.data(), cols, 1, cols, &m, &l, &alpha);
  ASSERT_EQ(m, 0.0f);
  const double normal_min = std::ldexp(1.0, -126);
  double sum = 0.0;
  for (int j = 0; j < cols; ++j) {
    const double ref = std::exp(static_cast<double>(x[j]));
    sum += ref;
    ASSERT_FALSE(std::isnan(s[j])) << "x = " << x[j];
    ASSERT_GE(s[j], 0.0f) << "x = " << x[j];
    if (ref >= 2 * normal_min)
      ASSERT_NEAR(s[j], ref, (1e-6 + std::abs(x[j]) * 0x1p-24) * ref) << "x = " << x[j];
    else
      ASSERT_LE(s[j], 2 * normal_min) << "x = " << x[j];
  }
  EXPECT_NEAR(l, sum, 2e-6 * sum);
}

TEST_P(MicroKernels, OnlineSoftmaxKeepsAllMinusInfRowsAtZero) {
  const int rows = 2, cols = 19, ld = 32;
  std::vector<float> s(rows * ld, -INFINITY);
  std::vector<float> m(rows, -INFINITY), l(rows, 0.0f), alpha(rows, 7.0f);
  kt().online_softmax_update(s.data(), ld, rows, cols, m.data(), l.data(), alpha.data());
  for (int r = 0; r < rows; ++r) {
    EXPECT_EQ(l[r], 0.0f);
    EXPECT_EQ(m[r], -INFINITY);
    EXPECT_FALSE(std::isnan(alpha[r]));
    for (int j = 0; j < cols; ++j) EXPECT_EQ(s[r * ld + j], 0.0f);
  }
}

TEST_P(MicroKernels, PvAccumulateMatchesDouble) {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd;
  for (int d : {16, 96, 128, 256}) {
    for (int rows : {1, 4, 7}) {
      for (int cols : {1, 17, 64}) {
        const int ld_p = 64, v_stride = d + 16;
        std::vector<float> o(rows * d), p(rows * ld_p), v(cols * v_stride), resc(rows);
        for (auto& x : o) x = nd(rng);
        for (auto& x : p) x = std::abs(nd(rng));
        for (auto& x : v) x = nd(rng);
        for (auto& x : resc) x = std::abs(nd(rng));
        std::vector<float> o0 = o;
        kt().pv_accumulate(o.data(), d, rows, resc.data(), p.data(), ld_p, cols, v.data(), v_stride, d);
        for (int r = 0; r < rows; ++r)
          for (int c = 0; c < d; ++c) {
            double ref = double(o0[r * d + c]) * resc[r];
            for (int j = 0; j < cols; ++j) ref += double(p[r * ld_p + j]) * v[j * v_stride + c];
            ASSERT_NEAR(o[r * d + c], ref, 1e-5 * (1 + cols)) << "d=" << d;
          }
      }
    }
  }
}

TEST_P(MicroKernels, PackKeyBlocksTransposesAndZeroPads) {
  const int d = 32, kb = 16;
  const int64_t kv_len = 21, stride = 40;
  std::vector<float> k(kv_len * stride);
  for (size_t i = 0; i < k.size(); ++i) k[i] = float(i);
  std::vector<float> packed(detail::packed_key_floats(kv_len, kb, d), -1.0f);
  kt().pack_key_blocks(k.data(), stride, kv_len, d, kb, packed.data());
  for (int64_t b = 0; b < 2; ++b)
    for (int c = 0; c < d; ++c)
      for (int j = 0; j < kb; ++j) {
        const int64_t t = b * kb + j;
        const float want = t < kv_len ? k[t * stride + c] : 0.0f;
        ASSERT_EQ(packed[(b * d + c) * kb + j], want);
      }
}

}  // namespace
}  // namespace spattn::test
