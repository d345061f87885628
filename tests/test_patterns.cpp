// Pattern policies: UniSparse block selection, DPad kept tokens, window+sink.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "test_util.hpp"

// GCC 12 reports a false -Wdangling-pointer inside std::vector's copy of
// UnisparseParams' default initializer list once enough tests in this file
// inline it (a known GCC 12 false positive, gcc.gnu.org PR 106199 family).
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
#pragma GCC diagnostic ignored "-Wdangling-pointer"
#endif

namespace spattn::test {
namespace {

using Select = UnisparseParams::Select;

// ---------------------------------------------------------------------------
// UniSparse

// The documented estimate, in double: per granularity g, K mean-pooled over g
// tokens and Q over min(g, block), softmax of scale * q~.k~ + log(tokens(j) / g)
// per pooled query row, folded onto key blocks (a pooled key wider than a block
// splits by tokens), averaged over the query block's tokens; then the average
// over granularities with weights proportional to 1/g.
std::vector<double> brute_estimate(const Qkv& x, const UnisparseParams& p) {
  const auto& s = x.shape;
  const int64_t B = p.block_size, qbs = (s.q_len + B - 1) / B, kbs = (s.kv_len + B - 1) / B;
  const int64_t d = s.head_dim;
  std::vector<double> est(static_cast<size_t>(s.heads * qbs * kbs), 0.0);
  auto pool = [&](const Tensor& t, int64_t heads, int64_t tokens, int64_t g) {
    const int64_t n = (tokens + g - 1) / g;
    std::vector<double> out(static_cast<size_t>(heads * n * d), 0.0);
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < n; ++i) {
        const int64_t t1 = std::min(tokens, (i + 1) * g);
        for (int64_t tk = i * g; tk < t1; ++tk)
          for (int64_t c = 0; c < d; ++c) out[(h * n + i) * d + c] += t.view.row(h, tk)[c];
        for (int64_t c = 0; c < d; ++c) out[(h * n + i) * d + c] /= double(t1 - i * g);
      }
    return out;
  };
  double inv_g_sum = 0;
  for (const int64_t g : p.granularities) inv_g_sum += 1.0 / double(g);
  for (const int64_t g : p.granularities) {
    const int64_t gq = std::min(g, B), weight_g = g;
    const int64_t nq = (s.q_len + gq - 1) / gq, nk = (s.kv_len + g - 1) / g;
    const auto qp = pool(x.q, s.heads, s.q_len, gq), kp = pool(x.k, s.kv_heads, s.kv_len, g);
    for (int64_t h = 0; h < s.heads; ++h)
      for (int64_t i = 0; i < nq; ++i) {
        std::vector<double> l(nk);
        double mx = -INFINITY;
        for (int64_t j = 0; j < nk; ++j) {
          double dot = 0;
          for (int64_t c = 0; c < d; ++c)
            dot += qp[(h * nq + i) * d + c] * kp[(h / s.group_size() * nk + j) * d + c];
          l[j] = dot * s.effective_scale() +
                 std::log(double(std::min(g, s.kv_len - j * g)) / double(g));
          mx = std::max(mx, l[j]);
        }
        double sum = 0;
        for (double& v : l) sum += (v = std::exp(v - mx));
        // Fold onto key blocks (by tokens), then spread over the row's query tokens.
        std::vector<double> bm(kbs, 0.0);
        for (int64_t tk = 0; tk < s.kv_len; ++tk) {
          const int64_t j = tk / g;
          bm[tk / B] += l[j] / sum / double(std::min(g, s.kv_len - j * g));
        }
        for (int64_t tq = i * gq; tq < std::min(s.q_len, (i + 1) * gq); ++tq) {
          const int64_t qb = tq / B, q_tokens = std::min(B, s.q_len - qb * B);
          for (int64_t kb = 0; kb < kbs; ++kb)
            est[(h * qbs + qb) * kbs + kb] += bm[kb] / double(q_tokens) / double(weight_g) / inv_g_sum;
        }
      }
  }
  return est;
}

// Block 0 and the key blocks at the query block's positions (queries are
// the last q_len key positions).
std::set<int32_t> forced_blocks(int64_t qb, int64_t q_len, int64_t kv_len, int64_t block) {
  const int64_t off = kv_len - q_len;
  const int64_t lo = std::clamp<int64_t>(qb * block + off, 0, kv_len - 1);
  const int64_t hi = std::clamp<int64_t>(std::min((qb + 1) * block, q_len) - 1 + off, 0, kv_len - 1);
  std::set<int32_t> f{0};
  for (int64_t kb = lo / block; kb <= hi / block; ++kb) f.insert(static_cast<int32_t>(kb));
  return f;
}

// Every ISA path this host supports. Named so that "Unisparse*" filters match
// ("Unisparse/UnisparsePerIsa.<test>/<isa>").
class UnisparsePerIsa : public PerIsa {};
INSTANTIATE_TEST_SUITE_P(Unisparse, UnisparsePerIsa, ::testing::ValuesIn(supported_isas()),
                         isa_param_name);

// Top-k keeps the highest documented estimates (beyond the forced blocks),
// with the exact count, for fine-only, mixed and coarser-than-block widths.
TEST_P(UnisparsePerIsa, TopkKeepsHighestEstimatesWithExactCount) {
  AttentionShape s{4, 2, 700, 700, 32};
  Qkv x(s, 7, 1.6f);
  for (const auto& gs : {std::vector<int64_t>{16}, std::vector<int64_t>{16, 64}, std::vector<int64_t>{8, 32, 128}}) {
    UnisparseParams p;
    p.block_size = 32;
    p.granularities = gs;
    p.select = Select::topk;
    const auto est = brute_estimate(x, p);
    for (const double ratio : {0.05, 0.2, 0.5})
      for (const int64_t min_blocks : {1, 4}) {
        p.topk_ratio = ratio;
        p.min_blocks = min_blocks;
        const BlockMask m = unisparse_select(s, x.q, x.k, p);
        ASSERT_NO_THROW(m.validate());
        ASSERT_EQ(m.q_block, 32);
        ASSERT_EQ(m.k_block, 32);
        const int64_t kbs = m.k_blocks();
        const int64_t n = std::max<int64_t>(static_cast<int64_t>(std::ceil(ratio * kbs - 1e-9)), min_blocks);
        for (int64_t h = 0; h < s.heads; ++h)
          for (int64_t qb = 0; qb < m.q_blocks(); ++qb) {
            const auto row = row_vec(m, h, qb);
            const auto forced = forced_blocks(qb, s.q_len, s.kv_len, 32);
            ASSERT_EQ(static_cast<int64_t>(row.size()), std::max<int64_t>(n, forced.size()))
                << "h " << h << " qb " << qb;
            const std::set<int32_t> kept(row.begin(), row.end());
            for (int32_t f : forced) EXPECT_TRUE(kept.count(f)) << f;
            const double* e = est.data() + (h * m.q_blocks() + qb) * kbs;
            double min_kept = INFINITY, max_dropped = -INFINITY;
            for (int32_t kb = 0; kb < kbs; ++kb) {
              if (forced.count(kb)) continue;
              if (kept.count(kb)) min_kept = std::min(min_kept, e[kb]);
              else max_dropped = std::max(max_dropped, e[kb]);
            }
            EXPECT_GE(min_kept, max_dropped - 1e-5) << "h " << h << " qb " << qb;
          }
      }
  }
}

// Threshold: the kept set's documented estimate reaches tau, and it is the
// smallest such set: dropping its weakest non-forced block falls below tau.
TEST_P(UnisparsePerIsa, ThresholdKeepsSmallestSetReachingTau) {
  AttentionShape s{2, 1, 600, 640, 64};
  Qkv x(s, 11, 1.8f);
  UnisparseParams p;
  p.block_size = 32;
  p.granularities = {16, 64};
  p.select = Select::threshold;
  const auto est = brute_estimate(x, p);
  for (const double tau : {0.5, 0.8, 0.95}) {
    p.tau = tau;
    const BlockMask m = unisparse_select(s, x.q, x.k, p);
    ASSERT_NO_THROW(m.validate());
    const int64_t kbs = m.k_blocks();
    for (int64_t h = 0; h < s.heads; ++h)
      for (int64_t qb = 0; qb < m.q_blocks(); ++qb) {
        const double* e = est.data() + (h * m.q_blocks() + qb) * kbs;
        EXPECT_NEAR(std::accumulate(e, e + kbs, 0.0), 1.0, 1e-9);
        const auto row = row_vec(m, h, qb);
        const auto forced = forced_blocks(qb, s.q_len, s.kv_len, 32);
        EXPECT_EQ(forced.size(), qb == m.q_blocks() - 1 ? 2u : 3u);  // offset 40: two diagonal blocks
        double mass = 0, weakest = INFINITY;
        for (int32_t kb : row) {
          mass += e[kb];
          if (!forced.count(kb)) weakest = std::min(weakest, e[kb]);
        }
        for (int32_t f : forced) EXPECT_TRUE(std::count(row.begin(), row.end(), f)) << f;
        EXPECT_GE(mass, tau - 1e-5) << "tau " << tau << " h " << h << " qb " << qb;
        if (std::isfinite(weakest)) {
          EXPECT_LT(mass - weakest, tau + 1e-5) << "not minimal";
        }
      }
  }
  // min_blocks tops up a set that reaches tau with the forced blocks alone,
  // with the highest estimates.
  p.tau = 1e-6;
  p.min_blocks = 6;
  const BlockMask m = unisparse_select(s, x.q, x.k, p);
  for (int64_t h = 0; h < s.heads; ++h)
    for (int64_t qb = 0; qb < m.q_blocks(); ++qb) {
      const auto row = row_vec(m, h, qb);
      ASSERT_EQ(row.size(), 6u);
      const auto forced = forced_blocks(qb, s.q_len, s.kv_len, 32);
      const double* e = est.data() + (h * m.q_blocks() + qb) * m.k_blocks();
      double min_kept = INFINITY, max_dropped = -INFINITY;
      for (int32_t kb = 0; kb < m.k_blocks(); ++kb) {
        if (forced.count(kb)) continue;
        if (std::count(row.begin(), row.end(), kb)) min_kept = std::min(min_kept, e[kb]);
        else max_dropped = std::max(max_dropped, e[kb]);
      }
      EXPECT_GE(min_kept, max_dropped - 1e-5);
    }
}

// Planted structure: queries of a block and the keys of a few planted key
// blocks share a direction, so those blocks get nearly all the attention.
struct Planted {
  Qkv x;
  std::vector<std::set<int32_t>> planted;  // per (head, query block)
  int64_t q_blocks;
};

Planted make_planted(const AttentionShape& s, int64_t block, uint64_t seed) {
  constexpr int topics = 8;
  constexpr float amp = 7.0f, noise = 0.5f;
  Planted pl{Qkv(s, seed), {}, (s.q_len + block - 1) / block};
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, noise);
  const int64_t kbs = (s.kv_len + block - 1) / block;
  std::vector<std::vector<int>> key_topic(s.kv_heads, std::vector<int>(kbs));
  for (auto& kt : key_topic) {
    for (int64_t kb = 0; kb < kbs; ++kb) kt[kb] = static_cast<int>(kb % topics);
    std::shuffle(kt.begin(), kt.end(), rng);  // a different layout per kv head
  }
  for (int64_t h = 0; h < s.kv_heads; ++h)
    for (int64_t t = 0; t < s.kv_len; ++t) {
      float* row = pl.x.k.view.row(h, t);
      for (int64_t c = 0; c < s.head_dim; ++c) row[c] = nd(rng);
      row[key_topic[h][t / block]] += amp;
    }
  for (int64_t h = 0; h < s.heads; ++h)
    for (int64_t qb = 0; qb < pl.q_blocks; ++qb) {
      const int topic = static_cast<int>((qb * 3 + h) % topics);
      for (int64_t t = qb * block; t < std::min(s.q_len, (qb + 1) * block); ++t) {
        float* row = pl.x.q.view.row(h, t);
        for (int64_t c = 0; c < s.head_dim; ++c) row[c] = nd(rng);
        row[topic] += amp;
      }
      std::set<int32_t> blocks;
      const auto& kt = key_topic[h / s.group_size()];
      for (int64_t kb = 0; kb < kbs; ++kb)
        if (kt[kb] == topic) blocks.insert(static_cast<int32_t>(kb));
      pl.planted.push_back(blocks);
    }
  return pl;
}

