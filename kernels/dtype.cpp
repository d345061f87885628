// Element types: names and conversions (spattn/shape.hpp, kernels/convert.hpp).
#include <cctype>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <cstring>
#include <string>

#include "dispatch/cpu_features.hpp"
#include "kernels/convert.hpp"
#include "spattn/error.hpp"
#include "spattn/shape.hpp"

namespace spattn {

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::fp32: return "fp32";
    case DType::bf16: return "bf16";
    case DType::fp16: return "fp16";
  }
  return "unknown";
}

DType parse_dtype(std::string_view name) {
  std::string s(name);
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (s == "f32" || s == "fp32" || s == "float32") return DType::fp32;
  if (s == "bf16" || s == "bfloat16") return DType::bf16;
  if (s == "f16" || s == "fp16" || s == "float16") return DType::fp16;
  throw_bad_argument("parse_dtype", "dtype", std::string(name), "expected fp32, bf16 or fp16");
}

int64_t dtype_bytes(DType dtype) { return dtype == DType::fp32 ? 4 : 2; }

float to_float(bf16_t x) { return detail::bf16_value(x.bits); }
float to_float(fp16_t x) { return detail::fp16_value(x.bits); }
bf16_t to_bf16(float x) { return bf16_t{detail::bf16_bits(x)}; }

fp16_t to_fp16(float x) {
  const uint32_t u = __builtin_bit_cast(uint32_t, x);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return fp16_t{static_cast<uint16_t>(sign | 0x7e00u)};  // NaN
  if (a >= 0x477ff000u) return fp16_t{static_cast<uint16_t>(sign | 0x7c00u)};  // rounds past 65504: inf
  if (a < 0x38800000u) {  // below the smallest normal 2^-14: subnormal or zero, in units of 2^-24
    const float scaled = __builtin_bit_cast(float, a) * 16777216.0f;  // exact (power of two)
    // Round to nearest even through the fp32 adder (0.5 + 2^23 trick).
    const float r = (scaled + 8388608.0f) - 8388608.0f;
    return fp16_t{static_cast<uint16_t>(sign | static_cast<uint16_t>(r))};
  }
  // Normal: rebias the exponent, round the 13 dropped mantissa bits to nearest even.
  uint32_t m = a - (112u << 23);
  m += 0xfffu + ((m >> 13) & 1u);
  return fp16_t{static_cast<uint16_t>(sign | (m >> 13))};
}

namespace detail {

float fp16_value(uint16_t h) {
  // Selects, not branches, so that loops over it vectorize.
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  const float sub = static_cast<float>(man) * 5.9604644775390625e-8f;  // zero or subnormal: man x 2^-24, exact
  const uint32_t normal = ((exp == 31 ? 255u : exp + 112u) << 23) | (man << 13);
  const uint32_t bits = exp == 0 ? __builtin_bit_cast(uint32_t, sub) : normal;
  return __builtin_bit_cast(float, sign | bits);
}

namespace {

#if defined(__x86_64__)
// vcvtph2ps, on CPUs with F16C (every AVX2 CPU we dispatch to has it).
__attribute__((target("avx,f16c"))) void widen_fp16_f16c(const uint16_t* s, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i))));
  for (; i < n; ++i) dst[i] = fp16_value(s[i]);
}
bool has_f16c() { return cpu_features().f16c; }
#endif

void widen_fp16(const uint16_t* s, float* dst, int64_t n) {
#if defined(__x86_64__)
  if (has_f16c()) return widen_fp16_f16c(s, dst, n);
#endif
  for (int64_t i = 0; i < n; ++i) dst[i] = fp16_value(s[i]);
}

}  // namespace

void widen_row(const void* src, DType t, float* dst, int64_t n) {
  switch (t) {
    case DType::fp32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case DType::bf16: {
      const auto* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_value(s[i]);
      return;
    }
    case DType::fp16:
      widen_fp16(static_cast<const uint16_t*>(src), dst, n);
      return;
  }
}

void bf16_row(const void* src, DType t, uint16_t* dst, int64_t n) {
  switch (t) {
    case DType::bf16:
      std::memcpy(dst, src, static_cast<size_t>(n) * 2);
      return;
    case DType::fp32: {
      const auto* s = static_cast<const float*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_bits(s[i]);
      return;
    }
    case DType::fp16: {
      const auto* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_bits(fp16_value(s[i]));
      return;
    }
  }
}

void store_row(const float* src, void* dst, DType t, int64_t n) {
  if (t == DType::fp32) {
    std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
  } else {
    auto* d = static_cast<uint16_t*>(dst);
    for (int64_t i = 0; i < n; ++i) d[i] = bf16_bits(src[i]);
  }
}

}  // namespace detail
}  // namespace spattn
