#pragma once
// The few vector operations the generic kernels use, over xsimd batches for
// the SIMD targets and over plain floats for the scalar target, so the kernel
// code is written once. Included only from kernels/isa/*.cpp, each compiled
// with its own target flags.
#include <cmath>

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
