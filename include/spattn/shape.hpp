#pragma once
// Attention shapes and strided tensor views over caller-owned fp32 memory.
#include <cstdint>

namespace spattn {

// heads query heads attend over kv_heads key/value heads (GQA: kv_heads divides
// heads; query head h reads kv head h / (heads / kv_heads)).
struct AttentionShape {
  int64_t heads = 0;
  int64_t kv_heads = 0;
  int64_t q_len = 0;
  int64_t kv_len = 0;
  int64_t head_dim = 0;
  float scale = 0.0f;  // softmax scale; 0 means 1/sqrt(head_dim)

  float effective_scale() const;
  int64_t group_size() const { return heads / kv_heads; }
  // Throws spattn::Error naming the first bad field.
  void validate() const;
};

// A [heads][tokens][head_dim] tensor with arbitrary head and token strides (in
// elements; the head_dim axis is contiguous). heads_major() is the default
// layout, tokens_major() is [tokens][heads][head_dim].
template <class T>
struct BasicTensorView {
  T* data = nullptr;
  int64_t heads = 0;
  int64_t tokens = 0;
  int64_t head_dim = 0;
  int64_t head_stride = 0;
  int64_t token_stride = 0;

  static BasicTensorView heads_major(T* p, int64_t heads, int64_t tokens, int64_t head_dim) {
    return {p, heads, tokens, head_dim, tokens * head_dim, head_dim};
  }
  static BasicTensorView tokens_major(T* p, int64_t heads, int64_t tokens, int64_t head_dim) {
    return {p, heads, tokens, head_dim, head_dim, heads * head_dim};
  }
  T* row(int64_t head, int64_t token) const { return data + head * head_stride + token * token_stride; }

  operator BasicTensorView<const T>() const {  // NOLINT: views convert to const views
    return {data, heads, tokens, head_dim, head_stride, token_stride};
  }
};

using TensorView = BasicTensorView<float>;
using ConstTensorView = BasicTensorView<const float>;

}  // namespace spattn