TEST_P(UnisparsePerIsa, RecoversPlantedBlocksInBothModes) {
  // GQA (query heads 1 and 2 read kv heads 0 and 1) and an odd length.
  const AttentionShape s{4, 2, 2000, 2000, 64};
  const Planted pl = make_planted(s, 64, 3);
  const BlockMass exact = block_attention_mass(s, pl.x.q, pl.x.k, 64, 64);
  for (const Select mode : {Select::topk, Select::threshold}) {
    UnisparseParams p;  // block 64, granularities {16, 64, 256}
    p.select = mode;
    p.topk_ratio = 6.0 / 32.0;  // 4 planted + 2 forced of 32 key blocks
    p.tau = 0.9;
    const BlockMask m = unisparse_select(s, pl.x.q, pl.x.k, p);
    for (int64_t h = 0; h < s.heads; ++h)
      for (int64_t qb = 0; qb < pl.q_blocks; ++qb) {
        const auto row = row_vec(m, h, qb);
        const std::set<int32_t> kept(row.begin(), row.end());
        for (int32_t kb : pl.planted[h * pl.q_blocks + qb])
          EXPECT_TRUE(kept.count(kb)) << "mode " << int(mode) << " h " << h << " qb " << qb
                                      << " misses planted block " << kb;
      }
    EXPECT_GT(mask_recall(exact, m), 0.95) << "mode " << int(mode);
    EXPECT_LT(m.density(), 0.3) << "mode " << int(mode);  // 4 planted + 2 forced of 32: 0.19
  }
  // The fine width alone is sharp: planted + forced and nothing else (the last
  // key block holds 16 tokens, a quarter of a planted block's mass: optional).
  UnisparseParams fine;
  fine.granularities = {16};
  fine.tau = 0.9;
  const BlockMask m = unisparse_select(s, pl.x.q, pl.x.k, fine);
  for (int64_t h = 0; h < s.heads; ++h)
    for (int64_t qb = 0; qb < pl.q_blocks; ++qb) {
      std::set<int32_t> want = pl.planted[h * pl.q_blocks + qb];
      want.insert(0);
      want.insert(static_cast<int32_t>(qb));
      std::set<int32_t> got;
      for (int32_t kb : row_vec(m, h, qb)) got.insert(kb);
      if (qb != 31) {
        got.erase(31);
        want.erase(31);
      }
      EXPECT_EQ(got, want) << "h " << h << " qb " << qb;
    }
}

