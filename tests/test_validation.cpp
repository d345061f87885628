// Validation audit of the C++ API boundary: one test per rule added or made
// explicit by it (the older rules are in test_errors.cpp, test_patterns.cpp
// and test_session.cpp). Each bad argument raises spattn::Error naming the
// argument and its value, and nothing crashes on non-finite input.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <initializer_list>
#include <limits>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace spattn::test {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

struct Case {
  AttentionShape s{2, 1, 45, 70, 32};
  Qkv x{s, 7};
  Tensor out{2, 45, 32};
};

// Rule: views whose heads overlap (head_stride < head_dim with heads > 1).
TEST(Validation, HeadStrideMustNotOverlapHeads) {
  Case c;
  TensorView bad = c.out.view;
  bad.head_stride = 16;
  expect_error([&] { dense_attention(c.s, c.x.q, c.x.k, c.x.v, bad); }, {"out.head_stride", "16", "overlap"});
  ConstTensorView q = c.x.q;
  q.head_stride = 8;
  expect_error([&] { dense_attention(c.s, q, c.x.k, c.x.v, c.out.view); }, {"q.head_stride", "8"});
}

// Rule: negative strides are refused (they would walk before data).
TEST(Validation, NegativeStridesAreRefused) {
  Case c;
  ConstTensorView k = c.x.k;
  k.token_stride = -32;
  expect_error([&] { dense_attention(c.s, c.x.q, k, c.x.v, c.out.view); }, {"k.token_stride", "-32"});
  ConstTensorView v = c.x.v;
  v.head_stride = -1;
  expect_error([&] { block_sparse_attention(c.s, c.x.q, c.x.k, v, BlockMask::dense(2, 45, 70, 16, 16), c.out.view); },
               {"v.head_stride", "-1"});
}

// Rule (guarantee): no alignment is required; a pointer one float off gives
// the same result bit for bit.
TEST(Validation, NoAlignmentRequired) {
  Case c;
  const AttentionShape& s = c.s;
  auto shifted = [](const Tensor& t) {
    std::vector<float> buf(t.data.size() + 1);
    std::copy(t.data.begin(), t.data.end(), buf.begin() + 1);
    return buf;
  };
  std::vector<float> q = shifted(c.x.q), k = shifted(c.x.k), v = shifted(c.x.v);
  std::vector<float> o(c.out.data.size() + 1);
  dense_attention(s, c.x.q, c.x.k, c.x.v, c.out.view);
  dense_attention(s, ConstTensorView::heads_major(q.data() + 1, 2, 45, 32),
                  ConstTensorView::heads_major(k.data() + 1, 1, 70, 32),
                  ConstTensorView::heads_major(v.data() + 1, 1, 70, 32),
                  TensorView::heads_major(o.data() + 1, 2, 45, 32));
  EXPECT_TRUE(std::equal(c.out.data.begin(), c.out.data.end(), o.begin() + 1));
}

// Rule: KernelOptions::check_finite refuses NaN / Inf, naming tensor, head and token.
TEST(Validation, CheckFiniteNamesTensorHeadAndToken) {
  KernelOptions opts;
  opts.check_finite = true;
  {
    Case c;
    c.x.q.view.row(1, 44)[31] = kNaN;
    expect_error([&] { dense_attention(c.s, c.x.q, c.x.k, c.x.v, c.out.view, opts); },
                 {"dense_attention", "'q'", "nan", "head 1", "token 44", "element 31"});
  }
  {
    Case c;
    c.x.k.view.row(0, 3)[0] = -kInf;
    const BlockMask m = BlockMask::dense(2, 45, 70, 32, 32);
    expect_error([&] { block_sparse_attention(c.s, c.x.q, c.x.k, c.x.v, m, c.out.view, opts); },
                 {"block_sparse_attention", "'k'", "-inf", "head 0", "token 3"});
  }
  {
    Case c;
    c.x.v.view.row(0, 69)[5] = kInf;
    const std::vector<int32_t> kept = {0, 1, 69};
    expect_error([&] { gathered_attention(c.s, c.x.q, c.x.k, c.x.v, kept, c.out.view, opts); },
                 {"gathered_attention", "'v'", "inf", "token 69"});
    std::vector<float> lse(2 * 45);
    expect_error([&] { dense_attention_with_lse(c.s, c.x.q, c.x.k, c.x.v, c.out.view, lse.data(), opts); },
                 {"'v'", "token 69"});
  }
  Case c;  // finite input passes the check
  EXPECT_NO_THROW(dense_attention(c.s, c.x.q, c.x.k, c.x.v, c.out.view, opts));
}

