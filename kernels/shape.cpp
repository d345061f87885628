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
  if (!std::isfinite(scale) || scale < 0.0f)
    throw_bad_argument("AttentionShape", "scale", std::to_string(scale),
                       "must be finite and >= 0 (0 means 1/sqrt(head_dim))");
}

}  // namespace spattn