TEST_P(UnisparsePerIsa, ThresholdMassIsMonotoneInTau) {
  const AttentionShape s{2, 2, 1100, 1100, 64};
  Qkv x(s, 19, 1.5f);
  const BlockMass exact = block_attention_mass(s, x.q, x.k, 64, 64);
  UnisparseParams p;
  p.select = Select::threshold;
  BlockMask prev;
  double prev_recall = 0, prev_density = 0;
  for (const double tau : {0.2, 0.4, 0.6, 0.8, 0.9, 0.97, 1.0}) {
    p.tau = tau;
    const BlockMask m = unisparse_select(s, x.q, x.k, p);
    ASSERT_NO_THROW(m.validate());
    const double recall = mask_recall(exact, m);
    EXPECT_GE(recall, prev_recall) << "tau " << tau;
    EXPECT_GE(m.density(), prev_density) << "tau " << tau;
    if (!prev.row_ptr.empty())
      for (int64_t h = 0; h < s.heads; ++h)
        for (int64_t qb = 0; qb < m.q_blocks(); ++qb) {
          const auto a = row_vec(prev, h, qb), b = row_vec(m, h, qb);
          EXPECT_TRUE(std::includes(b.begin(), b.end(), a.begin(), a.end())) << "tau " << tau;
        }
    prev = m;
    prev_recall = recall;
    prev_density = m.density();
  }
  EXPECT_GT(prev_density, 0.5);  // tau = 1 keeps nearly everything on random data
}

TEST(UnisparseSelect, IdenticalForAnyLayoutAndThreadCount) {
  const AttentionShape s{4, 1, 777, 900, 48};
  Qkv x(s, 23, 1.4f);
  Tensor qt(s.heads, s.q_len, s.head_dim, true), kt(s.kv_heads, s.kv_len, s.head_dim, true);
  for (int64_t h = 0; h < s.heads; ++h)
    for (int64_t t = 0; t < s.q_len; ++t) std::copy_n(x.q.view.row(h, t), s.head_dim, qt.view.row(h, t));
  for (int64_t h = 0; h < s.kv_heads; ++h)
    for (int64_t t = 0; t < s.kv_len; ++t) std::copy_n(x.k.view.row(h, t), s.head_dim, kt.view.row(h, t));
  UnisparseParams p;
  p.block_size = 16;
  p.granularities = {16, 4, 64};
  const BlockMask a = unisparse_select(s, x.q, x.k, p, {.threads = 1});
  const BlockMask b = unisparse_select(s, qt, kt, p, {.threads = 2});
  ASSERT_NO_THROW(a.validate());
  EXPECT_EQ(a.row_ptr, b.row_ptr);
  EXPECT_EQ(a.col_idx, b.col_idx);
  // Queries are the last q_len positions: the diagonal of query block 0 is
  // key positions [123, 139), key blocks 7 and 8.
  const auto row0 = row_vec(a, 0, 0);
  for (int32_t kb : {0, 7, 8}) EXPECT_TRUE(std::count(row0.begin(), row0.end(), kb)) << kb;
}

