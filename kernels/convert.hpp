#pragma once
// Row conversions between the element types (spattn/shape.hpp), for the
// packing steps and the output stores. Once per operand element per call,
// never in the inner loops, so written once here in portable code.
#include <cstdint>

#include "spattn/shape.hpp"

namespace spattn::detail {

// bf16 bits of x, rounded to nearest even (NaN kept, quiet).
inline uint16_t bf16_bits(float x) {
  uint32_t u = __builtin_bit_cast(uint32_t, x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
inline float bf16_value(uint16_t b) { return __builtin_bit_cast(float, static_cast<uint32_t>(b) << 16); }
float fp16_value(uint16_t h);

// n elements of type t at src -> fp32 (exact).
void widen_row(const void* src, DType t, float* dst, int64_t n);
// n elements of type t at src -> bf16 bits (exact for bf16, rounded otherwise).
void bf16_row(const void* src, DType t, uint16_t* dst, int64_t n);
// n fp32 values -> dst of type t (f32 copy, or bf16 rounded).
void store_row(const float* src, void* dst, DType t, int64_t n);

}  // namespace spattn::detail
