#pragma once
// Attention shapes, element types, and strided tensor views over
// caller-owned memory.
#include <cstdint>
#include <string_view>
#include <type_traits>

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
  // Causal attention (autoregressive prefill): query token t sits at absolute
  // position q_offset + t and sees the keys at positions <= its own. q_offset
  // kQOffsetEnd (the default) means kv_len - q_len: the queries are the last
  // q_len tokens of the cache. Set it explicitly for chunked prefill into a
  // cache with spare capacity. Needs q_offset + q_len <= kv_len, so every
  // query sees at least key 0. Without causal, q_offset must stay
  // kQOffsetEnd (positions only matter under causality and for the patterns'
  // diagonal, which uses the same rule).
  bool causal = false;
  int64_t q_offset = kQOffsetEnd;
  static constexpr int64_t kQOffsetEnd = -1;

  float effective_scale() const;
  // Absolute position of query token 0.
  int64_t query_position0() const { return q_offset == kQOffsetEnd ? kv_len - q_len : q_offset; }
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

// Element types of Q, K, V and the output. bf16: the upper half of an IEEE
// fp32 (8 exponent bits, 7 mantissa bits), as PyTorch's torch.bfloat16 and
// numpy's ml_dtypes.bfloat16 store it. fp16: IEEE binary16 (torch.float16,
// numpy.float16). Both as raw 16-bit patterns.
enum class DType : uint8_t { fp32, bf16, fp16 };
struct bf16_t {
  uint16_t bits;
};
struct fp16_t {
  uint16_t bits;
};
// "fp32", "bf16", "fp16": the names of every flag and profile key (C: SPATTN_FP32, ...).
const char* dtype_name(DType dtype);
// Parses those names (also f32/float32, bfloat16, f16/float16; any case);
// throws spattn::Error otherwise.
DType parse_dtype(std::string_view name);
int64_t dtype_bytes(DType dtype);
template <class T>
constexpr DType dtype_of() {
  using U = std::remove_const_t<T>;
  static_assert(std::is_same_v<U, float> || std::is_same_v<U, bf16_t> || std::is_same_v<U, fp16_t>,
                "spattn views hold float, bf16_t or fp16_t");
  if constexpr (std::is_same_v<U, bf16_t>) return DType::bf16;
  else if constexpr (std::is_same_v<U, fp16_t>) return DType::fp16;
  else return DType::fp32;
}
// Exact widening, and round-to-nearest-even narrowing (NaN stays NaN, values
// beyond the range become +-inf).
float to_float(bf16_t x);
float to_float(fp16_t x);
bf16_t to_bf16(float x);
fp16_t to_fp16(float x);

// A view of any element type, as the kernels take Q, K and V: built
// implicitly from any BasicTensorView (fp32 views keep working unchanged).
// Strides are in elements of that type.
template <class Void>
struct BasicAnyView {
  Void* data = nullptr;
  DType dtype = DType::fp32;
  int64_t heads = 0;
  int64_t tokens = 0;
  int64_t head_dim = 0;
  int64_t head_stride = 0;
  int64_t token_stride = 0;

  BasicAnyView() = default;
  template <class T>
    requires(std::is_const_v<Void> || !std::is_const_v<T>)
  BasicAnyView(const BasicTensorView<T>& v)  // NOLINT: typed views convert implicitly
      : data(v.data), dtype(dtype_of<T>()), heads(v.heads), tokens(v.tokens), head_dim(v.head_dim),
        head_stride(v.head_stride), token_stride(v.token_stride) {}
  BasicAnyView(Void* p, DType t, int64_t h, int64_t n, int64_t d, int64_t hs, int64_t ts)
      : data(p), dtype(t), heads(h), tokens(n), head_dim(d), head_stride(hs), token_stride(ts) {}
  operator BasicAnyView<const void>() const {  // NOLINT: as views convert to const views
    return {data, dtype, heads, tokens, head_dim, head_stride, token_stride};
  }

  // Start of a row, in bytes.
  auto row(int64_t head, int64_t token) const {
    using Byte = std::conditional_t<std::is_const_v<Void>, const unsigned char, unsigned char>;
    return static_cast<Void*>(static_cast<Byte*>(data) +
                              (head * head_stride + token * token_stride) * dtype_bytes(dtype));
  }
  // The typed view back; T must match dtype (checked by the caller).
  template <class T>
  BasicTensorView<T> as() const {
    return {static_cast<T*>(data), heads, tokens, head_dim, head_stride, token_stride};
  }
};
// Q, K, V: fp32, bf16 or fp16. Output: fp32 or bf16.
using InputView = BasicAnyView<const void>;
using OutputView = BasicAnyView<void>;

}  // namespace spattn
