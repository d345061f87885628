// The engine (kernels/engine/): the one parallel loop, the packed K/V plan and
// the passes the policies call, each against what it must equal.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "kernels/engine/engine.hpp"
#include "kernels/numa_placement.hpp"
#include "spattn/phase_times.hpp"
#include "test_util.hpp"

namespace spattn::test {
namespace {

using detail::KVPlan;
using detail::Schedule;

// Every index in [0, n) is visited exactly once, for any thread count,
// schedule and n (empty, fewer items than threads, uneven splits).
TEST(EngineParallelFor, VisitsEveryItemExactlyOnce) {
  for (const Schedule sched : {Schedule::contiguous, Schedule::dynamic})
    for (int threads = 1; threads <= 5; ++threads)
      for (int64_t n : {0, 1, 2, 3, 7, 37}) {
        std::vector<std::atomic<int>> seen(static_cast<size_t>(n));
        std::atomic<int> calls{0};
        detail::parallel_for(
            threads, n,
            [&](int64_t b, int64_t e) {
              ++calls;
              ASSERT_LT(b, e);
              for (int64_t i = b; i < e; ++i) ++seen[static_cast<size_t>(i)];
            },
            sched);
        for (int64_t i = 0; i < n; ++i) EXPECT_EQ(seen[static_cast<size_t>(i)].load(), 1) << i;
        if (sched == Schedule::contiguous) {
          EXPECT_LE(calls.load(), std::max(1, threads));
        } else {
          EXPECT_EQ(calls.load(), n) << "one item per call";
        }
      }
}

// attend over every key block of a plan is the dense kernel, bit for bit;
// one plan serves the LSE pass and the block-mass pass (SparseD's record step).
TEST(EnginePasses, AttendRowLseAndBlockMassShareOnePlan) {
  const AttentionShape s{4, 2, 77, 130, 32};
  Qkv x(s, 11);
  Tensor dense(4, 77, 32), out(4, 77, 32);
  std::vector<float> lse_dense(4 * 77), lse(4 * 77);
  KernelOptions o;
  o.threads = 2;
  o.q_tile_rows = 32;
  o.k_block = 32;
  dense_attention_with_lse(s, x.q, x.k, x.v, dense.view, lse_dense.data(), o);
  const KVPlan kv(s, x.k, x.v, 32, 2);
  EXPECT_EQ(kv.k_blocks(), 5);
  const std::vector<int32_t> all = detail::all_key_blocks(kv);
  detail::attend(s, x.q, kv, out.view, 32, [&](int64_t, int64_t) { return std::span<const int32_t>(all); }, 2,
                 lse.data());
  EXPECT_EQ(out.data, dense.data);
  EXPECT_EQ(lse, lse_dense);
  const std::vector<float> lse2 = detail::row_lse(s, x.q, kv, 32, 2);
  for (size_t i = 0; i < lse.size(); ++i) EXPECT_NEAR(lse2[i], lse[i], 1e-5) << i;
  std::vector<float> mass(static_cast<size_t>(4 * 3 * 5));
  detail::block_mass(s, x.q, kv, lse.data(), 32, 2, mass.data());
  for (int64_t r = 0; r < 4 * 3; ++r) {
    const double sum = std::accumulate(mass.begin() + r * 5, mass.begin() + r * 5 + 5, 0.0);
    EXPECT_NEAR(sum, 1.0, 1e-5) << "row " << r;
  }
  const BlockMass pub = block_attention_mass(s, x.q, x.k, 32, 32, o);
  for (size_t i = 0; i < mass.size(); ++i) EXPECT_NEAR(mass[i], pub.mass[i], 1e-6) << i;
}

// SparseD's fused record step: the same output and LSE as the flash pass, bit
// for bit, and the block masses of the two-pass route, within fp32 rounding;
// on every ISA (the per-block sums are in the generic micro-kernel), with the
// ISA's softmax steps and with steps of 96 keys (3 or 6 blocks, a short last
// block in a step).
class EngineFusedMass : public PerIsa {};
TEST_P(EngineFusedMass, OnePassGivesOutputLseAndTheBlockMasses) {
  struct ResetSteps {
    ~ResetSteps() { detail::set_softmax_step_keys_for_testing(0); }
  } reset;
  for (const int step_keys : {0, 96})
  for (const AttentionShape s : {AttentionShape{4, 2, 77, 130, 32}, AttentionShape{2, 2, 128, 128, 64},
                                 AttentionShape{1, 1, 16, 300, 16}}) {
    detail::set_softmax_step_keys_for_testing(step_keys);
    Qkv x(s, 17);
    for (const int64_t b : {16, 32}) {
      const KVPlan kv(s, x.k, x.v, b, 2);
      const int64_t qbs = (s.q_len + b - 1) / b, nk = kv.k_blocks();
      Tensor out(s.heads, s.q_len, s.head_dim), ref(s.heads, s.q_len, s.head_dim);
      std::vector<float> lse(static_cast<size_t>(s.heads * s.q_len)), lse_ref(lse.size());
      std::vector<float> mass(static_cast<size_t>(s.heads * qbs * nk)), mass_ref(mass.size());
      detail::attend_with_block_mass(s, x.q, kv, out.view, b, 2, lse.data(), mass.data());
      const std::vector<int32_t> all = detail::all_key_blocks(kv);
      detail::attend(s, x.q, kv, ref.view, b, [&](int64_t, int64_t) { return std::span<const int32_t>(all); }, 2,
                     lse_ref.data());
      detail::block_mass(s, x.q, kv, lse_ref.data(), b, 2, mass_ref.data());
      EXPECT_EQ(out.data, ref.data);
      EXPECT_EQ(lse, lse_ref);
      for (size_t i = 0; i < mass.size(); ++i)
        ASSERT_NEAR(mass[i], mass_ref[i], 2e-6 + 1e-4 * mass_ref[i]) << "block " << b << " entry " << i;
    }
  }
}
SPATTN_INSTANTIATE_PER_ISA(EngineFusedMass);

// key_softmax_rows hands every tile of rows over exactly once, each row a
// distribution over the plan's keys (the last key biased as asked).
TEST(EnginePasses, KeySoftmaxRowsEmitsEveryTileOnceAsDistributions) {
  const AttentionShape s{2, 1, 21, 45, 16};
  Qkv x(s, 5);
  const KVPlan kv(s, x.k, ConstTensorView{}, 64, 2);
  std::vector<std::atomic<int>> rows_seen(static_cast<size_t>(2 * 21));
  detail::key_softmax_rows(s, x.q, kv, 8, std::log(0.5f), {}, 2,
                           [&](int64_t h, int64_t r0, int rows, const float* p, int64_t ld) {
                             for (int r = 0; r < rows; ++r) {
                               ++rows_seen[static_cast<size_t>(h * 21 + r0 + r)];
                               double sum = 0;
                               for (int64_t j = 0; j < 45; ++j) sum += p[r * ld + j];
                               EXPECT_NEAR(sum, 1.0, 1e-5);
                             }
                           });
  for (auto& c : rows_seen) EXPECT_EQ(c.load(), 1);
}

// With prepare, each tile's rows of q may be written just before they are
// read (UniSparse pools its queries so): the probabilities equal those of
// the filled-in q, and every tile is prepared once, before it is emitted.
TEST(EnginePasses, KeySoftmaxRowsPreparesEachTileBeforeReadingIt) {
  const AttentionShape s{2, 1, 21, 45, 16};
  Qkv x(s, 5);
  const KVPlan kv(s, x.k, ConstTensorView{}, 64, 2);
  const ConstTensorView filled = x.q;
  std::vector<float> expected(static_cast<size_t>(2 * 21 * 45)), got(expected.size());
  auto keep = [&](std::vector<float>& dst) {
    return [&dst](int64_t h, int64_t r0, int rows, const float* p, int64_t ld) {
      for (int r = 0; r < rows; ++r)
        std::copy(p + r * ld, p + r * ld + 45, dst.begin() + (h * 21 + r0 + r) * 45);
    };
  };
  detail::key_softmax_rows(s, filled, kv, 8, 0.0f, {}, 2, keep(expected));

  Tensor q(2, 21, 16);  // NaN until prepared
  std::fill(q.data.begin(), q.data.end(), std::numeric_limits<float>::quiet_NaN());
  std::vector<std::atomic<int>> prepared(static_cast<size_t>(2 * 21));
  auto fill_rows = [&](int64_t h, int64_t r0, int rows) {
    for (int r = 0; r < rows; ++r) {
      ++prepared[static_cast<size_t>(h * 21 + r0 + r)];
      std::copy_n(filled.row(h, r0 + r), 16, q.view.row(h, r0 + r));
    }
  };
  const detail::PrepareRowsFn prepare = fill_rows;
  auto emit = keep(got);
  detail::key_softmax_rows(
      s, q, kv, 8, 0.0f, {}, 2,
      [&](int64_t h, int64_t r0, int rows, const float* p, int64_t ld) {
        for (int r = 0; r < rows; ++r) EXPECT_EQ(prepared[static_cast<size_t>(h * 21 + r0 + r)].load(), 1);
        emit(h, r0, rows, p, ld);
      },
      &prepare);
  for (auto& c : prepared) EXPECT_EQ(c.load(), 1);
  EXPECT_EQ(got, expected);
}

// The DPad compaction: gather then scatter restores the kept rows and zeroes
// the others.
TEST(EnginePasses, GatherThenScatterRestoresKeptRows) {
  Tensor x(3, 50, 16);
  fill_normal(x, 9);
  const std::vector<int32_t> kept{0, 3, 4, 17, 49};
  std::vector<float> buf;
  const ConstTensorView c = detail::gather_tokens(x, kept, 2, buf).as<const float>();
  ASSERT_EQ(c.tokens, 5);
  Tensor back(3, 50, 16);
  std::fill(back.data.begin(), back.data.end(), 7.0f);
  detail::scatter_tokens(c, kept, back.view, 2);
  for (int64_t h = 0; h < 3; ++h)
    for (int64_t t = 0; t < 50; ++t) {
      const bool is_kept = std::find(kept.begin(), kept.end(), t) != kept.end();
      for (int64_t d = 0; d < 16; ++d)
        EXPECT_EQ(back.view.row(h, t)[d], is_kept ? x.view.row(h, t)[d] : 0.0f);
    }
}

// Phase times: off by default (nothing recorded); on, a dense call records
// itself and its inner phases as paths, outer first, once per call.
TEST(EnginePhaseTimes, RecordNestedPhasesOnlyWhenEnabled) {
  const AttentionShape s{2, 2, 64, 64, 32};
  Qkv x(s, 5);
  Tensor out(s.heads, s.q_len, s.head_dim);
  take_phase_times();
  dense_attention(s, x.q, x.k, x.v, out.view);
  EXPECT_TRUE(take_phase_times().empty());

  enable_phase_times(true);
  dense_attention(s, x.q, x.k, x.v, out.view);
  dense_attention(s, x.q, x.k, x.v, out.view);
  enable_phase_times(false);
  const std::vector<PhaseTime> p = take_phase_times();
  ASSERT_EQ(p.size(), 3u);
  EXPECT_EQ(p[0].name, "dense_attention");
  EXPECT_EQ(p[1].name, "dense_attention/pack_kv");
  EXPECT_EQ(p[2].name, "dense_attention/attend");
  for (const PhaseTime& t : p) {
    EXPECT_EQ(t.calls, 2) << t.name;
    EXPECT_GE(t.ms, 0.0) << t.name;
  }
  EXPECT_GE(p[0].ms, p[2].ms);  // the outer phase includes the inner one
  EXPECT_TRUE(take_phase_times().empty());  // taking resets
}

// Scratch from the plans' buffer cache: a mid-size buffer given back is
// handed out again for the same size (no new pages), and a much smaller
// request does not take it (at most twice the size asked).
TEST(EngineBufferCache, MidSizeBuffersComeBack) {
  const size_t floats = 777'777;  // ~3 MiB, a size no other test asks for
  const float* first = nullptr;
  {
    const detail::CachedFloats a(floats);
    first = a.data();
    ASSERT_NE(first, nullptr);
  }
  {
    const detail::CachedFloats small(floats / 4);
    EXPECT_NE(small.data(), first);
    const detail::CachedFloats again(floats);
    EXPECT_EQ(again.data(), first);
    EXPECT_EQ(again.size(), floats);
  }
  // The cache stays bounded however many sizes come and go: at most two
  // large buffers (>= 32 MiB) plus 64 MiB of mid-size ones (1-32 MiB).
  detail::trim_buffer_cache();
  EXPECT_EQ(detail::buffer_cache_bytes(), 0u);
  for (int round = 0; round < 3; ++round)
    for (size_t kib = 64; kib <= 48 * 1024; kib = kib * 5 / 4 + 64) {
      std::vector<detail::CachedFloats> held;
      for (int i = 0; i < 3; ++i) held.emplace_back(kib * 256);  // kib KiB each
    }
  EXPECT_GT(detail::buffer_cache_bytes(), 0u);
  EXPECT_LE(detail::buffer_cache_bytes(), (size_t{64} << 20) + 2 * (size_t{48} << 20));
}

}  // namespace
}  // namespace spattn::test
