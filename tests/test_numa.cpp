// NUMA placement: the multi-node path (per-head buffers on nodes, V copies,
// thread binding) gives bitwise the same results as the one-node path. On a
// one-node machine it is exercised by simulating nodes (logical node n runs
// on physical node n % configured nodes), through libnuma's API.
#include <gtest/gtest.h>

#include "kernels/numa_placement.hpp"
#include "spattn/lab/lab.hpp"
#include "test_util.hpp"

namespace spattn {
namespace {

struct SimulatedNodes {
  explicit SimulatedNodes(int n) { detail::set_simulated_numa_nodes(n); }
  ~SimulatedNodes() { detail::set_simulated_numa_nodes(0); }
};

TEST(Numa, PlanIsCappedByThreadsAndHeads) {
  EXPECT_GE(detail::numa_configured_nodes(), 1);
  SimulatedNodes sim(4);
  EXPECT_EQ(detail::numa_plan(2, 8).nodes, 2);
  EXPECT_EQ(detail::numa_plan(16, 3).nodes, 3);
  EXPECT_EQ(detail::numa_plan(16, 8).nodes, 4);
  const detail::NumaPlan p = detail::numa_plan(8, 8);
  // Heads and threads split into the same contiguous ranges.
  for (int t = 0; t < 8; ++t) EXPECT_EQ(p.node_of_thread(t, 8), p.node_of_kv_head(t, 8));
}

TEST(Numa, OneNodeChangesNothing) {
  if (detail::numa_configured_nodes() > 1) GTEST_SKIP() << "multi-node machine";
  EXPECT_EQ(detail::numa_plan(64, 64).nodes, 1);
}

TEST(Numa, MultiNodePathIsBitwiseTheOneNodePath) {
  const AttentionShape s{8, 4, 203, 331, 64};
  test::Qkv in(s, 11);
  test::Tensor a(s.heads, s.q_len, s.head_dim), b(s.heads, s.q_len, s.head_dim),
      sa(s.heads, s.q_len, s.head_dim), sb(s.heads, s.q_len, s.head_dim);
  KernelOptions o;
  o.threads = 4;
  // Query block i keeps key blocks i, i + 3, i + 6, ... (mod 11): scattered, never empty.
  std::vector<std::vector<int32_t>> rows;
  for (int64_t h = 0; h < s.heads; ++h)
    for (int64_t qb = 0; qb < (s.q_len + 31) / 32; ++qb) {
      std::vector<int32_t> r;
      for (int64_t kb = qb % 3; kb < (s.kv_len + 31) / 32; kb += 3) r.push_back(static_cast<int32_t>(kb));
      rows.push_back(r);
    }
  const BlockMask mask = BlockMask::from_rows(s.heads, s.q_len, s.kv_len, 32, 32, rows);
  dense_attention(s, in.q, in.k, in.v, a.view, o);
  block_sparse_attention(s, in.q, in.k, in.v, mask, sa.view, o);
  {
    SimulatedNodes sim(2);
    ASSERT_EQ(detail::numa_plan(4, s.kv_heads).nodes, 2);
    dense_attention(s, in.q, in.k, in.v, b.view, o);
    block_sparse_attention(s, in.q, in.k, in.v, mask, sb.view, o);
  }
  EXPECT_EQ(a.data, b.data);
  EXPECT_EQ(sa.data, sb.data);
  // And right, not just consistent.
  EXPECT_LT(test::max_rel_error(a, test::reference(in), s), test::kFp32Bound);
  EXPECT_LT(test::max_rel_error(sa, test::reference(in, &mask), s), test::kFp32Bound);
}

}  // namespace
}  // namespace spattn
