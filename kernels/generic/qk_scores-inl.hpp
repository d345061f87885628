// qk_scores: a query tile against a packed (transposed) key block, register
// blocked as MR query rows x NV key vectors. Included inside a per-ISA
// namespace that defines Ops (vector operations) and Tiles (tile shape).

template <int MR, int NV>
inline void qk_scores_tile(const float* q, int64_t q_stride, const float* kt, int ld_kt,
                           int head_dim, float scale, float* s, int ld_s) {
  using V = typename Ops::V;
  constexpr int W = Ops::W;
  V acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = Ops::zero();
  for (int c = 0; c < head_dim; ++c) {
    V kv[NV];
    for (int v = 0; v < NV; ++v) kv[v] = Ops::load(kt + static_cast<int64_t>(c) * ld_kt + v * W);
    for (int r = 0; r < MR; ++r) {
      const V qb = Ops::set1(q[r * q_stride + c]);
      for (int v = 0; v < NV; ++v) acc[r][v] = Ops::fma(qb, kv[v], acc[r][v]);
    }
  }
  const V sv = Ops::set1(scale);
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) Ops::store(s + r * ld_s + v * W, Ops::mul(acc[r][v], sv));
}

inline void qk_scores(const float* q, int64_t q_stride, int rows, const float* kt, int ld_kt,
                      int cols, int head_dim, float scale, float* s, int ld_s) {
  constexpr int W = Ops::W;
  for_each_tile<Tiles::qk_mr, Tiles::qk_nv>(rows, cols / W, [&]<int MR, int NV>(int r0, int v0) {
    qk_scores_tile<MR, NV>(q + r0 * q_stride, q_stride, kt + v0 * W, ld_kt, head_dim, scale, s + r0 * ld_s + v0 * W,
                           ld_s);
  });
}
