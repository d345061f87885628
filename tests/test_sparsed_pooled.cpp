// SparseD with the budget pooled across heads: same number of blocks per
// query block as the per-head rule, every head keeps at least its best block,
// and the captured mass is the largest any selection with those two
// properties can capture (checked against brute force).
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "spattn/lab/lab.hpp"

namespace spattn {
namespace {

BlockMass random_mass(int64_t heads, int64_t n, int64_t b, uint64_t seed) {
  BlockMass m;
  m.heads = heads;
  m.q_len = m.kv_len = n;
  m.q_block = m.k_block = b;
  std::mt19937_64 rng(seed);
  std::exponential_distribution<float> e(1.0f);
  m.mass.resize(static_cast<size_t>(heads * m.q_blocks() * m.k_blocks()));
  for (int64_t r = 0; r < heads * m.q_blocks(); ++r) {
    // Heads differ in sharpness: some rows concentrated, some diffuse.
    const float sharp = (r / m.q_blocks()) % 2 ? 6.0f : 0.5f;
    float sum = 0;
    float* row = m.mass.data() + r * m.k_blocks();
    for (int64_t j = 0; j < m.k_blocks(); ++j) sum += row[j] = std::pow(e(rng), sharp);
    for (int64_t j = 0; j < m.k_blocks(); ++j) row[j] /= sum;
  }
  return m;
}

double captured(const BlockMass& mass, const BlockMask& m, int64_t qb) {
  double s = 0;
  for (int64_t h = 0; h < mass.heads; ++h)
    for (int32_t kb : m.row(h, qb)) s += mass.row(h, qb)[kb];
  return s;
}

TEST(SparsedPooled, SameBudgetEveryHeadServedAndMaximalMass) {
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    const BlockMass mass = random_mass(4, 300, 32, seed);  // 10 key blocks, last one short
    for (double ratio : {0.05, 0.2, 0.5, 1.0}) {
      const BlockMask per_head = sparsed_select(mass, ratio);
      const BlockMask pooled = sparsed_select_pooled(mass, ratio);
      pooled.validate();
      const int64_t keep = per_head.row_ptr[1] - per_head.row_ptr[0];
      for (int64_t qb = 0; qb < mass.q_blocks(); ++qb) {
        int64_t total = 0;
        for (int64_t h = 0; h < mass.heads; ++h) {
          const auto r = pooled.row(h, qb);
          ASSERT_GE(r.size(), 1u);
          total += static_cast<int64_t>(r.size());
          // Each head's own best block is in.
          const float* w = mass.row(h, qb);
          const int32_t best = static_cast<int32_t>(std::max_element(w, w + mass.k_blocks()) - w);
          EXPECT_TRUE(std::find(r.begin(), r.end(), best) != r.end());
        }
        EXPECT_EQ(total, keep * mass.heads);
        // Brute force: heads' best blocks plus the largest remaining masses.
        std::vector<float> rest;
        double forced = 0;
        for (int64_t h = 0; h < mass.heads; ++h) {
          const float* w = mass.row(h, qb);
          const int64_t best = std::max_element(w, w + mass.k_blocks()) - w;
          forced += w[best];
          for (int64_t j = 0; j < mass.k_blocks(); ++j)
            if (j != best) rest.push_back(w[j]);
        }
        std::sort(rest.rbegin(), rest.rend());
        const double optimum = forced + std::accumulate(rest.begin(), rest.begin() + (keep - 1) * mass.heads, 0.0);
        EXPECT_NEAR(captured(mass, pooled, qb), optimum, 1e-5);
        EXPECT_GE(captured(mass, pooled, qb), captured(mass, per_head, qb) - 1e-6);
      }
    }
  }
}

TEST(SparsedPooled, SessionUsesItWhenAsked) {
  const AttentionShape s{4, 4, 256, 256, 32};
  std::mt19937_64 rng(3);
  std::normal_distribution<float> nd;
  std::vector<float> q(4 * 256 * 32), k(q.size()), v(q.size()), out(q.size());
  for (auto* t : {&q, &k, &v})
    for (float& x : *t) x = nd(rng);
  SessionConfig cfg;
  cfg.total_steps = 2;
  cfg.warmup_fraction = 0.5;
  cfg.block_size = 32;
  cfg.topk_ratio = 0.25;
  cfg.pooled_budget = true;
  DiffusionAttention layer(s, cfg);
  auto view = [&](std::vector<float>& t) { return TensorView::heads_major(t.data(), 4, 256, 32); };
  layer.step(view(q), view(k), view(v), view(out));
  const BlockMass mass = block_attention_mass(s, view(q), view(k), 32, 32);
  const BlockMask expect = sparsed_select_pooled(mass, 0.25);
  ASSERT_NE(layer.cached_pattern(), nullptr);
  EXPECT_EQ(layer.cached_pattern()->col_idx, expect.col_idx);
  EXPECT_EQ(layer.cached_pattern()->row_ptr, expect.row_ptr);
}

}  // namespace
}  // namespace spattn
