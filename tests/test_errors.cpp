// Bad input at the API boundary: each case raises spattn::Error whose message
// names the offending argument.
#include <gtest/gtest.h>

#include <functional>

#include "test_util.hpp"

namespace spattn::test {
namespace {

void expect_error_naming(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no spattn::Error; expected one naming '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "message '" << e.what() << "' does not name '" << needle << "'";
  }
}

struct Fixture {
  AttentionShape s{4, 2, 40, 50, 32};
  Qkv x{s, 1};
  Tensor out{4, 40, 32};
};

TEST(Errors, ShapeFields) {
  Fixture f;
  auto run = [&](AttentionShape s) { dense_attention(s, f.x.q, f.x.k, f.x.v, f.out.view); };
  AttentionShape s = f.s;
  s.kv_heads = 3;
  expect_error_naming([&] { run(s); }, "kv_heads");
  s = f.s;
  s.head_dim = 0;
  expect_error_naming([&] { run(s); }, "head_dim");
  s = f.s;
  s.heads = -1;
  expect_error_naming([&] { run(s); }, "heads");
  s = f.s;
  s.q_len = 0;
  expect_error_naming([&] { run(s); }, "q_len");
  s = f.s;
  s.scale = NAN;
  expect_error_naming([&] { run(s); }, "scale");
}

TEST(Errors, ViewsMustMatchTheShapeAndBeNonNull) {
  Fixture f;
  ConstTensorView q = f.x.q, k = f.x.k, v = f.x.v;
  TensorView out = f.out.view;
  const auto& s = f.s;
  {
    ConstTensorView bad = k;
    bad.tokens = 49;
    expect_error_naming([&] { dense_attention(s, q, bad, v, out); }, "k.tokens");
  }
  {
    ConstTensorView bad = v;
    bad.data = nullptr;
    expect_error_naming([&] { dense_attention(s, q, k, bad, out); }, "v.data");
  }
  {
    ConstTensorView bad = q;
    bad.head_dim = 16;
    expect_error_naming([&] { naive_attention(s, bad, k, v, out); }, "q.head_dim");
  }
  {
    TensorView bad = out;
    bad.heads = 2;
    expect_error_naming([&] { blas_attention(s, q, k, v, bad); }, "out.heads");
  }
  {
    ConstTensorView bad = k;
    bad.token_stride = 0;
    expect_error_naming([&] { dense_attention(s, q, bad, v, out); }, "k.token_stride");
  }
  expect_error_naming([&] { reference_attention(s, q, k, v, nullptr); }, "out");
}

TEST(Errors, KernelLimits) {
  AttentionShape s{1, 1, 20, 20, 24};  // 24 is not a multiple of 16
  Qkv x(s, 2);
  Tensor out(1, 20, 24);
  expect_error_naming([&] { dense_attention(s, x.q, x.k, x.v, out.view); }, "head_dim");
  EXPECT_NO_THROW(naive_attention(s, x.q, x.k, x.v, out.view)) << "baselines take any head_dim";
  Fixture f;
  KernelOptions o;
  o.k_block = 48;
  expect_error_naming([&] { dense_attention(f.s, f.x.q, f.x.k, f.x.v, f.out.view, o); }, "k_block");
  o.k_block = 1024;  // dense key blocks stop at 512
  expect_error_naming([&] { dense_attention(f.s, f.x.q, f.x.k, f.x.v, f.out.view, o); }, "k_block");
  o = {};
  o.threads = -2;
  expect_error_naming([&] { dense_attention(f.s, f.x.q, f.x.k, f.x.v, f.out.view, o); }, "threads");
}

TEST(Errors, BlockMaskMustFitTheShape) {
  Fixture f;
  const auto& s = f.s;
  BlockMask m = BlockMask::dense(s.heads, s.q_len, s.kv_len, 16, 16);
  m.heads = 2;  // wrong row count now, too
  expect_error_naming([&] { block_sparse_attention(s, f.x.q, f.x.k, f.x.v, m, f.out.view); },
                      "row_ptr");
  BlockMask m2 = BlockMask::dense(s.heads, s.q_len, s.kv_len + 20, 16, 16);
  expect_error_naming([&] { block_sparse_attention(s, f.x.q, f.x.k, f.x.v, m2, f.out.view); },
                      "mask.kv_len");
  BlockMask m3 = BlockMask::dense(s.heads, s.q_len, s.kv_len, 16, 16);
  m3.col_idx[1] = 0;
  expect_error_naming([&] { block_sparse_attention(s, f.x.q, f.x.k, f.x.v, m3, f.out.view); },
                      "col_idx");
  BlockMask m4 = BlockMask::dense(s.heads, s.q_len, s.kv_len, 24, 24);
  expect_error_naming([&] { block_sparse_attention(s, f.x.q, f.x.k, f.x.v, m4, f.out.view); },
                      "q_block");
}

TEST(Errors, GatheredKeptTokens) {
  Fixture f;
  const std::vector<int32_t> unsorted = {3, 2}, out_of_range = {0, 50}, negative = {-1};
  for (const auto* kept : {&unsorted, &out_of_range, &negative})
    expect_error_naming(
        [&] { gathered_attention(f.s, f.x.q, f.x.k, f.x.v, *kept, f.out.view); }, "kept[");
}

TEST(Errors, ThreadEnvironmentVariable) {
  setenv("SPATTN_NUM_THREADS", "zero", 1);
  expect_error_naming([] { resolve_threads({}); }, "SPATTN_NUM_THREADS");
  setenv("SPATTN_NUM_THREADS", "3", 1);
  EXPECT_EQ(resolve_threads({}), 3);
  unsetenv("SPATTN_NUM_THREADS");
}

}  // namespace
}  // namespace spattn::test
