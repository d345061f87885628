// Block-wise decoding in the synthetic workload, and DPad's current block
// following it in evaluate().
#include <gtest/gtest.h>

#include "spattn/lab/lab.hpp"

namespace spattn {
namespace {

TEST(BlockDecoding, BlocksDecodeInOrder) {
  SyntheticConfig c;
  c.heads = c.kv_heads = 1;
  c.seq_len = 1000;  // prompt 500, generated 500 = blocks of 128: 4 blocks, the last short
  c.head_dim = 32;
  c.steps = 16;      // 4 steps per block
  c.decode_block = 128;
  const SyntheticWorkload w(c);
  for (int64_t s = 0; s < c.steps; ++s) {
    const auto [start, end] = w.decoding_block(s);
    EXPECT_EQ(start, 500 + (s / 4) * 128);
    EXPECT_EQ(end, std::min<int64_t>(1000, start + 128));
    for (int64_t t = 0; t < 500; ++t) ASSERT_FALSE(w.is_masked(t, s));
    for (int64_t t = 500; t < start; ++t) ASSERT_FALSE(w.is_masked(t, s)) << t << " at step " << s;
    for (int64_t t = end; t < 1000; ++t) ASSERT_TRUE(w.is_masked(t, s)) << t << " at step " << s;
    int64_t masked = 0;
    for (int64_t t = start; t < end; ++t) masked += w.is_masked(t, s);
    // Within the block, tokens unmask over its steps: fewer masked each step.
    const int64_t local = s % 4;
    if (local == 0) {
      EXPECT_EQ(masked, end - start);
    }
    if (local == 3) {
      EXPECT_LT(masked, (end - start) / 2);
    }
  }
  c.decode_block = -1;
  EXPECT_THROW(SyntheticWorkload{c}, Error);
  c.decode_block = 0;
  EXPECT_EQ(SyntheticWorkload(c).decoding_block(3), (std::pair<int64_t, int64_t>{0, 0}));
}

TEST(BlockDecoding, EvaluateMovesDpadsBlockAndMeasuresKeptRows) {
  WorkloadSpec spec;
  spec.synthetic.heads = spec.synthetic.kv_heads = 2;
  spec.synthetic.seq_len = 512;
  spec.synthetic.head_dim = 32;
  spec.synthetic.steps = 8;
  spec.synthetic.decode_block = 64;  // 4 blocks, 2 steps each
  SessionConfig cfg;
  cfg.policy = Policy::dpad;
  cfg.warmup_fraction = 0;
  cfg.block_size = 32;
  cfg.dpad.window = 32;
  cfg.dpad.sigma = 64;
  cfg.dpad.block_end = 1;  // replaced at every step by the decoded block
  EvalOptions eo;
  const EvalResult r = evaluate(WorkloadSource(spec), cfg, eo);
  ASSERT_EQ(r.steps.size(), 8u);
  for (const StepEval& e : r.steps) {
    EXPECT_EQ(e.path, StepPath::gathered);
    EXPECT_GT(e.cosine, 0.9);  // accuracy over the rows DPad keeps
    // The last block (steps 6, 7) has no suffix left to drop.
    if (e.step < 6) {
      EXPECT_LT(e.density, 1.0) << e.step;
    } else {
      EXPECT_DOUBLE_EQ(e.density, 1.0);
      EXPECT_GT(e.cosine, 0.999999);
    }
  }
  // Later blocks have a longer prefix and a shorter suffix to drop.
  EXPECT_LT(r.steps.front().density, r.steps.back().density);
}

}  // namespace
}  // namespace spattn