// Rule (documented behaviour): without check_finite, non-finite values
// propagate and nothing crashes, through every kernel and pattern.
TEST(Validation, NonFiniteInputsPropagateWithoutCrashing) {
  Case c;
  c.x.q.view.row(0, 10)[2] = kNaN;
  c.x.k.view.row(0, 20)[1] = kInf;
  c.x.v.view.row(0, 30)[0] = kNaN;
  dense_attention(c.s, c.x.q, c.x.k, c.x.v, c.out.view);
  EXPECT_TRUE(std::isnan(c.out.view.row(0, 10)[0])) << "a NaN query row gives a NaN output row";
  EXPECT_TRUE(std::isnan(c.out.view.row(0, 0)[0])) << "a NaN / Inf key reaches every query";
  EXPECT_TRUE(std::isnan(c.out.view.row(1, 0)[0])) << "head 1 shares kv head 0 (GQA)";
  block_sparse_attention(c.s, c.x.q, c.x.k, c.x.v, BlockMask::dense(2, 45, 70, 16, 16), c.out.view);
  const std::vector<int32_t> kept = {0, 20, 30, 69};
  gathered_attention(c.s, c.x.q, c.x.k, c.x.v, kept, c.out.view);
  const BlockMass mass = block_attention_mass(c.s, c.x.q, c.x.k, 16, 16);
  const BlockMask top = sparsed_select(mass, 0.3);
  EXPECT_NO_THROW(top.validate());
  UnisparseParams up;
  up.block_size = 16;
  up.granularities = {16, 32};
  EXPECT_NO_THROW(unisparse_select(c.s, c.x.q, c.x.k, up).validate());
  up.select = UnisparseParams::Select::topk;
  EXPECT_NO_THROW(unisparse_select(c.s, c.x.q, c.x.k, up).validate());
  SessionConfig cfg;
  cfg.total_steps = 4;
  cfg.block_size = 16;
  cfg.warmup_fraction = 0.25;
  DiffusionAttention layer(c.s, cfg);
  for (int i = 0; i < 4; ++i) layer.step(c.x.q, c.x.k, c.x.v, c.out.view);
}

// Non-finite keys propagate on every ISA path (the vector max drops NaN, so
// a block of NaN logits must not be taken for an empty block).
TEST(Validation, NaNKeyPropagatesOnEveryIsa) {
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512, Isa::neon}) {
    if (!isa_supported(isa)) continue;
    const Isa saved = active_isa();
    set_isa(isa);
    Case c;
    for (int64_t t = 0; t < 16; ++t) c.x.k.view.row(0, t)[0] = kNaN;  // every logit of key block 0
    dense_attention(c.s, c.x.q, c.x.k, c.x.v, c.out.view);
    EXPECT_TRUE(std::isnan(c.out.view.row(0, 0)[0])) << isa_name(isa);
    std::vector<float> lse(2 * 45);
    dense_attention_with_lse(c.s, c.x.q, c.x.k, c.x.v, c.out.view, lse.data());
    EXPECT_TRUE(std::isnan(lse[0])) << isa_name(isa);
    set_isa(saved);
  }
}

// Rule: sparsed_select refuses a BlockMass with non-positive sizes (its block
// counts would divide by zero).
TEST(Validation, SparsedSelectChecksMassSizes) {
  BlockMass m{1, 32, 32, 16, 16, std::vector<float>(4, 0.25f)};
  BlockMass bad = m;
  bad.q_block = 0;
  expect_error([&] { sparsed_select(bad, 0.5); }, {"mass.q_block", "0"});
  bad = m;
  bad.k_block = -16;
  expect_error([&] { sparsed_select(bad, 0.5); }, {"mass.k_block", "-16"});
  bad = m;
  bad.heads = 0;
  expect_error([&] { sparsed_select(bad, 0.5); }, {"mass.heads"});
  EXPECT_NO_THROW(sparsed_select(m, 0.5).validate());
}

// Rule: NaN block mass ranks lowest in sparsed_select (a NaN in the sort
// comparison would break partial_sort's ordering).
TEST(Validation, SparsedSelectRanksNaNMassLowest) {
  BlockMass m{1, 16, 64, 16, 16, {kNaN, 0.1f, 0.7f, 0.2f}};
  const BlockMask top = sparsed_select(m, 0.5);
  ASSERT_EQ(top.col_idx.size(), 2u);
  EXPECT_EQ(top.col_idx[0], 2);
  EXPECT_EQ(top.col_idx[1], 3);
}