TEST(UnisparseSelect, RejectsBadArgumentsNamingThem) {
  const AttentionShape s{2, 1, 128, 128, 32};
  Qkv x(s, 1);
  auto run = [&](const UnisparseParams& p) { return [&, p] { unisparse_select(s, x.q, x.k, p); }; };
  UnisparseParams p;
  p.block_size = 48;
  expect_error(run(p), {"params.block", "48"});
  p = {};
  p.granularities = {};
  expect_error(run(p), {"params.granularities"});
  p.granularities = {16, 0};
  expect_error(run(p), {"params.granularities[1]", "0"});
  p.granularities = {-16};
  expect_error(run(p), {"params.granularities[0]", "-16"});
  p.granularities = {16, 96};  // neither divides nor is divided by 64
  expect_error(run(p), {"params.granularities[1]", "96", "64"});
  p.granularities = {48};
  expect_error(run(p), {"params.granularities[0]", "48"});
  p = {};
  p.topk_ratio = 0.0;
  expect_error(run(p), {"params.topk_ratio", "0"});
  p.topk_ratio = 1.5;
  expect_error(run(p), {"params.topk_ratio", "1.5"});
  p.topk_ratio = NAN;
  expect_error(run(p), {"params.topk_ratio", "nan"});
  p = {};
  p.tau = 0.0;
  expect_error(run(p), {"params.tau", "0"});
  p.tau = 1.01;
  expect_error(run(p), {"params.tau", "1.01"});
  p = {};
  p.min_blocks = 0;
  expect_error(run(p), {"params.min_blocks", "0"});
  p = {};
  p.granularities = {int64_t(1) << 40, 1};  // extreme but valid widths
  EXPECT_NO_THROW(unisparse_select(s, x.q, x.k, p).validate());
  AttentionShape bad = s;
  bad.head_dim = 24;  // not a multiple of 16: the vectorized kernels refuse it
  Qkv y(bad, 1);
  expect_error([&] { unisparse_select(bad, y.q, y.k, {}); }, {"head_dim", "24"});
  bad = s;
  bad.kv_heads = 3;
  expect_error([&] { unisparse_select(bad, x.q, x.k, {}); }, {"kv_heads", "3"});
  expect_error([&] { unisparse_select(s, x.q, x.q, {}); }, {"k.heads"});
}

// Not a unit test: the selection-cost figure (selection / dense time, 1 thread,
// N = 16384, 8 heads, head_dim 128). Run with --gtest_also_run_disabled_tests.
TEST(UnisparseCost, DISABLED_SelectionVersusDenseAt16k) {
  const AttentionShape s{8, 8, 16384, 16384, 128};
  Qkv x(s, 2);
  Tensor out(s.heads, s.q_len, s.head_dim);
  const KernelOptions one{.threads = 1};
  using clk = std::chrono::steady_clock;
  auto secs = [](clk::time_point a, clk::time_point b) { return std::chrono::duration<double>(b - a).count(); };
  auto select_time = [&](const UnisparseParams& p) {
    double best = INFINITY;
    for (int rep = 0; rep < 3; ++rep) {
      const auto t0 = clk::now();
      const BlockMask m = unisparse_select(s, x.q, x.k, p, one);
      best = std::min(best, secs(t0, clk::now()));
      EXPECT_GT(m.col_idx.size(), 0u);
    }
    return best;
  };
  const UnisparseParams defaults;  // block 64, granularities {16, 64, 256}, threshold 0.95
  UnisparseParams fine_blocks;     // the costliest supported case: block 16, 1024 key blocks
  fine_blocks.block_size = 16;
  const double sel = select_time(defaults), sel16 = select_time(fine_blocks);
  const auto t0 = clk::now();
  dense_attention(s, x.q, x.k, x.v, out.view, one);
  const double dense = secs(t0, clk::now());
  std::printf("isa %s, 1 thread: dense_attention %.3f s; unisparse_select %.3f s (ratio %.4f), "
              "block 16: %.3f s (ratio %.4f)\n",
              isa_name(active_isa()), dense, sel, sel / dense, sel16, sel16 / dense);
  EXPECT_LE(sel / dense, 0.05);
  EXPECT_LE(sel16 / dense, 0.05);
}

// ---------------------------------------------------------------------------
// DPad

// This library's dense-window variant (the authors' rule is tested below).
DpadParams dpad_params(uint64_t seed = 0) {
  DpadParams p;
  p.rule = DpadParams::Rule::dense_window;
  p.prefix_len = 100;
  p.block_start = 160;  // [100, 160): blocks decoded earlier
  p.block_end = 192;
  p.window = 32;
  p.sigma = 40.0;
  p.seed = seed;
  return p;
}

TEST(DpadKeepProbability, FollowsTheDocumentedFormula) {
  const DpadParams p = dpad_params();
  for (int64_t t = 0; t < p.block_end + p.window; ++t)  // prefix, earlier blocks, block, window
    EXPECT_EQ(dpad_keep_probability(t, p), 1.0) << t;
  // dist = t - block_end + 1; the window is dist in [1, window].
  EXPECT_EQ(dpad_keep_probability(p.block_end + p.window - 1, p), 1.0);
  for (const int64_t over : {1, 10, 40, 80, 200}) {
    const int64_t t = p.block_end - 1 + p.window + over;  // dist = window + over
    const double want = std::exp(-double(over * over) / (2 * p.sigma * p.sigma));
    EXPECT_NEAR(dpad_keep_probability(t, p), want, 1e-15 + 1e-12 * want) << over;
  }
  DpadParams w0 = p;
  w0.window = 0;
  EXPECT_NEAR(dpad_keep_probability(w0.block_end, w0), std::exp(-1.0 / (2 * 40.0 * 40.0)), 1e-15);
  // Monotone non-increasing in distance.
  for (int64_t t = p.block_end; t < p.block_end + 500; ++t)
    EXPECT_LE(dpad_keep_probability(t + 1, p), dpad_keep_probability(t, p));
}

