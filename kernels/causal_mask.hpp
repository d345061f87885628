#pragma once
// The causal element mask, shared by the flash kernels (per ISA) and the
// engine's QK-only passes: one rule, one place.
#include <cstdint>

namespace spattn::detail {

// Row r of the logits s (leading dimension ld) belongs to the query at
// position q_pos + r, or at q_rows[r] when given (ascending: a cached step's
// scattered rows, q_rows[0] == q_pos); columns j < valid to the key at position key_pos[t0 + j]
// (key_pos ascending; nullptr: t0 + j). Sets every logit of a key after the
// row's position to -inf. Cold: callers run it on blocks crossing the
// diagonal only, but it is correct (a no-op) on any block.
inline void mask_future_keys(float* s, int64_t ld, int rows, int64_t q_pos, int64_t t0, int valid,
                             const int32_t* key_pos, const int32_t* q_rows = nullptr) {
  if (valid <= 0) return;
  const int64_t last_key = key_pos != nullptr ? key_pos[t0 + valid - 1] : t0 + valid - 1;
  if (last_key <= q_pos) return;  // every row sees the whole block
  for (int r = 0; r < rows; ++r) {
    const int64_t pos = q_rows != nullptr ? q_rows[r] : q_pos + r;
    int seen = 0;  // keys at positions <= pos: a prefix, positions ascend
    if (key_pos == nullptr) {
      const int64_t n = pos - t0 + 1;
      seen = static_cast<int>(n < 0 ? 0 : (n > valid ? valid : n));
    } else {
      while (seen < valid && key_pos[t0 + seen] <= pos) ++seen;
    }
    float* row = s + r * ld;
    for (int j = seen; j < valid; ++j) row[j] = -__builtin_inff();
  }
}

}  // namespace spattn::detail
