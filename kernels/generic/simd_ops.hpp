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
#if defined(__AVX2__)
#include <immintrin.h>
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
  // The softmax's exp of the fp32 path: exp_p(x * kExpArg) = e^x (see Avx512Ops).
  static constexpr float kExpArg = 1.0f;
  static V exp_p(V a) { return std::exp(a); }
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
  static constexpr float kExpArg = 1.0f;
  static V exp_p(V a) { return xsimd::exp(a); }
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

// 2^f on [-1/2, 1/2] for the fp32 softmax exps: a degree-6 minimax
// polynomial (relative error 1.9e-9, 7.9e-8 after fp32 rounding: below
// xsimd::exp's), highest coefficient first.
inline constexpr float kExp2Poly6[] = {0.00015345812425948679f, 0.0013399930903688073f, 0.009618489071726799f,
                                       0.055503286421298981f,   0.24022646248340607f,   0.69314718246459961f,
                                       1.0f};

#if defined(__AVX512F__)
// 2^t for the softmax's probabilities: 2^n 2^f, n = round(t), 2^f on [-1/2,
// 1/2] by the polynomial c[0] f^(N-1) + ... + c[N-1] (Horner), 2^n by
// vscalefps. Lanes whose result would be below 2^-125 (t < -125, -inf
// included) give 0, so P never holds a subnormal (an assist on Intel cores
// for the FMAs and sums that read it); NaN stays NaN (the compare is
// unordered-true).
template <int N>
inline __m512 exp2_softmax(__m512 t, const float (&c)[N]) {
  const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(t, n);
  __m512 p = _mm512_set1_ps(c[0]);
  for (int i = 1; i < N; ++i) p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(c[i]));
  const __mmask16 normal_or_nan = _mm512_cmp_ps_mask(t, _mm512_set1_ps(-125.0f), _CMP_NLT_UQ);
  return _mm512_maskz_scalef_ps(normal_or_nan, p, n);
}
#endif

#if defined(__AVX512BW__)
// XsimdOps on AVX-512 with a cheaper exp for the fp32 softmax probabilities:
// exp_p(t) = 2^t, so e^x = exp_p(x * kExpArg) and the softmax folds kExpArg
// = log2 e into the scale-and-max fma it already does. kExp2Poly6: 10
// instructions against xsimd::exp's 22 (range checks and
// blends that a softmax argument <= 0 does not need; the exp is a large
// share of an fp32 flash step).
struct Avx512Ops : XsimdOps<xsimd::avx512bw> {
  static constexpr float kExpArg = 1.44269504088896341f;
  static V exp_p(V x) {
    return V(exp2_softmax(x, kExp2Poly6));
  }
};
#endif

#if defined(__AVX2__) && defined(__FMA__) && !defined(SPATTN_SCALAR_ONLY)
// exp2_softmax for AVX2, which has no vscalefps: 2^n is built in the
// exponent field, (n + 127) << 23, and multiplied in. Arguments above 127
// saturate there (a softmax's are <= 0); below -125 give 0 as above, NaN
// stays NaN (its polynomial is NaN, and the compare keeps the lane).
template <int N>
inline __m256 exp2_softmax(__m256 t, const float (&c)[N]) {
  t = _mm256_min_ps(_mm256_set1_ps(127.0f), t);  // this operand order passes NaN through
  const __m256 n = _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 f = _mm256_sub_ps(t, n);
  __m256 p = _mm256_set1_ps(c[0]);
  for (int i = 1; i < N; ++i) p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(c[i]));
  const __m256i biased = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
  const __m256 two_n = _mm256_castsi256_ps(_mm256_slli_epi32(biased, 23));
  const __m256 normal_or_nan = _mm256_cmp_ps(t, _mm256_set1_ps(-125.0f), _CMP_NLT_UQ);
  return _mm256_and_ps(_mm256_mul_ps(p, two_n), normal_or_nan);
}

// XsimdOps on AVX2 + FMA with the 2^t softmax exp of Avx512Ops (same
// polynomial): 15 instructions against xsimd::exp's 22.
struct Avx2Ops : XsimdOps<xsimd::fma3<xsimd::avx2>> {
  static constexpr float kExpArg = 1.44269504088896341f;
  static V exp_p(V x) { return V(exp2_softmax(x, kExp2Poly6)); }
};
#endif

}  // namespace spattn::detail

#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif
#if defined(__ARM_FEATURE_BF16_VECTOR_ARITHMETIC)
#include <arm_neon.h>
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
  // The softmax probabilities that are rounded to bf16 next: exp_p(t) = 2^t
  // (exp2_softmax), so e^x = exp_p(x * kExpArg) and the caller folds kExpArg
  // = log2 e into the scale and max it already applies. A degree-3
  // polynomial (relative error 7.6e-5, a 26th of bf16's half ulp 2^-9): 8
  // instructions, against 11 with a degree-5 polynomial and its own multiply
  // by log2 e (the softmax is about a fifth of an AMX step).
  static constexpr float kExpArg = 1.44269504088896341f;
  static V exp_p(V t) {
    static constexpr float c[] = {0.05517001354623277f, 0.24260841456513282f, 0.6932609978469003f,
                                  0.9999282521418085f};
    return exp2_softmax(t, c);
  }
  // 16 fp32 -> bf16, rounded to nearest even (vcvtneps2bf16).
  static void store_rounded(uint16_t* dst, V v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), (__m256i)_mm512_cvtneps_pbh(v));
  }
};
#endif

#if defined(__ARM_FEATURE_BF16_VECTOR_ARITHMETIC)
// Bf16Ops on Arm with BF16 (BFDOT, BFCVTN): P holds 4 bf16 pairs, V 4 floats.
struct Bf16OpsNeon {
  using V = float32x4_t;
  using P = bfloat16x8_t;
  static constexpr int W = 4;
  static V zero() { return vdupq_n_f32(0.0f); }
  static V set1(float x) { return vdupq_n_f32(x); }
  static V load(const float* p) { return vld1q_f32(p); }
  static void store(float* p, V v) { vst1q_f32(p, v); }
  static V mul(V a, V b) { return vmulq_f32(a, b); }
  static P load_pairs(const uint16_t* p) { return vld1q_bf16(reinterpret_cast<const bfloat16_t*>(p)); }
  static P broadcast_pair(const uint16_t* p) {
    uint32_t x;
    __builtin_memcpy(&x, p, 4);
    return vreinterpretq_bf16_u32(vdupq_n_u32(x));
  }
  // acc[i] += a[2i] b[2i] + a[2i+1] b[2i+1] (BFDOT), fp32 accumulation.
  static V dot2(V acc, P a, P b) { return vbfdotq_f32(acc, a, b); }
  // The fp32 exp (kExpArg 1: e^x itself): this path has no cheaper one yet.
  static constexpr float kExpArg = 1.0f;
  static V exp_p(V x) { return xsimd::exp(xsimd::batch<float, xsimd::neon64>(x)); }
  // 4 fp32 -> bf16, rounded to nearest even (BFCVTN).
  static void store_rounded(uint16_t* dst, V v) { vst1_bf16(reinterpret_cast<bfloat16_t*>(dst), vcvt_bf16_f32(v)); }
};
#endif

}  // namespace spattn::detail