TEST(DpadKeptTokens, KeepsPrefixEarlierBlocksBlockAndWindowAlways) {
  for (uint64_t seed : {0ull, 1ull, 99ull, 123456789ull}) {
    const DpadParams p = dpad_params(seed);
    const int64_t kv_len = 1000;
    const auto kept = dpad_kept_tokens(kv_len, p);
    ASSERT_GE(kept.size(), size_t(p.block_end + p.window));
    for (int64_t t = 0; t < p.block_end + p.window; ++t) ASSERT_EQ(kept[t], t) << "seed " << seed;
    for (size_t i = 1; i < kept.size(); ++i) ASSERT_GT(kept[i], kept[i - 1]);
    EXPECT_LT(kept.back(), kv_len);
    // Far beyond the window (~20 sigma) nothing survives; near it, some do and some don't.
    for (int32_t t : kept) EXPECT_LT(t, p.block_end + p.window + 20 * 40);
    EXPECT_LT(kept.size(), size_t(kv_len));
  }
  // A window reaching past kv_len keeps everything; an empty current block is fine.
  DpadParams p = dpad_params();
  p.window = 5000;
  EXPECT_EQ(dpad_kept_tokens(700, p).size(), 700u);
  p.block_start = p.block_end = 150;
  p.window = 0;
  const auto kept = dpad_kept_tokens(150, p);
  EXPECT_EQ(kept.size(), 150u);
  DpadParams empty;
  empty.window = 4;
  EXPECT_TRUE(dpad_kept_tokens(0, empty).empty());
}

// Over many seeds, the keep rate at a fixed distance is a binomial with the
// formula's p: within 4.5 standard deviations.
TEST(DpadKeptTokens, KeepRateAtFixedDistanceMatchesProbability) {
  const DpadParams base = dpad_params();
  const std::vector<int64_t> overs = {5, 30, 47, 72, 98, 140};  // p ~ 0.99, 0.75, 0.5, 0.2, 0.05, 0.002
  const int64_t kv_len = base.block_end + base.window + 150;
  const int seeds = 4000;
  std::vector<int> hits(overs.size(), 0);
  for (int s = 0; s < seeds; ++s) {
    DpadParams p = base;
    p.seed = 1000 + s;
    const auto kept = dpad_kept_tokens(kv_len, p);
    for (size_t i = 0; i < overs.size(); ++i)
      hits[i] += std::binary_search(kept.begin(), kept.end(),
                                    int32_t(base.block_end - 1 + base.window + overs[i]));
  }
  for (size_t i = 0; i < overs.size(); ++i) {
    const double p = dpad_keep_probability(base.block_end - 1 + base.window + overs[i], base);
    const double mean = seeds * p, sd = std::sqrt(seeds * p * (1 - p));
    EXPECT_NEAR(hits[i], mean, 4.5 * sd + 1) << "distance window + " << overs[i] << ", p " << p;
  }
}

// Within one draw, the number kept in each band of distances matches the sum
// of the probabilities (a Poisson-binomial: 4.5 standard deviations).
TEST(DpadKeptTokens, KeepCountPerDistanceBandMatchesProbability) {
  DpadParams p = dpad_params();
  p.sigma = 3000.0;
  const int64_t kv_len = p.block_end + p.window + 12000;
  for (uint64_t seed : {7ull, 8ull, 9ull}) {
    p.seed = seed;
    const auto kept = dpad_kept_tokens(kv_len, p);
    for (int64_t lo = p.block_end + p.window; lo < kv_len; lo += 1000) {
      const int64_t hi = std::min(kv_len, lo + 1000);
      double mean = 0, var = 0;
      for (int64_t t = lo; t < hi; ++t) {
        const double q = dpad_keep_probability(t, p);
        mean += q;
        var += q * (1 - q);
      }
      const auto n = std::lower_bound(kept.begin(), kept.end(), int32_t(hi)) -
                     std::lower_bound(kept.begin(), kept.end(), int32_t(lo));
      EXPECT_NEAR(double(n), mean, 4.5 * std::sqrt(var) + 1) << "seed " << seed << " band " << lo;
    }
  }
}

TEST(DpadKeptTokens, DeterministicPerSeedAndIndependentOfKvLen) {
  const DpadParams p = dpad_params(42);
  const auto full = dpad_kept_tokens(2000, p);
  EXPECT_EQ(dpad_kept_tokens(2000, p), full);
  DpadParams other = p;
  other.seed = 43;
  EXPECT_NE(dpad_kept_tokens(2000, other), full);
  for (const int64_t len : {int64_t(192), int64_t(230), int64_t(300), int64_t(1999)}) {
    std::vector<int32_t> prefix;
    for (int32_t t : full)
      if (t < len) prefix.push_back(t);
    EXPECT_EQ(dpad_kept_tokens(len, p), prefix) << len;
  }
  // The kept list is valid input for gathered attention.
  const AttentionShape s{2, 2, 64, 400, 32};
  Qkv x(s, 3);
  Tensor out(s.heads, s.q_len, s.head_dim);
  const auto kept = dpad_kept_tokens(400, p);
  gathered_attention(s, x.q, x.k, x.v, kept, out.view);
  EXPECT_LT(max_rel_error(out, reference(x, nullptr, kept), s), kFp32Bound);
}

// The authors' rule (github.com/Sitaoooo/DPad, llada/sampler.py): keep
// probability scale * phi(k_sigma * d / (window - 1)) over the window, capped
// at 1, zero beyond; every token before block_end kept.
DpadParams gaussian_params(uint64_t seed = 0) {
  DpadParams p;  // the defaults are the authors': window 256, k_sigma 4, scale 2
  p.prefix_len = 300;
  p.block_start = 300;
  p.block_end = 332;
  p.seed = seed;
  return p;
}

