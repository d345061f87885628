// Probe (not part of the build): what one AMX product of flash's QK costs on
// this core, and how much storing the logit tiles adds. One 64-row x 512-key
// step (d 128), the 2 x 2 tile blocking of kernels/isa/amx_products-inl.hpp,
// keys from a 2 MiB ring (as from L2), in two key layouts:
//  kb512: [64 pair rows][512 keys][2]     (B tile rows 2 KiB apart: the dense AMX plan)
//  tile : [32 key chunks of 16][64][16][2] (a B tile is 1 KiB contiguous)
// and five ways of storing the 32 x 32 logit blocks: none, row-major with
// ld 512 (what the kernel does), tile-major (each tile 1 KiB contiguous),
// into a 4 KiB ring that stays in L1, row-major with ld 128.
// Build: g++ -O2 -static -mavx512f -mavx512bf16 -mavx512bw -mamx-tile -mamx-bf16 amx_qk_stores.cpp
// Results: bench/results/README.md, "Where the AMX step's time goes".
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <chrono>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <vector>
#include <algorithm>
struct alignas(64) Cfg { uint8_t p = 1, s = 0, r[14] = {}; uint16_t c[16] = {}; uint8_t rows[16] = {}; };
constexpr int D = 128, KEYS = 512, ROWS = 64, NBLK = 16;  // 16 x 128 KiB = 2 MiB of keys
alignas(64) static uint16_t Q[ROWS * D];
alignas(64) static float S[ROWS * KEYS];
static uint16_t* K;
// Address of the B tile for keys [n, n+16), pair rows [k2, k2+16), and its row stride in bytes.
static inline const uint16_t* btile(int layout, const uint16_t* blk, int n, int k2, long& stride) {
  if (layout == 0) { stride = KEYS * 4; return blk + (k2 * KEYS + n) * 2; }
  if (layout == 1) { stride = 64 * 4; return blk + (n / 64) * (64 * D) + (k2 * 64 + n % 64) * 2; }
  stride = 64; return blk + (n / 16) * (16 * D) + k2 * 32;
}
static void qk_step(int layout, const uint16_t* blk, int store) {
  for (int n0 = 0; n0 < KEYS; n0 += 32)
    for (int r0 = 0; r0 < ROWS; r0 += 32) {
      _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
      for (int k0 = 0; k0 < D; k0 += 32) {
        long sb; const uint16_t* b0 = btile(layout, blk, n0, k0 / 2, sb); const uint16_t* b1 = btile(layout, blk, n0 + 16, k0 / 2, sb);
        _tile_loadd(6, b0, sb); _tile_loadd(7, b1, sb);
        _tile_loadd(4, Q + r0 * D + k0, D * 2);
        _tile_dpbf16ps(0, 4, 6); _tile_dpbf16ps(1, 4, 7);
        _tile_loadd(5, Q + (r0 + 16) * D + k0, D * 2);
        _tile_dpbf16ps(2, 5, 6); _tile_dpbf16ps(3, 5, 7);
      }
      if (store == 1) {
        float* s = S + r0 * KEYS + n0;
        _tile_stored(0, s, KEYS * 4); _tile_stored(1, s + 16, KEYS * 4);
        _tile_stored(2, s + 16 * KEYS, KEYS * 4); _tile_stored(3, s + 16 * KEYS + 16, KEYS * 4);
      } else if (store == 2) {  // tile-major: each tile 1 KiB contiguous, 128 KiB in all
        float* s = S + ((r0 / 16) * (KEYS / 16) + n0 / 16) * 256;
        _tile_stored(0, s, 64); _tile_stored(1, s + 256, 64);
        _tile_stored(2, s + (KEYS / 16) * 256, 64); _tile_stored(3, s + (KEYS / 16) * 256 + 256, 64);
      } else if (store == 3) {  // 4 KiB ring in L1
        _tile_stored(0, S, 64); _tile_stored(1, S + 256, 64); _tile_stored(2, S + 512, 64); _tile_stored(3, S + 768, 64);
      } else if (store == 4) {  // row-major, 128-key slab (ld 128): 32 KiB
        float* s = S + r0 * 128 + n0 % 128;
        _tile_stored(0, s, 512); _tile_stored(1, s + 16, 512);
        _tile_stored(2, s + 16 * 128, 512); _tile_stored(3, s + 16 * 128 + 16, 512);
      }
    }
  if (store == 0) _tile_stored(0, S, 64);
}
int main() {
  if (syscall(SYS_arch_prctl, 0x1023, 18)) { puts("no AMX permission"); return 1; }
  Cfg c; for (int t = 0; t < 8; ++t) { c.c[t] = 64; c.rows[t] = 16; } _tile_loadconfig(&c);
  K = static_cast<uint16_t*>(aligned_alloc(64, size_t(NBLK) * KEYS * D * 2));
  for (size_t i = 0; i < size_t(NBLK) * KEYS * D; ++i) K[i] = 0x3f80 + (i % 7);
  for (int i = 0; i < ROWS * D; ++i) Q[i] = 0x3f80;
  const char* names[] = {"kb512", "kb64", "tile"};  // kb64 (the sparse path's blocks) is not run
  const int steps = 400;
  for (int round = 0; round < 3; ++round)
    for (int layout = 0; layout < 3; layout += 2)
      for (int store = 0; store <= 4; ++store) {
        auto t0 = std::chrono::steady_clock::now();
        for (int s = 0; s < steps; ++s) qk_step(layout, K + size_t(s % NBLK) * KEYS * D, store);
        auto t1 = std::chrono::steady_clock::now();
        double ns = std::chrono::duration<double, std::nano>(t1 - t0).count() / (steps * 512.0);
        printf("round %d %-5s %s: %.2f ns per product\n", round, names[layout], (const char*[]){"nostore", "rowmajor ld512", "tilemajor", "L1 ring", "rowmajor ld128"}[store], ns);
      }
  _tile_release();
}
