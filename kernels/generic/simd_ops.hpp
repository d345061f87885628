#pragma once
// The few vector operations the generic kernels use, over xsimd batches for
// the SIMD targets and over plain floats for the scalar target, so the kernel
// code is written once. Included only from kernels/isa/*.cpp, each compiled
// with its own target flags.
#include <cmath>
#include <cstdint>

#include "kernels/convert.hpp"

#if !defined(SPATTN_SCALAR_ONLY)
#include <xsimd/xsimd.hpp>
#endif

namespace spattn::detail {

struct ScalarOps {
  using V = float;
  static constexpr int W = 1;
  static V load(const float* p) { return *p; }
  static void store(float* p, V v) { *p = v; }
  static V set1(float x) { return x; }
  static V zero() { return 0.0f; }
  static V fma(V a, V b, V c) { return a * b + c; }  // std::fma is a libm call without FMA hardware
  static V mul(V a, V b) { return a * b; }
  static V sub(V a, V b) { return a - b; }
  static V add(V a, V b) { return a + b; }
  static V max(V a, V b) { return a > b ? a : b; }
  static V exp(V a) { return std::exp(a); }
  static float hsum(V a) { return a; }
  static float hmax(V a) { return a; }
};

#if !defined(SPATTN_SCALAR_ONLY)
template <class Arch>
struct XsimdOps {
  using V = xsimd::batch<float, Arch>;
  static constexpr int W = static_cast<int>(V::size);
  static V load(const float* p) { return V::load_unaligned(p); }
  static void store(float* p, V v) { v.store_unaligned(p); }
  static V set1(float x) { return V(x); }
  static V zero() { return V(0.0f); }
  static V fma(V a, V b, V c) { return xsimd::fma(a, b, c); }
  static V mul(V a, V b) { return a * b; }
  static V sub(V a, V b) { return a - b; }
  static V add(V a, V b) { return a + b; }
  static V max(V a, V b) { return xsimd::max(a, b); }
  static V exp(V a) { return xsimd::exp(a); }
  static float hsum(V a) { return xsimd::hadd(a); }
  static float hmax(V a) {
    alignas(64) float t[W];
    a.store_aligned(t);
    float m = t[0];
    for (int i = 1; i < W; ++i) m = t[i] > m ? t[i] : m;
    return m;
  }
};
#endif

}  // namespace spattn::detail

#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif
namespace spattn::detail {
#if defined(__AVX512BF16__)
// Bf16Ops (kernels/generic/bf16_products-inl.hpp) on AVX-512 BF16: P holds
// 16 bf16 pairs, V 16 floats.
struct Bf16OpsAvx512 {
  using V = __m512;
  using P = __m512i;
  static constexpr int W = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static P load_pairs(const uint16_t* p) { return _mm512_loadu_si512(p); }
  static P broadcast_pair(const uint16_t* p) {
    int32_t x;
    __builtin_memcpy(&x, p, 4);
    return _mm512_set1_epi32(x);
  }
  static V dot2(V acc, P a, P b) { return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b); }
  // 16 fp32 -> bf16, rounded to nearest even (vcvtneps2bf16).
  static void store_rounded(uint16_t* dst, V v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), (__m256i)_mm512_cvtneps_pbh(v));
  }
};
#endif

}  // namespace spattn::detail
