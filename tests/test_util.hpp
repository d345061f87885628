#pragma once
// Shared helpers for the GoogleTest suites: owned tensors, random fills, and
// the error measures the kernel tests assert on.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "spattn/lab/lab.hpp"

namespace spattn::test {

struct Tensor {
  std::vector<float> data;
  TensorView view;
  Tensor(int64_t heads, int64_t tokens, int64_t d, bool tokens_major = false)
      : data(static_cast<size_t>(heads * tokens * d), 0.0f) {
    view = tokens_major ? TensorView::tokens_major(data.data(), heads, tokens, d)
                        : TensorView::heads_major(data.data(), heads, tokens, d);
  }
  // A copy views its own data (the default copy would view the original's).
  Tensor(const Tensor& o) : data(o.data), view(o.view) { view.data = data.data(); }
  Tensor& operator=(const Tensor& o) {
    data = o.data;
    view = o.view;
    view.data = data.data();
    return *this;
  }
  operator ConstTensorView() const { return view; }  // NOLINT
  operator InputView() const { return view; }        // NOLINT
};

inline void fill_normal(Tensor& t, uint64_t seed, float stddev = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  for (float& x : t.data) x = dist(rng);
}

struct Qkv {
  AttentionShape shape;
  Tensor q, k, v;
  Qkv(const AttentionShape& s, uint64_t seed, float qk_std = 1.0f, bool tokens_major = false)
      : shape(s),
        q(s.heads, s.q_len, s.head_dim, tokens_major),
        k(s.kv_heads, s.kv_len, s.head_dim, tokens_major),
        v(s.kv_heads, s.kv_len, s.head_dim, tokens_major) {
    fill_normal(q, seed * 3 + 1, qk_std);
    fill_normal(k, seed * 3 + 2, qk_std);
    fill_normal(v, seed * 3 + 3);
  }
};

// max |out - ref| / max |ref| over all outputs (ref from reference_attention).
inline double max_rel_error(const Tensor& out, const std::vector<double>& ref,
                            const AttentionShape& s) {
  double max_err = 0.0, max_ref = 0.0;
  for (int64_t h = 0; h < s.heads; ++h)
    for (int64_t t = 0; t < s.q_len; ++t)
      for (int64_t c = 0; c < s.head_dim; ++c) {
        const double r = ref[(h * s.q_len + t) * s.head_dim + c];
        const double o = out.view.row(h, t)[c];
        if (std::isnan(o)) return INFINITY;
        max_err = std::max(max_err, std::abs(o - r));
        max_ref = std::max(max_ref, std::abs(r));
      }
  return max_ref > 0 ? max_err / max_ref : max_err;
}

inline std::vector<double> reference(const Qkv& x, const BlockMask* mask = nullptr,
                                     std::span<const int32_t> kept = {}) {
  std::vector<double> ref(static_cast<size_t>(x.shape.heads * x.shape.q_len * x.shape.head_dim));
  reference_attention(x.shape, x.q, x.k, x.v, ref.data(), mask, kept);
  return ref;
}

// The fp32 bound every kernel must meet: max abs error <= 2e-5 x max |output|.
inline constexpr double kFp32Bound = 2e-5;

// The key blocks of one mask row, as a vector (for EXPECT_EQ).
inline std::vector<int32_t> row_vec(const BlockMask& m, int64_t h, int64_t qb) {
  const auto r = m.row(h, qb);
  return {r.begin(), r.end()};
}

// fn must throw spattn::Error (not another exception) whose message contains
// every needle.
inline void expect_error(const std::function<void()>& fn, const std::vector<std::string>& needles) {
  try {
    fn();
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const std::string& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
    return;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a spattn::Error: " << e.what();
    return;
  }
  ADD_FAILURE() << "no spattn::Error thrown";
}

// Runs a test body once per ISA this host supports.
class PerIsa : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    saved_ = active_isa();
    set_isa(GetParam());
  }
  void TearDown() override { set_isa(saved_); }
  Isa saved_ = Isa::scalar;
};

inline std::string isa_param_name(const ::testing::TestParamInfo<Isa>& info) {
  return isa_name(info.param);
}

#define SPATTN_INSTANTIATE_PER_ISA(suite) \
  INSTANTIATE_TEST_SUITE_P(Isa, suite, ::testing::ValuesIn(::spattn::supported_isas()), \
                           ::spattn::test::isa_param_name)

}  // namespace spattn::test
