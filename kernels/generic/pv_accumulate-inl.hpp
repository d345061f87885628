// pv_accumulate: O = O * rescale + P x V for one tile, register blocked as MR
// output rows x NV head_dim vectors. Included inside a per-ISA namespace that
// defines Ops and Tiles.

template <int MR, int NV>
inline void pv_accumulate_tile(float* o, int ld_o, const float* rescale, const float* p, int ld_p,
                               int cols, const float* v, int64_t v_stride) {
  using V = typename Ops::V;
  constexpr int W = Ops::W;
  V acc[MR][NV];
  for (int r = 0; r < MR; ++r) {
    const V a = Ops::set1(rescale[r]);
    for (int c = 0; c < NV; ++c) acc[r][c] = Ops::mul(Ops::load(o + r * ld_o + c * W), a);
  }
  for (int j = 0; j < cols; ++j) {
    V vv[NV];
    for (int c = 0; c < NV; ++c) vv[c] = Ops::load(v + j * v_stride + c * W);
    for (int r = 0; r < MR; ++r) {
      const V pb = Ops::set1(p[r * ld_p + j]);
      for (int c = 0; c < NV; ++c) acc[r][c] = Ops::fma(pb, vv[c], acc[r][c]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NV; ++c) Ops::store(o + r * ld_o + c * W, acc[r][c]);
}

inline void pv_accumulate(float* o, int ld_o, int rows, const float* rescale, const float* p,
                          int ld_p, int cols, const float* v, int64_t v_stride, int head_dim) {
  constexpr int W = Ops::W;
  for_each_tile<Tiles::pv_mr, Tiles::pv_nv>(rows, head_dim / W, [&]<int MR, int NV>(int r0, int c0) {
    pv_accumulate_tile<MR, NV>(o + r0 * ld_o + c0 * W, ld_o, rescale + r0, p + r0 * ld_p, ld_p, cols, v + c0 * W,
                               v_stride);
  });
}