SessionConfig base_config() {
  SessionConfig c;
  c.total_steps = 8;
  c.block_size = 16;
  return c;
}

// The policy-parameter rules, each at session construction.
TEST(Validation, SessionTopkRatioInZeroOne) {
  const AttentionShape s{2, 1, 45, 70, 32};
  for (double bad : {0.0, -0.1, 1.5, double(kNaN)}) {
    SessionConfig c = base_config();
    c.topk_ratio = bad;
    expect_error([&] { (void)DiffusionAttention(s, c); }, {"topk_ratio"});
  }
}

TEST(Validation, SessionWarmupFractionInZeroOne) {
  const AttentionShape s{2, 1, 45, 70, 32};
  for (double bad : {1.0, -0.1, double(kNaN)}) {
    SessionConfig c = base_config();
    c.warmup_fraction = bad;
    expect_error([&] { (void)DiffusionAttention(s, c); }, {"warmup_fraction"});
  }
}

TEST(Validation, SessionStepsPositive) {
  SessionConfig c = base_config();
  c.total_steps = 0;
  expect_error([&] { (void)DiffusionAttention({2, 1, 45, 70, 32}, c); }, {"total_steps", "0"});
}

TEST(Validation, SessionDpadWindowNonNegative) {
  SessionConfig c = base_config();
  c.policy = Policy::dpad;
  c.dpad.window = -3;
  expect_error([&] { (void)DiffusionAttention({2, 1, 45, 70, 32}, c); }, {"dpad.window", "-3"});
}

// Rule: sigma must be positive and finite (inf used to pass the session check).
TEST(Validation, SessionDpadSigmaPositiveFinite) {
  for (double bad : {0.0, -1.0, double(kNaN), double(kInf)}) {
    SessionConfig c = base_config();
    c.policy = Policy::dpad_sparsed;
    c.dpad.rule = DpadParams::Rule::dense_window;
    c.dpad.sigma = bad;
    expect_error([&] { (void)DiffusionAttention({2, 1, 45, 70, 32}, c); }, {"dpad.sigma"});
  }
}

// Rule: a Policy value outside the enum is refused.
TEST(Validation, SessionPolicyMustBeAnEnumValue) {
  SessionConfig c = base_config();
  c.policy = static_cast<Policy>(42);
  expect_error([&] { (void)DiffusionAttention({2, 1, 45, 70, 32}, c); }, {"policy", "42"});
}

// Rule: kernel options are checked at construction, not at the first step.
TEST(Validation, SessionKernelOptionsAtConstruction) {
  SessionConfig c = base_config();
  c.kernel.threads = -1;
  expect_error([&] { (void)DiffusionAttention({2, 1, 45, 70, 32}, c); }, {"kernel.threads", "-1"});
  c = base_config();
  c.kernel.q_tile_rows = 48;
  expect_error([&] { (void)DiffusionAttention({2, 1, 45, 70, 32}, c); }, {"kernel.q_tile_rows", "48"});
  c = base_config();
  c.kernel.k_block = 1024;
  expect_error([&] { (void)DiffusionAttention({2, 1, 45, 70, 32}, c); }, {"kernel.k_block", "1024"});
  c = base_config();
  c.kernel.k_block = -64;
  expect_error([&] { (void)DiffusionAttention({2, 1, 45, 70, 32}, c); }, {"kernel.k_block", "-64"});
  c = base_config();
  c.kernel.q_tile_rows = c.kernel.k_block = 0;  // 0: the ISA's preferred tiles
  EXPECT_NO_THROW((void)DiffusionAttention({2, 1, 45, 70, 32}, c));
}

// Rule: head_dim the kernels cannot run is refused at construction.
TEST(Validation, SessionHeadDimAtConstruction) {
  expect_error([&] { (void)DiffusionAttention({2, 1, 45, 70, 24}, base_config()); }, {"head_dim", "24"});
  expect_error([&] { (void)DiffusionAttention({2, 1, 45, 70, 272}, base_config()); }, {"head_dim", "272"});
}

