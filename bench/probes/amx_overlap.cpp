// Probe (not part of the build): can a core run AVX-512 work (the softmax's
// exp, rounding to bf16) while its AMX unit runs products? After every group
// of 4 tile products (operands in L1), V vectors of exp work; times the
// products alone, the vectors alone and the two interleaved.
// Build: g++ -O2 -static -mavx512f -mavx512bf16 -mavx512bw -mamx-tile -mamx-bf16 amx_overlap.cpp
// Results: bench/results/README.md, "Where the AMX step's time goes".
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <chrono>
#include <cstdio>
#include <cstdint>
#include <initializer_list>
struct alignas(64) Cfg { uint8_t p = 1, s = 0, r[14] = {}; uint16_t c[16] = {}; uint8_t rows[16] = {}; };
alignas(64) static uint16_t A[2][16 * 32], B[2][16 * 32];
alignas(64) static float S[64 * 512];
alignas(64) static uint16_t P[64 * 512];
static inline void four() {
  _tile_loadd(4, A[0], 64); _tile_loadd(6, B[0], 64); _tile_dpbf16ps(0, 4, 6);
  _tile_loadd(7, B[1], 64); _tile_dpbf16ps(1, 4, 7);
  _tile_loadd(5, A[1], 64); _tile_dpbf16ps(2, 5, 6); _tile_dpbf16ps(3, 5, 7);
}
static inline __m512 exps(int j0, int n, __m512 acc) {
  const __m512 nm = _mm512_set1_ps(-3.0f);
  for (int j = j0; j < j0 + n * 16; j += 16) {
    int jj = j & (64 * 512 - 1);
    __m512 t = _mm512_add_ps(_mm512_load_ps(S + jj), nm);
    __m512 nn = _mm512_roundscale_ps(t, 8), f = _mm512_sub_ps(t, nn);
    __m512 q = _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_set1_ps(0.055f), f, _mm512_set1_ps(0.24f)), f, _mm512_set1_ps(0.69f)), f, _mm512_set1_ps(1.0f));
    q = _mm512_scalef_ps(q, nn);
    acc = _mm512_add_ps(acc, q);
    _mm256_store_si256((__m256i*)(P + jj), (__m256i)_mm512_cvtneps_pbh(q));
  }
  return acc;
}
int main() {
  if (syscall(SYS_arch_prctl, 0x1023, 18)) { puts("no AMX permission"); return 1; }
  Cfg c; for (int t = 0; t < 8; ++t) { c.c[t] = 64; c.rows[t] = 16; } _tile_loadconfig(&c);
  for (int i = 0; i < 64 * 512; ++i) S[i] = (i % 97) * 0.01f;
  _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
  auto now = [] { return std::chrono::steady_clock::now(); };
  auto ns = [](auto a, auto b) { return std::chrono::duration<double, std::nano>(b - a).count(); };
  __m512 acc = _mm512_setzero_ps();
  const int groups = 200000;
  for (int round = 0; round < 2; ++round)
    for (int v : {2, 4, 8, 16}) {
      auto t0 = now();
      for (int g = 0; g < groups; ++g) four();
      auto t1 = now();
      for (int g = 0; g < groups; ++g) acc = exps(g * v * 16, v, acc);
      auto t2 = now();
      for (int g = 0; g < groups; ++g) { four(); acc = exps(g * v * 16, v, acc); }
      auto t3 = now();
      printf("V %2d per 4 products: tiles %.1f ns, vectors %.1f ns, interleaved %.1f ns per group (sum %.1f)\n", v,
             ns(t0, t1) / groups, ns(t1, t2) / groups, ns(t2, t3) / groups, (ns(t0, t1) + ns(t1, t2)) / groups);
    }
  float out[16]; _mm512_storeu_ps(out, acc); _tile_stored(0, S, 64);
  printf("%g %g\n", out[0], S[0]);
  _tile_release();
}
