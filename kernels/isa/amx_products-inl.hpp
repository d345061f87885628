// The bf16 products of flash attention on AMX-BF16 tiles (_tile_dpbf16ps:
// C[16][16] fp32 += A[16][32] bf16 x B[16 pair rows][16 x 2] bf16). They read
// the bf16 pair layouts the AVX-512 BF16 kernels read (bf16_products-inl.hpp):
// a key pair row is a B tile row for QK, a value pair row one for PV; query
// rows and rounded probability rows are A tile rows as they are. Full 16-row
// groups run on tiles; the rows after the last full group, head dims that are
// not a multiple of 32 and key tails shorter than 32 run the AVX-512 BF16
// products (included before this file in the same namespace).
//
// Tile registers, every one 16 rows x 64 bytes (palette 1):
//   tmm0..3  fp32 accumulators: C(i, j) = tmm(2i + j), a 32 x 32 output block
//   tmm4, 5  A: 16 rows x 32 bf16 (query rows / probability rows)
//   tmm6, 7  B: 16 pair rows x 16 columns (key pairs / value pairs)

struct alignas(64) TileConfig {
  uint8_t palette_id = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// Tile state is per thread, and any other library on the thread may have
// configured it differently, so every entry point loads the configuration
// (one ldtilecfg per query block) and releases the tiles when done.
inline void configure_tiles() {
  TileConfig c;
  for (int t = 0; t < 8; ++t) {
    c.colsb[t] = 64;
    c.rows[t] = 16;
  }
  _tile_loadconfig(&c);
}

// s = q . k for RB x 16 query rows and CB x 16 keys (unscaled), head_dim a
// multiple of 32; kt points at the block's first key column (pair row 0).
template <int RB, int CB>
inline void qk_amx_block(const uint16_t* q, int64_t q_stride, const uint16_t* kt, int ld_kt, int head_dim, float* s,
                         int ld_s) {
  _tile_zero(0);
  if constexpr (CB > 1) _tile_zero(1);
  if constexpr (RB > 1) _tile_zero(2);
  if constexpr (RB > 1 && CB > 1) _tile_zero(3);
  const long qb = static_cast<long>(q_stride) * 2, kbytes = static_cast<long>(ld_kt) * 4;
  for (int k0 = 0; k0 < head_dim; k0 += 32) {
    const uint16_t* b = kt + static_cast<int64_t>(k0 / 2) * ld_kt * 2;
    _tile_loadd(6, b, kbytes);
    if constexpr (CB > 1) _tile_loadd(7, b + 32, kbytes);
    _tile_loadd(4, q + k0, qb);
    _tile_dpbf16ps(0, 4, 6);
    if constexpr (CB > 1) _tile_dpbf16ps(1, 4, 7);
    if constexpr (RB > 1) {
      _tile_loadd(5, q + 16 * q_stride + k0, qb);
      _tile_dpbf16ps(2, 5, 6);
      if constexpr (CB > 1) _tile_dpbf16ps(3, 5, 7);
    }
  }
  const long sb = static_cast<long>(ld_s) * 4;
  _tile_stored(0, s, sb);
  if constexpr (CB > 1) _tile_stored(1, s + 16, sb);
  if constexpr (RB > 1) _tile_stored(2, s + 16 * ld_s, sb);
  if constexpr (RB > 1 && CB > 1) _tile_stored(3, s + 16 * ld_s + 16, sb);
}

// qk_scores_bf16's contract on tiles already configured.
inline void qk_scores_amx_configured(const uint16_t* q, int64_t q_stride, int rows, const uint16_t* kt, int ld_kt,
                                     int cols, int head_dim, float scale, float* s, int ld_s) {
  const int full = head_dim % 32 == 0 ? rows / 16 * 16 : 0;
  // Key columns outer: a column pair's key tiles (8 KiB at d 128) are read
  // from L2 once and reused from L1 by every row pair; the query rows stay in
  // L1 anyway (with rows outer, a 512-key step reread 128 KiB of keys per
  // row pair).
  for (int n0 = 0; n0 < cols; n0 += 32) {
    const bool two_cols = cols - n0 >= 32;
    for (int r0 = 0; r0 < full; r0 += 32) {
      const bool two_rows = full - r0 >= 32;
      const uint16_t* qr = q + r0 * q_stride;
      const uint16_t* kc = kt + n0 * 2;
      float* sb = s + r0 * ld_s + n0;
      if (two_rows && two_cols) qk_amx_block<2, 2>(qr, q_stride, kc, ld_kt, head_dim, sb, ld_s);
      else if (two_rows) qk_amx_block<2, 1>(qr, q_stride, kc, ld_kt, head_dim, sb, ld_s);
      else if (two_cols) qk_amx_block<1, 2>(qr, q_stride, kc, ld_kt, head_dim, sb, ld_s);
      else qk_amx_block<1, 1>(qr, q_stride, kc, ld_kt, head_dim, sb, ld_s);
    }
  }
  const typename Ops::V sv = Ops::set1(scale);
  for (int r = 0; r < full && scale != 1.0f; ++r)
    for (int c = 0; c < cols; c += Ops::W) Ops::store(s + r * ld_s + c, Ops::mul(Ops::load(s + r * ld_s + c), sv));
  if (full < rows)
    qk_scores_bf16(q + full * q_stride, q_stride, rows - full, kt, ld_kt, cols, head_dim, scale, s + full * ld_s, ld_s);
}

// The table's qk_scores_bf16 (the engine's QK-only passes call it alone).
inline void qk_scores_amx(const uint16_t* q, int64_t q_stride, int rows, const uint16_t* kt, int ld_kt, int cols,
                          int head_dim, float scale, float* s, int ld_s) {
  configure_tiles();
  qk_scores_amx_configured(q, q_stride, rows, kt, ld_kt, cols, head_dim, scale, s, ld_s);
  _tile_release();
}

// o += p . v for RB x 16 rows and CB x 16 output columns over all n blocks of
// a softmax step, the accumulator tiles held across them: per-block calls
// loaded and stored them for every 32 key pairs (as many tile moves as
// products, each store reloaded by the next block). v: output column 0 of
// the head's packed values; block j's probabilities start at column j x kb
// of p; every block has kb / 2 pairs (a multiple of 16) but the last,
// last_pairs (its tile part).
template <int RB, int CB>
inline void pv_amx_step_block(float* o, int ld_o, const uint16_t* p, int ld_p, const uint16_t* v,
                              const int32_t* blocks, int n, int kb, int last_pairs, int head_dim) {
  const long ob = static_cast<long>(ld_o) * 4, pb = static_cast<long>(ld_p) * 2, vb = static_cast<long>(head_dim) * 4;
  _tile_loadd(0, o, ob);
  if constexpr (CB > 1) _tile_loadd(1, o + 16, ob);
  if constexpr (RB > 1) _tile_loadd(2, o + 16 * ld_o, ob);
  if constexpr (RB > 1 && CB > 1) _tile_loadd(3, o + 16 * ld_o + 16, ob);
  for (int j = 0; j < n; ++j) {
    const uint16_t* vj = v + static_cast<int64_t>(blocks[j]) * kb * head_dim;
    const uint16_t* pj = p + j * kb;
    const int pairs = j + 1 < n ? kb / 2 : last_pairs;
    for (int kk = 0; kk < pairs; kk += 16) {
      const uint16_t* b = vj + static_cast<int64_t>(kk) * head_dim * 2;
      _tile_loadd(6, b, vb);
      if constexpr (CB > 1) _tile_loadd(7, b + 32, vb);
      _tile_loadd(4, pj + kk * 2, pb);
      _tile_dpbf16ps(0, 4, 6);
      if constexpr (CB > 1) _tile_dpbf16ps(1, 4, 7);
      if constexpr (RB > 1) {
        _tile_loadd(5, pj + 16 * ld_p + kk * 2, pb);
        _tile_dpbf16ps(2, 5, 6);
        if constexpr (CB > 1) _tile_dpbf16ps(3, 5, 7);
      }
    }
  }
  _tile_stored(0, o, ob);
  if constexpr (CB > 1) _tile_stored(1, o + 16, ob);
  if constexpr (RB > 1) _tile_stored(2, o + 16 * ld_o, ob);
  if constexpr (RB > 1 && CB > 1) _tile_stored(3, o + 16 * ld_o + 16, ob);
}

// The PV products of one softmax step (n blocks from `blocks`, the last with
// last_valid keys) on configured tiles: o = o * rescale + P . V. The rescale
// of the tile rows is a pass of its own (tiles cannot scale), skipped for
// rows whose factor is exactly 1 (their running max did not move: most rows,
// most steps). Key blocks of 16 keys (8 pairs, less than a tile row) run the
// AVX-512 BF16 product block by block.
inline void pv_step_amx(const QueryBlockJob& job, float* o, const float* rescale, const float* ones,
                        const uint16_t* p, int ld_p, const int32_t* blocks, int n, int last_valid) {
  const int d = job.head_dim, kb = job.k_block, rows = job.rows;
  const auto* v = static_cast<const uint16_t*>(job.v);
  const int64_t block_elems = static_cast<int64_t>(kb) * d;
  const int last_pairs = (last_valid + 1) / 2, last_tile_pairs = last_pairs / 16 * 16;
  if (kb % 32 != 0) {
    for (int j = 0; j < n; ++j)
      pv_accumulate_bf16(o, d, rows, j == 0 ? rescale : ones, p + j * kb, ld_p, j + 1 < n ? kb / 2 : last_pairs,
                         v + blocks[j] * block_elems, d);
    return;
  }
  const int full = rows / 16 * 16;
  for (int r = 0; r < full; ++r) {
    if (rescale[r] == 1.0f) continue;
    const typename Ops::V a = Ops::set1(rescale[r]);
    for (int c = 0; c < d; c += Ops::W) Ops::store(o + r * d + c, Ops::mul(Ops::load(o + r * d + c), a));
  }
  for (int r0 = 0; r0 < full; r0 += 32) {
    const bool two_rows = full - r0 >= 32;
    for (int c0 = 0; c0 < d; c0 += 32) {
      const bool two_cols = d - c0 >= 32;
      float* ob = o + r0 * d + c0;
      const uint16_t* pr = p + r0 * ld_p;
      const uint16_t* vc = v + c0 * 2;
      if (two_rows && two_cols) pv_amx_step_block<2, 2>(ob, d, pr, ld_p, vc, blocks, n, kb, last_tile_pairs, d);
      else if (two_rows) pv_amx_step_block<2, 1>(ob, d, pr, ld_p, vc, blocks, n, kb, last_tile_pairs, d);
      else if (two_cols) pv_amx_step_block<1, 2>(ob, d, pr, ld_p, vc, blocks, n, kb, last_tile_pairs, d);
      else pv_amx_step_block<1, 1>(ob, d, pr, ld_p, vc, blocks, n, kb, last_tile_pairs, d);
    }
  }
  // The last block's pairs after its last full group of 16, already rescaled.
  if (last_tile_pairs < last_pairs)
    pv_accumulate_bf16(o, d, full, ones, p + (n - 1) * kb + last_tile_pairs * 2, ld_p, last_pairs - last_tile_pairs,
                       v + blocks[n - 1] * block_elems + static_cast<int64_t>(last_tile_pairs) * d * 2, d);
  for (int j = 0; full < rows && j < n; ++j)
    pv_accumulate_bf16(o + full * d, d, rows - full, (j == 0 ? rescale : ones) + full, p + full * ld_p + j * kb, ld_p,
                       j + 1 < n ? kb / 2 : last_pairs, v + blocks[j] * block_elems, d);
}

// The bf16 flash path with the products on tiles (configured by
// attend_query_block_amx); the logit scale is folded into the softmax, and
// PV runs once per softmax step (pv_step: the flash loop then never calls
// the per-block PV the base names).
struct AmxPath : Bf16PathWith<&qk_scores_amx_configured, &pv_accumulate_bf16, true> {
  static void pv_step(const QueryBlockJob& job, float* o, const float* rescale, const float* ones, const uint16_t* p,
                      int ld, const int32_t* blocks, int n, int last_valid) {
    pv_step_amx(job, o, rescale, ones, p, ld, blocks, n, last_valid);
  }
};

inline void attend_query_block_amx(const QueryBlockJob& job) {
  configure_tiles();
  attend_query_block_with<AmxPath>(job);
  _tile_release();
}

// avx512's fp32 table with the bf16 path on tiles.
inline KernelTable with_amx_kernels(KernelTable base) {
  base.isa = Isa::amx;
  base.qk_scores_bf16 = &qk_scores_amx;
  base.attend_query_block_bf16 = &attend_query_block_amx;
  // The fastest of the tiles timed on the 16-core Xeon (N 16K and 64K, with
  // line-aligned buffers; bench/results/README.md, "Aligned buffers").
  base.tiles_bf16 = {64, 512};
  // The same long softmax steps for the block-sparse path's 64-key blocks.
  base.bf16_step_keys = 512;
  return base;
}
