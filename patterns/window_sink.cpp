// Window + sink (StreamingLLM's attention sinks plus a local band), as key
// blocks. Diffusion LMs attend bidirectionally, so the band extends on both
// sides of the query block.
//
// For query block qb (tokens [qb*block, min((qb+1)*block, q_len))) with key
// positions [lo, hi] (query token t sits at key position t +
// shape.query_position0(), i.e. t + kv_len - q_len unless a causal shape sets
// q_offset: queries are the last q_len positions, as with a cached prefix; positions
// clamped into [0, kv_len)), the row keeps every key block that holds a token
//  - in [0, sink_tokens) (the sinks), or
//  - in [lo - window_tokens/2, hi + window_tokens/2] (integer halving: an odd
//    window rounds down).
// The query block's own key blocks are therefore always kept. Every head gets
// the same rows.
//
// Causal shapes (query token t at position query_position0() + t): the band
// lies behind the queries only, as StreamingLLM's: [lo - window_tokens, hi],
// and nothing after hi is listed.
#include <algorithm>
#include <string>
#include <vector>

#include "patterns/validate_params.hpp"
#include "spattn/attention.hpp"
#include "spattn/error.hpp"
#include "spattn/patterns.hpp"

namespace spattn {

namespace detail {

void validate_window_sink_params(const char* where, const std::string& prefix,
                                 const WindowSinkParams& p) {
  auto bad = [&](const char* field, int64_t v, const char* why) {
    throw_bad_argument(where, (prefix + field).c_str(), std::to_string(v), why);
  };
  check_block_size(where, prefix + "block", p.block_size);
  if (p.sink_tokens < 0) bad("sink_tokens", p.sink_tokens, "must be >= 0");
  if (p.window_tokens < 0) bad("window_tokens", p.window_tokens, "must be >= 0");
}

}  // namespace detail

BlockMask window_sink_mask(const AttentionShape& shape, const WindowSinkParams& params) {
  const char* where = "window_sink_mask";
  detail::validate_window_sink_params(where, "params.", params);
  try {
    shape.validate();
  } catch (const Error& e) {
    throw Error(std::string(e.what()) + " (in " + where + ")");
  }

  const int64_t block = params.block_size;
  const int64_t q_blocks = (shape.q_len + block - 1) / block;
  const int64_t offset = shape.query_position0();
  const int64_t last_key = shape.kv_len - 1;
  // How far the band reaches behind and ahead of the query block.
  const int64_t behind = std::min(shape.causal ? params.window_tokens : params.window_tokens / 2, shape.kv_len);
  const int64_t ahead = shape.causal ? 0 : behind;
  const int64_t sink_last_block =
      params.sink_tokens > 0 ? (std::min(params.sink_tokens, shape.kv_len) - 1) / block : -1;

  std::vector<std::vector<int32_t>> per_query_block(static_cast<size_t>(q_blocks));
  for (int64_t qb = 0; qb < q_blocks; ++qb) {
    const int64_t lo = std::clamp<int64_t>(qb * block + offset, 0, last_key);
    const int64_t hi = std::clamp<int64_t>(std::min((qb + 1) * block, shape.q_len) - 1 + offset, 0, last_key);
    const int64_t band_first = std::max<int64_t>(0, lo - behind) / block;
    const int64_t band_last = std::min(last_key, hi + ahead) / block;
    // Causal: sinks after the queries are not attended either.
    const int64_t sinks_last = shape.causal ? std::min(sink_last_block, hi / block) : sink_last_block;
    std::vector<int32_t>& row = per_query_block[qb];
    for (int64_t kb = 0; kb <= sinks_last && kb < band_first; ++kb) row.push_back(static_cast<int32_t>(kb));
    for (int64_t kb = band_first; kb <= band_last; ++kb) row.push_back(static_cast<int32_t>(kb));
    for (int64_t kb = band_last + 1; kb <= sinks_last; ++kb)  // sinks past the band
      row.push_back(static_cast<int32_t>(kb));
  }

  BlockMask m{shape.heads, shape.q_len, shape.kv_len, block, block, {}, {}};
  m.row_ptr.reserve(static_cast<size_t>(shape.heads * q_blocks + 1));
  m.row_ptr.push_back(0);
  for (int64_t h = 0; h < shape.heads; ++h)
    for (const auto& row : per_query_block) {
      m.col_idx.insert(m.col_idx.end(), row.begin(), row.end());
      m.row_ptr.push_back(static_cast<int64_t>(m.col_idx.size()));
    }
  m.validate();
  return m;
}

}  // namespace spattn
