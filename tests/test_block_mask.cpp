#include <gtest/gtest.h>

#include "spattn/lab/lab.hpp"

namespace spattn {
namespace {

BlockMask small_mask() {
  // 2 heads, 3 query blocks, 4 key blocks (kv_len 100, block 32: last block partial).
  return BlockMask::from_rows(2, 70, 100, 32, 32,
                              {{0, 1}, {2}, {}, {3, 0}, {0, 1, 2, 3}, {1}});
}

TEST(BlockMask, DenseListsEveryBlockAndHasDensityOne) {
  const BlockMask m = BlockMask::dense(3, 100, 130, 32, 64);
  EXPECT_EQ(m.q_blocks(), 4);
  EXPECT_EQ(m.k_blocks(), 3);
  EXPECT_EQ(m.rows(), 12);
  EXPECT_DOUBLE_EQ(m.density(), 1.0);
  EXPECT_NO_THROW(m.validate());
  ASSERT_EQ(m.row(2, 3).size(), 3u);
  EXPECT_EQ(m.row(2, 3)[2], 2);
}

TEST(BlockMask, FromRowsSortsAndCountsDensity) {
  const BlockMask m = small_mask();
  EXPECT_EQ(m.row(1, 0)[0], 0);
  EXPECT_EQ(m.row(1, 0)[1], 3);
  EXPECT_TRUE(m.row(0, 2).empty());
  EXPECT_DOUBLE_EQ(m.density(), 10.0 / 24.0);
}

TEST(BlockMask, RejectsUnsortedDuplicateOutOfRangeAndWrongRowCount) {
  {
    BlockMask m = small_mask();
    std::swap(m.col_idx[0], m.col_idx[1]);
    EXPECT_THROW(m.validate(), Error);
  }
  {
    BlockMask m = small_mask();
    m.col_idx[1] = m.col_idx[0];
    try {
      m.validate();
      FAIL() << "duplicate accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("duplicate"), std::string::npos) << e.what();
    }
  }
  {
    BlockMask m = small_mask();
    m.col_idx[2] = 4;  // k_blocks() == 4
    try {
      m.validate();
      FAIL() << "out-of-range accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("out of range"), std::string::npos) << e.what();
    }
  }
  {
    BlockMask m = small_mask();
    m.col_idx[0] = -1;
    EXPECT_THROW(m.validate(), Error);
  }
  {
    BlockMask m = small_mask();
    m.row_ptr.pop_back();
    try {
      m.validate();
      FAIL() << "wrong row count accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("row_ptr.size()"), std::string::npos) << e.what();
    }
  }
  {
    BlockMask m = small_mask();
    m.row_ptr[2] = m.row_ptr[1] - 1;
    EXPECT_THROW(m.validate(), Error);
  }
  {
    BlockMask m = small_mask();
    m.k_block = 0;
    EXPECT_THROW(m.validate(), Error);
  }
  EXPECT_THROW(BlockMask::from_rows(1, 10, 10, 16, 16, {{0, 0}}), Error);
  EXPECT_THROW(BlockMask::from_rows(1, 10, 10, 16, 16, {{0}, {0}}), Error);  // 2 rows, 1 expected
  EXPECT_THROW(BlockMask::dense(0, 10, 10, 16, 16), Error);
}

}  // namespace
}  // namespace spattn
