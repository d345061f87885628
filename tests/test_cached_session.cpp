// DiffusionAttention with a KV cache (SessionConfig::cache): full steps
// refresh the cache (and record SparseD's pattern), cached steps attend the
// mode's rows against it, dense or on the refresh's pattern rows; the drift
// check falls back to dense until the next refresh; the argument rules.
#include <gtest/gtest.h>

#include <cstring>

#include "test_util.hpp"

namespace spattn::test {
namespace {

// Rows `rows` of a [heads][n][d] tensor, as [heads][rows][d].
Tensor pick(const Tensor& t, const std::vector<int32_t>& rows) {
  Tensor out(t.view.heads, static_cast<int64_t>(rows.size()), t.view.head_dim);
  for (int64_t h = 0; h < t.view.heads; ++h)
    for (size_t i = 0; i < rows.size(); ++i)
      std::memcpy(out.view.row(h, static_cast<int64_t>(i)), t.view.row(h, rows[i]), t.view.head_dim * 4);
  return out;
}

// Overwrites rows `rows` of t with those of src (the K/V a cached step recomputed).
void put(Tensor& t, const std::vector<int32_t>& rows, const Tensor& src) {
  for (int64_t h = 0; h < t.view.heads; ++h)
    for (size_t i = 0; i < rows.size(); ++i)
      std::memcpy(t.view.row(h, rows[i]), src.view.row(h, static_cast<int64_t>(i)), t.view.head_dim * 4);
}

// The double reference of the rows' queries against the cache's K/V, with a mask or not.
std::vector<double> reference_rows(const AttentionShape& s, const Tensor& q_rows, const Tensor& k, const Tensor& v,
                                   const std::vector<int32_t>& rows, const BlockMask* mask) {
  // The reference needs one query per sequence row: put the rows' queries at
  // their positions (zeros elsewhere), then keep only those rows.
  Tensor q_full(s.heads, s.kv_len, s.head_dim);
  put(q_full, rows, q_rows);
  AttentionShape full = s;
  full.q_len = s.kv_len;
  std::vector<double> all(static_cast<size_t>(s.heads * s.kv_len * s.head_dim));
  reference_attention(full, q_full, k, v, all.data(), mask);
  std::vector<double> out;
  for (int64_t h = 0; h < s.heads; ++h)
    for (int32_t r : rows)
      for (int64_t c = 0; c < s.head_dim; ++c) out.push_back(all[static_cast<size_t>((h * s.kv_len + r) * s.head_dim + c)]);
  return out;
}

SessionConfig cached_config(Policy p, CacheMode m, int64_t steps, int64_t warmup) {
  SessionConfig c;
  c.policy = p;
  c.cache = m;
  c.total_steps = steps;
  c.warmup_steps = warmup;
  c.block_size = 32;
  c.topk_ratio = 0.25;
  return c;
}

TEST(CachedSession, DualCacheStepsMatchTheReferenceOverTheCachedKeys) {
  const AttentionShape s{4, 2, 300, 300, 64};
  for (Policy p : {Policy::dense, Policy::sparsed, Policy::unisparse, Policy::window}) {
    Qkv x(s, 3);
    SessionConfig cfg = cached_config(p, CacheMode::dual, 6, p == Policy::sparsed ? 1 : 0);  // the refresh selects
    cfg.window.window_tokens = 64;
    DiffusionAttention session(s, cfg);
    Tensor out(4, 300, 64);
    session.set_decoding_block(96, 160);
    const StepReport first = session.step(x.q, x.k, x.v, out.view);  // refresh (records for SparseD)
    EXPECT_EQ(first.query_rows, 300);
    ASSERT_NE(session.kv_cache(), nullptr);
    EXPECT_EQ(session.kv_cache()->length(), 300);
    const std::vector<int32_t> rows = session.cached_rows();
    ASSERT_EQ(rows.size(), 64u);
    EXPECT_EQ(rows.front(), 96);
    Tensor k = x.k, v = x.v;  // what the cache holds
    for (int step = 1; step < 3; ++step) {
      // The block's rows are recomputed: new q, k, v for them.
      Qkv y(s, 10 + step);
      const Tensor qr = pick(y.q, rows), kr = pick(y.k, rows), vr = pick(y.v, rows);
      put(k, rows, kr);
      put(v, rows, vr);
      Tensor o(4, 64, 64);
      const StepReport r = session.cached_step(qr, kr, vr, o.view);
      EXPECT_EQ(r.query_rows, 64);
      AttentionShape rs = s;
      rs.q_len = 64;
      const BlockMask* m = r.path == StepPath::sparse_cached ? session.last_mask() : nullptr;
      if (p == Policy::dense) EXPECT_EQ(r.path, StepPath::dense);
      else EXPECT_EQ(r.path, StepPath::sparse_cached) << policy_name(p);
      if (m != nullptr) {
        EXPECT_GT(r.density, 0.0);
        EXPECT_LE(r.density, 1.0);
      }
      EXPECT_LE(max_rel_error(o, reference_rows(s, qr, k, v, rows, m), rs), kFp32Bound) << policy_name(p) << " " << step;
    }
  }
}

TEST(CachedSession, SparsedCachedStepsEqualTheKernelOnTheRecordedPattern) {
  const AttentionShape s{2, 2, 256, 256, 32};
  Qkv x(s, 5);
  SessionConfig cfg = cached_config(Policy::sparsed, CacheMode::rows, 8, 2);
  DiffusionAttention session(s, cfg);
  Tensor out(2, 256, 32);
  using P = StepPath;
  EXPECT_EQ(session.step(x.q, x.k, x.v, out.view).path, P::dense);  // warmup, dense
  const std::vector<int32_t> rows = {3, 40, 41, 200, 255};
  session.set_query_rows(rows);
  const Tensor qr = pick(x.q, rows), kr = pick(x.k, rows), vr = pick(x.v, rows);
  Tensor o(2, 5, 32), want(2, 5, 32);
  EXPECT_EQ(session.cached_step(qr, kr, vr, o.view).path, P::dense);  // step 1: still warmup
  EXPECT_EQ(session.step(x.q, x.k, x.v, out.view).path, P::dense_record);  // step 2: the refresh records
  ASSERT_NE(session.cached_pattern(), nullptr);
  const StepReport r = session.cached_step(qr, kr, vr, o.view);
  EXPECT_EQ(r.path, P::sparse_cached);
  AttentionShape rs = s;
  rs.q_len = 5;
  CachedQueries cq;
  cq.rows = rows;
  cached_block_sparse_attention(rs, qr, *session.kv_cache(), *session.cached_pattern(), want.view, cq);
  EXPECT_EQ(o.data, want.data);
  // A second refresh records again (every refresh does, with a cache).
  EXPECT_EQ(session.step(x.q, x.k, x.v, out.view).path, P::dense_record);
}

TEST(CachedSession, AFailedDriftCheckRunsDenseUntilTheNextRefresh) {
  const AttentionShape s{2, 2, 256, 256, 32};
  Qkv x(s, 6);
  SessionConfig cfg = cached_config(Policy::sparsed, CacheMode::block, 10, 1);
  cfg.drift_check_every = 1;
  cfg.drift_min_recall = 1.0;  // only a pattern keeping every block could pass
  DiffusionAttention session(s, cfg);
  Tensor out(2, 256, 32);
  session.set_decoding_block(192, 224);
  session.step(x.q, x.k, x.v, out.view);
  const std::vector<int32_t> rows = session.cached_rows();
  ASSERT_EQ(rows.size(), 64u);  // the block and the rows after it
  const Tensor qr = pick(x.q, rows), kr = pick(x.k, rows), vr = pick(x.v, rows);
  Tensor o(2, 64, 32);
  const StepReport a = session.cached_step(qr, kr, vr, o.view);
  EXPECT_EQ(a.path, StepPath::dense);
  EXPECT_LT(a.drift_recall, 1.0);
  EXPECT_GT(a.drift_recall, 0.25);  // the top 25% of blocks of a random pattern keep more than that
  const StepReport b = session.cached_step(qr, kr, vr, o.view);
  EXPECT_EQ(b.path, StepPath::dense);
  EXPECT_TRUE(std::isnan(b.drift_recall));  // no check: dense until the refresh
  session.step(x.q, x.k, x.v, out.view);
  cfg.drift_min_recall = 0.0;  // and a check that always passes keeps the sparse path
  DiffusionAttention lenient(s, cfg);
  lenient.set_decoding_block(192, 224);
  lenient.step(x.q, x.k, x.v, out.view);
  const StepReport c = lenient.cached_step(qr, kr, vr, o.view);
  EXPECT_EQ(c.path, StepPath::sparse_cached);
  EXPECT_FALSE(std::isnan(c.drift_recall));
}

TEST(CachedSession, ArgumentsAreRefusedByName) {
  const AttentionShape s{2, 2, 128, 128, 32};
  Qkv x(s, 7);
  Tensor out(2, 128, 32), o(2, 32, 32);
  SessionConfig plain;
  DiffusionAttention none(s, plain);
  expect_error([&] { none.cached_step(x.q, x.k, x.v, o.view); }, {"config.cache", "none"});
  SessionConfig dpad = cached_config(Policy::dpad, CacheMode::dual, 4, 1);
  expect_error([&] { DiffusionAttention bad(s, dpad); }, {"cache", "DPad"});
  DiffusionAttention dual(s, cached_config(Policy::dense, CacheMode::dual, 4, 1));
  const Tensor q32 = pick(x.q, {0, 1, 2}), k32 = pick(x.k, {0, 1, 2});
  expect_error([&] { dual.cached_step(q32, k32, k32, o.view); }, {"first step", "refresh"});
  dual.step(x.q, x.k, x.v, out.view);
  expect_error([&] { dual.cached_step(q32, k32, k32, o.view); }, {"set_decoding_block"});
  dual.set_decoding_block(32, 64);
  expect_error([&] { dual.cached_step(q32, k32, k32, o.view); }, {"q.tokens", "3", "32"});
  EXPECT_EQ(parse_cache_mode("dual"), CacheMode::dual);
  expect_error([] { parse_cache_mode("prefix"); }, {"cache", "prefix", "none, block, dual or rows"});
  DiffusionAttention rows(s, cached_config(Policy::dense, CacheMode::rows, 4, 1));
  expect_error([&] { rows.set_query_rows({5, 5}); }, {"rows[1]", "increasing"});
}

}  // namespace
}  // namespace spattn::test
