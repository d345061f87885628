#pragma once
// BlockMask: which key blocks each query block attends to, per head, in CSR form.
// Row r = head * q_blocks() + query_block lists its key blocks in
// col_idx[row_ptr[r] .. row_ptr[r+1]), sorted ascending, without duplicates.
#include <cstdint>
#include <span>
#include <vector>

namespace spattn {

struct BlockMask {
  int64_t heads = 0;
  int64_t q_len = 0;
  int64_t kv_len = 0;
  int64_t q_block = 64;
  int64_t k_block = 64;
  std::vector<int64_t> row_ptr;  // heads * q_blocks() + 1 entries
  std::vector<int32_t> col_idx;

  int64_t q_blocks() const { return (q_len + q_block - 1) / q_block; }
  int64_t k_blocks() const { return (kv_len + k_block - 1) / k_block; }
  int64_t rows() const { return heads * q_blocks(); }
  std::span<const int32_t> row(int64_t head, int64_t query_block) const;
  // Kept key blocks over all key blocks, in [0, 1].
  double density() const;
  // Throws spattn::Error on wrong row count, non-monotone row_ptr, unsorted,
  // duplicate or out-of-range key blocks, bad block sizes.
  void validate() const;

  // Every key block for every query block.
  static BlockMask dense(int64_t heads, int64_t q_len, int64_t kv_len, int64_t q_block, int64_t k_block);
  // From per-row key-block lists (rows in head-major order); sorts each list.
  static BlockMask from_rows(int64_t heads, int64_t q_len, int64_t kv_len, int64_t q_block,
                             int64_t k_block, const std::vector<std::vector<int32_t>>& rows);
};

}  // namespace spattn
