#include "kernels/validate.hpp"

#include <string>

#include "spattn/error.hpp"

namespace spattn::detail {
namespace {

void check_view(const char* where, const char* name, ConstTensorView t, int64_t heads,
                int64_t tokens, int64_t head_dim) {
  const std::string n(name);
  auto bad = [&](const std::string& field, int64_t value, const std::string& why) {
    throw_bad_argument(where, (n + field).c_str(), std::to_string(value), why);
  };
  if (t.data == nullptr) throw_bad_argument(where, (n + ".data").c_str(), "nullptr", "must not be null");
  if (t.heads != heads) bad(".heads", t.heads, "must be " + std::to_string(heads));
  if (t.tokens != tokens) bad(".tokens", t.tokens, "must be " + std::to_string(tokens));
  if (t.head_dim != head_dim) bad(".head_dim", t.head_dim, "must be " + std::to_string(head_dim));
  if (t.token_stride <= 0) bad(".token_stride", t.token_stride, "must be positive");
  if (t.head_stride <= 0) bad(".head_stride", t.head_stride, "must be positive");
  if (t.token_stride < head_dim && t.tokens > 1)
    bad(".token_stride", t.token_stride, "rows overlap: must be >= head_dim " + std::to_string(head_dim));
}

}  // namespace

void check_views(const char* where, const AttentionShape& shape, ConstTensorView q,
                 ConstTensorView k, ConstTensorView v, ConstTensorView out) {
  try {
    shape.validate();
  } catch (const Error& e) {
    throw Error(std::string(e.what()) + " (in " + where + ")");
  }
  check_view(where, "q", q, shape.heads, shape.q_len, shape.head_dim);
  check_view(where, "k", k, shape.kv_heads, shape.kv_len, shape.head_dim);
  check_view(where, "v", v, shape.kv_heads, shape.kv_len, shape.head_dim);
  check_view(where, "out", out, shape.heads, shape.q_len, shape.head_dim);
}

void check_kernel_limits(const char* where, const AttentionShape& shape, int64_t q_block,
                         int64_t k_block) {
  if (shape.head_dim % kHeadDimMultiple != 0 || shape.head_dim > kMaxHeadDim)
    throw_bad_argument(where, "head_dim", std::to_string(shape.head_dim),
                       "the kernels need a multiple of 16 up to 256 (the baselines take any)");
  if (!is_supported_block_size(q_block))
    throw_bad_argument(where, "q_block", std::to_string(q_block), "must be 16, 32, 64 or 128");
  if (!is_supported_block_size(k_block))
    throw_bad_argument(where, "k_block", std::to_string(k_block), "must be 16, 32, 64 or 128");
}

}  // namespace spattn::detail