// Rule: UniSparse parameters (tau, granularities, min_blocks, ...) are checked
// at construction for the unisparse policy, named under "unisparse.".
TEST(Validation, SessionUnisparseParamsAtConstruction) {
  const AttentionShape s{2, 1, 45, 70, 32};
  auto with = [&](auto edit) {
    SessionConfig c = base_config();
    c.policy = Policy::unisparse;
    edit(c.unisparse);
    return c;
  };
  expect_error([&] { (void)DiffusionAttention(s, with([](UnisparseParams& p) { p.tau = 0.0; })); },
               {"unisparse.tau", "0"});
  expect_error([&] { (void)DiffusionAttention(s, with([](UnisparseParams& p) { p.tau = 1.5; })); },
               {"unisparse.tau", "1.5"});
  expect_error([&] { (void)DiffusionAttention(s, with([](UnisparseParams& p) { p.granularities = {}; })); },
               {"unisparse.granularities"});
  expect_error([&] { (void)DiffusionAttention(s, with([](UnisparseParams& p) { p.granularities = {16, -4}; })); },
               {"unisparse.granularities[1]", "-4"});
  expect_error([&] { (void)DiffusionAttention(s, with([](UnisparseParams& p) { p.granularities = {24}; })); },
               {"unisparse.granularities[0]", "24"});
  expect_error([&] { (void)DiffusionAttention(s, with([](UnisparseParams& p) { p.min_blocks = 0; })); },
               {"unisparse.min_blocks"});
  // Another policy ignores the unisparse block.
  SessionConfig c = base_config();
  c.unisparse.tau = 0.0;
  EXPECT_NO_THROW((void)DiffusionAttention(s, c));
}

// Rule: window+sink sizes are checked at construction for the window policy.
TEST(Validation, SessionWindowParamsAtConstruction) {
  const AttentionShape s{2, 1, 45, 70, 32};
  SessionConfig c = base_config();
  c.policy = Policy::window;
  c.window.sink_tokens = -1;
  expect_error([&] { (void)DiffusionAttention(s, c); }, {"window.sink_tokens", "-1"});
  c.window.sink_tokens = 0;
  c.window.window_tokens = -64;
  expect_error([&] { (void)DiffusionAttention(s, c); }, {"window.window_tokens", "-64"});
}

// Rule: step() checks its views before any path reads them (the dpad+sparsed
// path copies k/v itself and used to dereference a null view).
TEST(Validation, SessionStepChecksViewsFirst) {
  // DPad's queries and keys are the same tokens: a square case.
  AttentionShape s{2, 1, 70, 70, 32};
  Qkv x{s, 7};
  Tensor out{2, 70, 32};
  SessionConfig cfg = base_config();
  cfg.policy = Policy::dpad_sparsed;
  cfg.dpad.block_start = 10;
  cfg.dpad.block_end = 26;
  cfg.dpad.window = 8;
  cfg.dpad.sigma = 4.0;
  DiffusionAttention layer(s, cfg);
  ConstTensorView k = x.k;
  k.data = nullptr;
  expect_error([&] { layer.step(x.q, k, x.v, out.view); }, {"DiffusionAttention::step", "k.data"});
  ConstTensorView v = x.v;
  v.tokens = 69;
  expect_error([&] { layer.step(x.q, x.k, v, out.view); }, {"v.tokens", "69"});
  EXPECT_EQ(layer.steps_done(), 0) << "a refused step does not count";
  EXPECT_NO_THROW(layer.step(x.q, x.k, x.v, out.view));
}

// Rule: the DPad policies need q_len == kv_len (queries and keys are the same
// tokens). Before, q_len 32 / kv_len 256 read past q (ASan: heap-buffer-
// overflow in the compaction) and q_len > kv_len gave rows of zeros.
TEST(Validation, DpadNeedsQueriesAndKeysToBeTheSameTokens) {
  for (const Policy p : {Policy::dpad, Policy::dpad_sparsed})
    for (const auto& lens : {std::pair<int64_t, int64_t>{32, 256}, {256, 32}}) {
      const int64_t ql = lens.first, kl = lens.second;  // clang 14 cannot capture structured bindings
      SessionConfig cfg = base_config();
      cfg.policy = p;
      cfg.warmup_fraction = 0;
      cfg.dpad.block_end = std::min<int64_t>(ql, kl);
      cfg.dpad.window = 0;
      expect_error([&] { DiffusionAttention a(AttentionShape{1, 1, ql, kl, 32}, cfg); },
                   {"DiffusionAttention", "shape.q_len", "must equal shape.kv_len"});
    }
}

}  // namespace
}  // namespace spattn::test
