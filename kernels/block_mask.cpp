#include <algorithm>
#include <limits>
#include <string>

#include "spattn/attention.hpp"
#include "spattn/block_mask.hpp"
#include "spattn/error.hpp"

namespace spattn {

std::span<const int32_t> BlockMask::row(int64_t head, int64_t query_block) const {
  const int64_t r = head * q_blocks() + query_block;
  return {col_idx.data() + row_ptr[r], static_cast<size_t>(row_ptr[r + 1] - row_ptr[r])};
}

double BlockMask::density() const {
  const double total = static_cast<double>(rows()) * static_cast<double>(k_blocks());
  return total > 0 ? static_cast<double>(col_idx.size()) / total : 0.0;
}

void BlockMask::validate() const {
  const char* where = "BlockMask";
  auto num = [](auto v) { return std::to_string(v); };
  if (heads <= 0) throw_bad_argument(where, "heads", num(heads), "must be positive");
  if (q_len <= 0) throw_bad_argument(where, "q_len", num(q_len), "must be positive");
  if (kv_len <= 0) throw_bad_argument(where, "kv_len", num(kv_len), "must be positive");
  if (q_block <= 0) throw_bad_argument(where, "q_block", num(q_block), "must be positive");
  if (k_block <= 0) throw_bad_argument(where, "k_block", num(k_block), "must be positive");
  // rows() and k_blocks() compute len + block - 1 and heads * q_blocks: refuse
  // sizes where that overflows int64 (no real mask comes near them).
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  if (q_len > kMax - q_block) throw_bad_argument(where, "q_len", num(q_len), "too large");
  if (kv_len > kMax - k_block) throw_bad_argument(where, "kv_len", num(kv_len), "too large");
  int64_t n_rows = 0;
  if (__builtin_mul_overflow(heads, q_blocks(), &n_rows) || n_rows == kMax)
    throw_bad_argument(where, "heads", num(heads),
                       "heads * q_blocks overflows (q_blocks = " + num(q_blocks()) + ")");
  if (static_cast<int64_t>(row_ptr.size()) != n_rows + 1)
    throw_bad_argument(where, "row_ptr.size()", num(row_ptr.size()),
                       "must be heads * q_blocks + 1 = " + num(n_rows + 1));
  if (row_ptr.front() != 0) throw_bad_argument(where, "row_ptr[0]", num(row_ptr.front()), "must be 0");
  if (row_ptr.back() != static_cast<int64_t>(col_idx.size()))
    throw_bad_argument(where, "row_ptr.back()", num(row_ptr.back()),
                       "must equal col_idx.size() = " + num(col_idx.size()));
  // All of row_ptr first: with it monotone from 0 to col_idx.size(), every
  // row's range lies inside col_idx before the entries are read.
  for (int64_t r = 0; r < n_rows; ++r)
    if (row_ptr[r + 1] < row_ptr[r])
      throw_bad_argument(where, ("row_ptr[" + num(r + 1) + "]").c_str(), num(row_ptr[r + 1]),
                         "is below row_ptr[" + num(r) + "] = " + num(row_ptr[r]));
  // The entry loop is hot (millions of entries): messages are built only on failure.
  const int64_t kbs = k_blocks();
  auto bad_entry = [&](int64_t r, int64_t i, const std::string& why) {
    const std::string arg = "col_idx[" + num(i) + "] (row " + num(r) + ")";
    throw_bad_argument(where, arg.c_str(), num(col_idx[i]), why);
  };
  for (int64_t r = 0; r < n_rows; ++r) {
    const int64_t begin = row_ptr[r], end = row_ptr[r + 1];
    for (int64_t i = begin; i < end; ++i) {
      const int32_t c = col_idx[i];
      if (c < 0 || c >= kbs) [[unlikely]]
        bad_entry(r, i, "out of range [0, " + num(kbs) + ")");
      if (i > begin && c <= col_idx[i - 1]) [[unlikely]]
        bad_entry(r, i, c == col_idx[i - 1] ? "duplicate key block" : "key blocks not sorted");
    }
  }
}

BlockMask BlockMask::dense(int64_t heads, int64_t q_len, int64_t kv_len, int64_t q_block,
                           int64_t k_block) {
  BlockMask m{heads, q_len, kv_len, q_block, k_block, {}, {}};
  if (heads <= 0 || q_len <= 0 || kv_len <= 0 || q_block <= 0 || k_block <= 0) {
    m.validate();  // throws, naming the bad field
  }
  const int64_t kbs = m.k_blocks();
  m.row_ptr.resize(m.rows() + 1);
  m.col_idx.reserve(m.rows() * kbs);
  for (int64_t r = 0; r < m.rows(); ++r) {
    m.row_ptr[r] = r * kbs;
    for (int64_t c = 0; c < kbs; ++c) m.col_idx.push_back(static_cast<int32_t>(c));
  }
  m.row_ptr[m.rows()] = m.rows() * kbs;
  return m;
}

BlockMask BlockMask::from_rows(int64_t heads, int64_t q_len, int64_t kv_len, int64_t q_block,
                               int64_t k_block, const std::vector<std::vector<int32_t>>& lists) {
  BlockMask m{heads, q_len, kv_len, q_block, k_block, {}, {}};
  m.row_ptr.push_back(0);
  for (const auto& l : lists) {
    std::vector<int32_t> sorted = l;
    std::sort(sorted.begin(), sorted.end());
    m.col_idx.insert(m.col_idx.end(), sorted.begin(), sorted.end());
    m.row_ptr.push_back(static_cast<int64_t>(m.col_idx.size()));
  }
  m.validate();
  return m;
}

}  // namespace spattn
