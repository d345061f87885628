// Inputs the fuzz harnesses (fuzz/) or their seeds showed to be mishandled,
// kept as regression tests: each must be refused with spattn::Error, with no
// out-of-bounds access (the ASan build runs these too) and no huge allocation.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>

#include "test_util.hpp"

namespace spattn::test {
namespace {

std::string error_of(auto&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// validate() used to walk row r's entries before checking the later row_ptr
// values: row_ptr {0, 3, 2} with 2 entries read col_idx[2], past the end.
TEST(FuzzRegressions, BlockMaskRowPtrPastTheEndIsRefusedBeforeReadingEntries) {
  BlockMask m;
  m.heads = 1;
  m.q_len = 32;
  m.kv_len = 128;
  m.q_block = 16;
  m.k_block = 16;
  m.row_ptr = {0, 3, 2};
  m.col_idx = {0, 1};
  const std::string e = error_of([&] { m.validate(); });
  EXPECT_NE(e.find("argument 'row_ptr[2]' = 2: is below row_ptr[1] = 3"), std::string::npos) << e;
}

// heads * q_blocks and len + block - 1 overflowed int64 (undefined behaviour)
// before the row count was compared.
TEST(FuzzRegressions, BlockMaskSizesThatOverflowAreRefused) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  BlockMask m;
  m.heads = int64_t{1} << 62;
  m.q_len = int64_t{1} << 62;
  m.kv_len = 5;
  m.q_block = 1;
  m.k_block = 1;
  m.row_ptr = {0};
  EXPECT_NE(error_of([&] { m.validate(); }).find("heads * q_blocks overflows"), std::string::npos);
  m.heads = 1;
  m.q_len = kMax;
  m.q_block = 64;
  EXPECT_NE(error_of([&] { m.validate(); }).find("argument 'q_len'"), std::string::npos);
  m.q_len = 64;
  m.kv_len = kMax - 3;
  m.k_block = 16;
  EXPECT_NE(error_of([&] { m.validate(); }).find("argument 'kv_len'"), std::string::npos);
}

std::string npy_bytes(const std::string& dict, const std::string& data, int version = 1) {
  std::string header = dict;
  const size_t pre = version == 1 ? 10 : 12;
  header.append((64 - (pre + header.size() + 1) % 64) % 64, ' ');
  header.push_back('\n');
  std::string out("\x93NUMPY", 6);
  out.push_back(static_cast<char>(version));
  out.push_back(0);
  for (size_t b = 0; b < (version == 1 ? 2u : 4u); ++b)
    out.push_back(static_cast<char>((header.size() >> (8 * b)) & 0xff));
  return out + header + data;
}

NpyArray parse(const std::string& bytes) {
  return parse_npy(std::as_bytes(std::span<const char>(bytes.data(), bytes.size())), "mem.npy");
}

// A header may promise any shape: the byte count is checked against the data
// present before anything is allocated (fuzz/corpus/fuzz_npy/invalid_huge_shape.npy).
TEST(FuzzRegressions, NpyHeaderShapeLargerThanTheDataIsRefusedWithoutAllocating) {
  const std::string e = error_of([] {
    parse(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000, 1000000000), }",
                    std::string(24, '\0')));
  });
  EXPECT_NE(e.find("'mem.npy': truncated data: shape [1000000000, 1000000000] of '<f4' needs "
                   "4000000000000000000 bytes, found 24"),
            std::string::npos)
      << e;
  // A product past size_t.
  EXPECT_NE(error_of([] {
              parse(npy_bytes("{'descr': '<f2', 'fortran_order': False, 'shape': (4294967296, "
                              "4294967296, 4294967296), }",
                              ""));
            }).find("is too large"),
            std::string::npos);
  // A version 2 header length of 2 GiB in a 13-byte input.
  EXPECT_NE(error_of([] { parse(std::string("\x93NUMPY\x02\x00\xff\xff\xff\x7f{", 13)); })
                .find("header length 2147483647 runs past the end"),
            std::string::npos);
}

TEST(FuzzRegressions, ParseNpyReadsWhatLoadNpyReads) {
  const float values[3] = {1.5f, -2.0f, 0.25f};
  const NpyArray a = parse(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }",
                                     std::string(reinterpret_cast<const char*>(values), 12), 2));
  EXPECT_EQ(a.shape, (std::vector<int64_t>{3}));
  EXPECT_EQ(a.data, (std::vector<float>{1.5f, -2.0f, 0.25f}));
}

}  // namespace
}  // namespace spattn::test