TEST(DpadGaussianRule, DefaultsAreTheAuthorsAndFollowTheFormula) {
  const DpadParams p = gaussian_params();
  EXPECT_EQ(p.rule, DpadParams::Rule::gaussian);
  EXPECT_EQ(p.window, 256);
  EXPECT_EQ(p.k_sigma, 4.0);
  EXPECT_EQ(p.scale, 2.0);
  for (int64_t t = 0; t < p.block_end; ++t) ASSERT_EQ(dpad_keep_probability(t, p), 1.0) << t;
  // Hand-checked points: d = 0 -> 2 * 0.398942 = 0.797885; d = 255 (x = 4)
  // -> 2 * phi(4) = 2.67660e-4; d = 85 (x = 4/3) -> 2 * 0.164010 = 0.328020.
  EXPECT_NEAR(dpad_keep_probability(p.block_end, p), 0.7978845608, 1e-9);
  EXPECT_NEAR(dpad_keep_probability(p.block_end + 85, p), 0.3280201, 1e-6);
  EXPECT_NEAR(dpad_keep_probability(p.block_end + 255, p), 2.676605e-4, 1e-9);
  EXPECT_EQ(dpad_keep_probability(p.block_end + 256, p), 0.0);
  EXPECT_EQ(dpad_keep_probability(p.block_end + 5000, p), 0.0);
  // scale 2.3 and k_sigma 3 (their other setting): p(0) = 2.3 * 0.3989 = 0.9176;
  // a large scale caps at 1.
  DpadParams q = p;
  q.k_sigma = 3.0;
  q.scale = 2.3;
  q.window = 128;
  EXPECT_NEAR(dpad_keep_probability(q.block_end, q), 0.91756725, 1e-7);
  EXPECT_NEAR(dpad_keep_probability(q.block_end + 127, q), 2.3 * 0.00443184841, 1e-9);
  q.scale = 10.0;
  EXPECT_EQ(dpad_keep_probability(q.block_end, q), 1.0);
  // A window of one: only d = 0 at x = 0.
  q.window = 1;
  EXPECT_EQ(dpad_keep_probability(q.block_end, q), 1.0);
  EXPECT_EQ(dpad_keep_probability(q.block_end + 1, q), 0.0);
}

// A statistical check with fixed seeds: over 3000 decoding blocks' draws the
// keep rate at each distance is binomial with the formula's p (4.5 standard
// deviations), every kept token is inside [0, block_end + window), and the
// expected count over the window, sum of p ~ 2 * (255 / 4) * 0.5 ~ 64.1,
// is met on average.
TEST(DpadGaussianRule, KeepRatesMatchTheRuleWithFixedSeeds) {
  const DpadParams base = gaussian_params();
  const int64_t kv_len = base.block_end + 600;
  const std::vector<int64_t> ds = {0, 20, 64, 128, 200};
  std::vector<int> hits(ds.size(), 0);
  const int draws = 3000;
  double total = 0;
  for (int s = 0; s < draws; ++s) {
    DpadParams p = base;
    p.seed = 77;
    p.block_start = base.block_start + s;  // each decoding block draws anew
    p.block_end = base.block_end + s;
    const auto kept = dpad_kept_tokens(kv_len + s, p);
    ASSERT_LT(kept.back(), p.block_end + p.window);
    for (int64_t t = 0; t < p.block_end; ++t) ASSERT_EQ(kept[size_t(t)], t);
    total += double(kept.size()) - double(p.block_end);
    for (size_t i = 0; i < ds.size(); ++i)
      hits[i] += std::binary_search(kept.begin(), kept.end(), int32_t(p.block_end + ds[i]));
  }
  for (size_t i = 0; i < ds.size(); ++i) {
    const double p = dpad_keep_probability(base.block_end + ds[i], base);
    const double mean = draws * p, sd = std::sqrt(draws * p * (1 - p));
    EXPECT_NEAR(hits[i], mean, 4.5 * sd + 1) << "distance " << ds[i] << ", p " << p;
  }
  double want = 0, var = 0;
  for (int64_t d = 0; d < base.window; ++d) {
    const double p = dpad_keep_probability(base.block_end + d, base);
    want += p;
    var += p * (1 - p);
  }
  EXPECT_NEAR(want, 64.145, 0.01);
  EXPECT_NEAR(total / draws, want, 4.5 * std::sqrt(var / draws));
}

TEST(DpadGaussianRule, RedrawnPerBlockFixedWithinIt) {
  DpadParams p = gaussian_params(5);
  const auto a = dpad_kept_tokens(2000, p);
  EXPECT_EQ(dpad_kept_tokens(2000, p), a);  // the block's steps see one draw
  EXPECT_EQ(dpad_kept_tokens(700, p), a);   // independent of kv_len past the window
  DpadParams next = p;
  next.block_start += 32;
  next.block_end += 32;
  const auto b = dpad_kept_tokens(2000, next);
  // Shifted to the same distances, the draws of the next block differ.
  std::vector<int32_t> da, db;
  for (int32_t t : a) if (t >= p.block_end) da.push_back(t - int32_t(p.block_end));
  for (int32_t t : b) if (t >= next.block_end) db.push_back(t - int32_t(next.block_end));
  EXPECT_NE(da, db);
  EXPECT_EQ(dpad_rule_name(DpadParams::Rule::gaussian), std::string("gaussian"));
  EXPECT_EQ(parse_dpad_rule("dense-window"), DpadParams::Rule::dense_window);
  expect_error([] { parse_dpad_rule("Gauss"); }, {"rule", "Gauss"});
  p.k_sigma = -1;
  expect_error([&] { dpad_kept_tokens(500, p); }, {"params.k_sigma", "-1"});
  p = gaussian_params();
  p.scale = NAN;
  expect_error([&] { dpad_kept_tokens(500, p); }, {"params.scale", "nan"});
}

TEST(DpadKeptTokens, RejectsBadArgumentsNamingThem) {
  const DpadParams good = dpad_params();
  auto kept = [](int64_t kv_len, const DpadParams& p) { return [=] { dpad_kept_tokens(kv_len, p); }; };
  auto prob = [](int64_t t, const DpadParams& p) { return [=] { dpad_keep_probability(t, p); }; };
  DpadParams p = good;
  p.window = -1;
  expect_error(kept(500, p), {"params.window", "-1"});
  expect_error(prob(300, p), {"params.window", "-1"});
  p = good;
  p.sigma = 0.0;
  expect_error(kept(500, p), {"params.sigma", "0"});
  p.sigma = -2.5;
  expect_error(prob(300, p), {"params.sigma", "-2.5"});
  p.sigma = NAN;
  expect_error(kept(500, p), {"params.sigma", "nan"});
  p = good;
  p.block_start = 200;  // > block_end 192
  expect_error(kept(500, p), {"params.block_start", "200", "192"});
  p = good;
  expect_error(kept(191, p), {"params.block_end", "192", "191"});
  p.prefix_len = 161;  // > block_start 160
  expect_error(kept(500, p), {"params.prefix_len", "161", "160"});
  p = good;
  expect_error(kept(-1, p), {"kv_len", "-1"});
  expect_error(prob(-3, p), {"'t'", "-3"});
  p.prefix_len = -1;
  expect_error(kept(500, p), {"params.prefix_len", "-1"});
}

