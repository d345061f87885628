#include <cmath>
#include <string>

#include "spattn/error.hpp"
#include "spattn/shape.hpp"

namespace spattn {

float AttentionShape::effective_scale() const {
  return scale != 0.0f ? scale : 1.0f / std::sqrt(static_cast<float>(head_dim));
}

void AttentionShape::validate() const {
  auto bad = [](const char* arg, int64_t v, const char* why) {
    throw_bad_argument("AttentionShape", arg, std::to_string(v), why);
  };
  if (heads <= 0) bad("heads", heads, "must be positive");
  if (kv_heads <= 0) bad("kv_heads", kv_heads, "must be positive");
  if (heads % kv_heads != 0)
    bad("kv_heads", kv_heads, ("must divide heads (" + std::to_string(heads) + ")").c_str());
  if (q_len <= 0) bad("q_len", q_len, "must be positive");
  if (kv_len <= 0) bad("kv_len", kv_len, "must be positive");
  if (head_dim <= 0) bad("head_dim", head_dim, "must be positive");
  // Every size the kernels compute (tensor elements, packed keys rounded up to
  // a block, bytes) must fit in int64 with room to spare: one limit, 2^56
  // elements per tensor, far beyond any memory.
  constexpr int64_t kMaxElements = int64_t{1} << 56;
  auto elements = [&](const char* arg, int64_t h, int64_t tokens) {
    int64_t n = 0;
    if (__builtin_mul_overflow(h, tokens + 128, &n) || __builtin_mul_overflow(n, head_dim, &n) || n > kMaxElements)
      throw_bad_argument("AttentionShape", arg, std::to_string(tokens),
                         "tensor size overflows int64 (heads x tokens x head_dim must stay below 2^56)");
  };
  elements("q_len", heads, q_len);
  elements("kv_len", kv_heads, kv_len);
  if (q_offset != kQOffsetEnd) {
    if (!causal) bad("q_offset", q_offset, "is only meaningful with causal = true (leave it at kQOffsetEnd = -1)");
    if (q_offset < 0) bad("q_offset", q_offset, "must be >= 0, or kQOffsetEnd (-1) for kv_len - q_len");
  }
  if (causal && q_len > kv_len)
    bad("q_len", q_len,
        ("with causal, q_len must not exceed kv_len " + std::to_string(kv_len) +
         ": the queries' own keys must be in the cache").c_str());
  if (causal && query_position0() > kv_len - q_len)  // no overflow: both sides are in range
    bad("q_len", q_len,
        ("with causal, q_offset + q_len (" + std::to_string(query_position0()) + " + " + std::to_string(q_len) +
         ") must not exceed kv_len " + std::to_string(kv_len) + ": the queries' own keys must be in the cache")
            .c_str());
  if (!std::isfinite(scale) || scale < 0.0f)
    throw_bad_argument("AttentionShape", "scale", std::to_string(scale),
                       "must be finite and >= 0 (0 means 1/sqrt(head_dim))");
}

}  // namespace spattn