// ---------------------------------------------------------------------------
// Window + sink

TEST(WindowSink, ExactBlockListsOnSmallCase) {
  const AttentionShape s{2, 1, 300, 300, 64};
  const BlockMask m = window_sink_mask(s, {32, 40, 64});  // sinks [0, 40): blocks 0, 1
  ASSERT_EQ(m.q_block, 32);
  ASSERT_EQ(m.k_block, 32);
  ASSERT_EQ(m.q_blocks(), 10);
  const std::vector<std::vector<int32_t>> want = {
      {0, 1},          {0, 1, 2},       {0, 1, 2, 3},    {0, 1, 2, 3, 4}, {0, 1, 3, 4, 5},
      {0, 1, 4, 5, 6}, {0, 1, 5, 6, 7}, {0, 1, 6, 7, 8}, {0, 1, 7, 8, 9}, {0, 1, 8, 9}};
  for (int64_t h = 0; h < 2; ++h)
    for (int64_t qb = 0; qb < 10; ++qb) EXPECT_EQ(row_vec(m, h, qb), want[qb]) << "h " << h << " qb " << qb;

  // An odd window rounds its half down; one more token reaches the next blocks.
  const BlockMask odd = window_sink_mask(s, {32, 40, 65});
  EXPECT_EQ(odd.col_idx, m.col_idx);
  const BlockMask wider = window_sink_mask(s, {32, 40, 66});
  EXPECT_EQ(row_vec(wider, 1, 5), (std::vector<int32_t>{0, 1, 3, 4, 5, 6, 7}));
  EXPECT_EQ(row_vec(wider, 0, 9), (std::vector<int32_t>{0, 1, 7, 8, 9}));

  // No sinks, no window: the diagonal only.
  const BlockMask diag = window_sink_mask(s, {32, 0, 0});
  for (int64_t qb = 0; qb < 10; ++qb) EXPECT_EQ(row_vec(diag, 0, qb), (std::vector<int32_t>{int32_t(qb)}));
  // A window covering everything is dense.
  EXPECT_DOUBLE_EQ(window_sink_mask(s, {64, 0, 600}).density(), 1.0);
  // Sinks beyond the band stay sorted.
  const BlockMask big_sink = window_sink_mask(s, {32, 150, 0});
  EXPECT_EQ(row_vec(big_sink, 0, 2), (std::vector<int32_t>{0, 1, 2, 3, 4}));
}

TEST(WindowSink, QueriesAlignToTheEndOfTheKeys) {
  // q_len 64 of kv_len 250: query token t sits at key position t + 186.
  const AttentionShape s{1, 1, 64, 250, 64};
  const BlockMask m = window_sink_mask(s, {32, 1, 0});
  EXPECT_EQ(row_vec(m, 0, 0), (std::vector<int32_t>{0, 5, 6}));  // positions [186, 218)
  EXPECT_EQ(row_vec(m, 0, 1), (std::vector<int32_t>{0, 6, 7}));  // positions [218, 250)
  const BlockMask w = window_sink_mask(s, {32, 1, 20});          // +-10 tokens
  EXPECT_EQ(row_vec(w, 0, 0), (std::vector<int32_t>{0, 5, 6, 7}));
}

TEST(WindowSink, RejectsBadArgumentsNamingThem) {
  const AttentionShape s{2, 1, 300, 300, 64};
  expect_error([&] { window_sink_mask(s, {48, 64, 512}); }, {"params.block", "48"});
  expect_error([&] { window_sink_mask(s, {64, -1, 512}); }, {"params.sink_tokens", "-1"});
  expect_error([&] { window_sink_mask(s, {64, 64, -8}); }, {"params.window_tokens", "-8"});
  AttentionShape bad = s;
  bad.q_len = 0;
  expect_error([&] { window_sink_mask(bad, {}); }, {"q_len", "0", "window_sink_mask"});
}

// ---- causal prefill ------------------------------------------------------

AttentionShape causal(AttentionShape s, int64_t q_offset = AttentionShape::kQOffsetEnd) {
  s.causal = true;
  s.q_offset = q_offset;
  return s;
}

// Every row lists only blocks up to its diagonal (block_sparse_attention
// refuses anything else), and with diagonal_kept the diagonal block itself.
void expect_causal_rows(const AttentionShape& s, const BlockMask& m, bool diagonal_kept = true) {
  for (int64_t h = 0; h < m.heads; ++h)
    for (int64_t qb = 0; qb < m.q_blocks(); ++qb) {
      const int64_t last = s.query_position0() + std::min(s.q_len, (qb + 1) * m.q_block) - 1;
      const auto row = row_vec(m, h, qb);
      ASSERT_FALSE(row.empty());
      if (diagonal_kept) {
        EXPECT_EQ(row.back(), last / m.k_block) << "h " << h << " qb " << qb;
      } else {
        EXPECT_LE(row.back(), last / m.k_block) << "h " << h << " qb " << qb;
      }
    }
}

TEST_P(UnisparsePerIsa, CausalKeepsPlantedVisibleBlocksAndNothingAfterTheDiagonal) {
  const AttentionShape s = causal({2, 1, 1280, 1280, 64});  // GQA, 20 blocks: small enough for qemu and ASan
  const Planted pl = make_planted(s, 64, 3);
  const BlockMass exact = block_attention_mass(s, pl.x.q, pl.x.k, 64, 64);
  for (const Select mode : {Select::topk, Select::threshold}) {
    UnisparseParams p;
    p.select = mode;
    p.topk_ratio = 0.25;
    p.tau = 0.9;
    const BlockMask m = unisparse_select(s, pl.x.q, pl.x.k, p);
    expect_causal_rows(s, m);
    for (int64_t h = 0; h < s.heads; ++h)
      for (int64_t qb = 0; qb < pl.q_blocks; ++qb) {
        const auto row = row_vec(m, h, qb);
        const std::set<int32_t> kept(row.begin(), row.end());
        const std::set<int32_t>& planted = pl.planted[h * pl.q_blocks + qb];
        const int64_t visible_planted = std::count_if(planted.begin(), planted.end(), [&](int32_t kb) { return kb <= qb; });
        // topk keeps 25% of the visible blocks: early rows cannot hold every planted block.
        if (mode == Select::topk && blocks_for_ratio(p.topk_ratio, qb + 1) < visible_planted + 2) continue;
        for (int32_t kb : planted)
          if (kb <= qb) {
            EXPECT_TRUE(kept.count(kb)) << "mode " << int(mode) << " h " << h << " qb " << qb << " kb " << kb;
          }
      }
    // topk's early rows keep 1-2 of a handful of visible blocks: recall 0.80 here.
    EXPECT_GT(mask_recall(exact, m), mode == Select::threshold ? 0.95 : 0.75) << "mode " << int(mode);
    Tensor out(s.heads, s.q_len, s.head_dim);
    block_sparse_attention(s, pl.x.q, pl.x.k, pl.x.v, m, out.view);  // accepted: nothing in the future
  }
}

TEST_P(UnisparsePerIsa, CausalEstimateDoesNotSeeLaterTokens) {
  // Change every query and key after position 1024: the selection of the
  // query blocks that end before it must not change, at any granularity
  // (256-token pools straddle 1024 - 64 .. 1024 + 192).
  const AttentionShape s = causal({2, 1, 1500, 1500, 64});
  Qkv a(s, 8), b = a;
  std::mt19937_64 rng(1);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  for (int64_t t = 1024; t < s.kv_len; ++t)
    for (int64_t c = 0; c < s.head_dim; ++c) {
      b.k.view.row(0, t)[c] = nd(rng);
      for (int64_t h = 0; h < s.heads; ++h) b.q.view.row(h, t)[c] = nd(rng);
    }
  UnisparseParams p;
  p.tau = 0.8;
  const BlockMask ma = unisparse_select(s, a.q, a.k, p), mb = unisparse_select(s, b.q, b.k, p);
  for (int64_t h = 0; h < s.heads; ++h)
    for (int64_t qb = 0; qb < 1024 / 64; ++qb) EXPECT_EQ(row_vec(ma, h, qb), row_vec(mb, h, qb)) << h << " " << qb;
  expect_causal_rows(s, ma);
}

TEST_P(UnisparsePerIsa, CausalChunkWithOffsetSelectsUpToItsDiagonal) {
  // A 4th chunk of 300 queries at positions 900..1199 over a 1200-token cache,
  // offset inside a block (900 = 14 * 64 + 4).
  const AttentionShape s = causal({2, 2, 300, 1200, 64}, 900);
  const Qkv x(s, 12);
  UnisparseParams p;
  p.select = Select::topk;
  p.topk_ratio = 0.2;
  const BlockMask m = unisparse_select(s, x.q, x.k, p);
  expect_causal_rows(s, m);
  for (int64_t qb = 0; qb < m.q_blocks(); ++qb) {  // 20% of the visible blocks (sink and diagonal forced)
    const int64_t visible = (900 + std::min<int64_t>(300, (qb + 1) * 64) - 1) / 64 + 1;
    EXPECT_EQ(static_cast<int64_t>(row_vec(m, 0, qb).size()), blocks_for_ratio(0.2, visible)) << qb;
  }
}

TEST(WindowSinkCausal, BandLiesBehindTheQueries) {
  const AttentionShape s = causal({1, 1, 1000, 1000, 64});
  WindowSinkParams p;
  p.block_size = 64;
  p.sink_tokens = 64;
  p.window_tokens = 256;
  const BlockMask m = window_sink_mask(s, p);
  expect_causal_rows(s, m);
  const std::vector<int32_t> first{0}, tenth{0, 6, 7, 8, 9, 10}, chunk{0, 3, 4, 5, 6, 7, 8};
  EXPECT_EQ(row_vec(m, 0, 0), first);
  EXPECT_EQ(row_vec(m, 0, 10), tenth);  // 640 - 256 = 384: block 6
  // A chunk at offset 500 of a 1000-token cache: its first block holds 500..563.
  const AttentionShape c = causal({1, 1, 100, 1000, 64}, 500);
  EXPECT_EQ(row_vec(window_sink_mask(c, p), 0, 0), chunk);
}

TEST(SparsedCausal, TopkCountsVisibleBlocksOnly) {
  const AttentionShape s = causal({2, 1, 640, 640, 64});
  const Qkv x(s, 3);
  const BlockMass mass = block_attention_mass(s, x.q, x.k, 64, 64);
  const BlockMask m = sparsed_select(mass, 0.3);
  expect_causal_rows(s, m, /*diagonal_kept=*/false);  // SparseD forces nothing
  for (int64_t qb = 0; qb < m.q_blocks(); ++qb)
    EXPECT_EQ(static_cast<int64_t>(row_vec(m, 0, qb).size()), blocks_for_ratio(0.3, qb + 1)) << qb;
  Tensor out(s.heads, s.q_len, s.head_dim);
  block_sparse_attention(s, x.q, x.k, x.v, m, out.view);
  expect_error([&] { sparsed_select_pooled(mass, 0.3); }, {"mass.causal", "sparsed_select"});
  expect_error([&] { sparsed_select_mass(mass, MassBudget{}); }, {"mass.causal"});
}

TEST(SessionCausal, IsRefusedWithAPointer) {
  expect_error([] { DiffusionAttention(causal({1, 1, 64, 64, 64}), SessionConfig{}); },
               {"shape.causal", "bidirectional", "block_sparse_attention"});
}

}  // namespace
}  // namespace spattn::test
