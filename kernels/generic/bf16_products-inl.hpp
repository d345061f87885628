// The bf16 products of flash attention on ISAs with a bf16 pair dot product
// (acc[i] += a[2i] * b[2i] + a[2i+1] * b[2i+1], fp32 accumulation: AVX-512
// BF16's vdpbf16ps, Arm's BFDOT). Operands come in pairs along the reduction
// dimension (kernels/engine/kv_plan.hpp):
//   keys   [block][head_dim / 2][k_block][2]  (reduction: head_dim)
//   values [block][k_block / 2][head_dim][2]  (reduction: keys)
// the layout AMX-BF16 tiles also read. Included inside a per-ISA namespace
// that defines Ops, Tiles and Bf16Ops.

// s[r][j] = scale * q_r . k_j for MR query rows and NV vectors of keys.
template <int MR, int NV>
inline void qk_scores_bf16_tile(const uint16_t* q, int64_t q_stride, const uint16_t* kt, int ld_kt, int head_dim,
                                float scale, float* s, int ld_s) {
  using V = typename Bf16Ops::V;
  constexpr int W = Bf16Ops::W;
  V acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = Bf16Ops::zero();
  for (int c2 = 0; c2 < head_dim / 2; ++c2) {
    typename Bf16Ops::P kv[NV];
    for (int v = 0; v < NV; ++v) kv[v] = Bf16Ops::load_pairs(kt + (static_cast<int64_t>(c2) * ld_kt + v * W) * 2);
    for (int r = 0; r < MR; ++r) {
      const typename Bf16Ops::P qb = Bf16Ops::broadcast_pair(q + r * q_stride + 2 * c2);
      for (int v = 0; v < NV; ++v) acc[r][v] = Bf16Ops::dot2(acc[r][v], qb, kv[v]);
    }
  }
  const V sv = Bf16Ops::set1(scale);
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) Bf16Ops::store(s + r * ld_s + v * W, Bf16Ops::mul(acc[r][v], sv));
}

inline void qk_scores_bf16(const uint16_t* q, int64_t q_stride, int rows, const uint16_t* kt, int ld_kt, int cols,
                           int head_dim, float scale, float* s, int ld_s) {
  constexpr int W = Bf16Ops::W;
  for_each_tile<Tiles::qk_mr, Tiles::qk_nv>(rows, cols / W, [&]<int MR, int NV>(int r0, int v0) {
    qk_scores_bf16_tile<MR, NV>(q + r0 * q_stride, q_stride, kt + v0 * W * 2, ld_kt, head_dim, scale,
                                s + r0 * ld_s + v0 * W, ld_s);
  });
}

// o[r] = o[r] * rescale[r] + sum_j p[r][j] * v_j, p in bf16 pairs (ld_p
// elements per row), over pairs key pairs.
template <int MR, int NV>
inline void pv_accumulate_bf16_tile(float* o, int ld_o, const float* rescale, const uint16_t* p, int ld_p,
                                    int pairs, const uint16_t* v, int head_dim) {
  using V = typename Bf16Ops::V;
  constexpr int W = Bf16Ops::W;
  V acc[MR][NV];
  for (int r = 0; r < MR; ++r) {
    const V a = Bf16Ops::set1(rescale[r]);
    for (int c = 0; c < NV; ++c) acc[r][c] = Bf16Ops::mul(Bf16Ops::load(o + r * ld_o + c * W), a);
  }
  for (int j2 = 0; j2 < pairs; ++j2) {
    typename Bf16Ops::P vv[NV];
    for (int c = 0; c < NV; ++c) vv[c] = Bf16Ops::load_pairs(v + (static_cast<int64_t>(j2) * head_dim + c * W) * 2);
    for (int r = 0; r < MR; ++r) {
      const typename Bf16Ops::P pb = Bf16Ops::broadcast_pair(p + r * ld_p + 2 * j2);
      for (int c = 0; c < NV; ++c) acc[r][c] = Bf16Ops::dot2(acc[r][c], pb, vv[c]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NV; ++c) Bf16Ops::store(o + r * ld_o + c * W, acc[r][c]);
}

inline void pv_accumulate_bf16(float* o, int ld_o, int rows, const float* rescale, const uint16_t* p, int ld_p,
                               int pairs, const uint16_t* v, int head_dim) {
  constexpr int W = Bf16Ops::W;
  for_each_tile<Tiles::pv_mr, Tiles::pv_nv>(rows, head_dim / W, [&]<int MR, int NV>(int r0, int c0) {
    pv_accumulate_bf16_tile<MR, NV>(o + r0 * ld_o + c0 * W, ld_o, rescale + r0, p + r0 * ld_p, ld_p, pairs,
                                    v + c0 * W * 2, head_dim);
  });
}

// online_softmax_rows' sink on the bf16 path: the probabilities rounded to
// bf16 straight into the P rows the PV product reads (no fp32 copy and no
// second pass over the tile), and kept in fp32 only when block sums are
// recorded from them.
struct ProbsToBf16 {
  uint16_t* p;
  int ld_p;
  bool keep_f32;
  static constexpr float kExpArg = Bf16Ops::kExpArg;  // see online_softmax_rows
  static typename Ops::V exp(typename Ops::V x) { return Bf16Ops::exp_p(x); }
  void put(int r, float* row, int j, typename Ops::V v) const {
    if (keep_f32) Ops::store(row + j, v);
    Bf16Ops::store_rounded(p + static_cast<int64_t>(r) * ld_p + j, v);
  }
  void put_tail(int r, float* row, int j0, const float* pad, int n) const {
    for (int j = 0; j < n; ++j) {
      if (keep_f32) row[j0 + j] = pad[j];
      p[static_cast<int64_t>(r) * ld_p + j0 + j] = bf16_bits(pad[j]);
    }
  }
};

// The bf16 path of attend_query_block: q, keys and values in bf16, logits and
// softmax in fp32, P rounded to bf16 for the PV product (as FlashAttention
// does; the row sums use the unrounded P). The two products are parameters:
// AMX runs the same path with its tile products. kScaleInSoftmax: QkScores
// leaves the logits unscaled (a scale of 1) and the softmax applies the
// scale (AMX tiles cannot scale; this saves a pass over the logits).
template <auto QkScores, auto PvAccumulate, bool kScaleInSoftmax = false>
struct Bf16PathWith {
  static constexpr int kQBytes = 2;
  static void prefetch(const QueryBlockJob& job, int32_t b) {
    const int64_t block_elems = static_cast<int64_t>(job.k_block) * job.head_dim;
    prefetch_bytes(static_cast<const uint16_t*>(job.k_packed) + b * block_elems, block_elems * 2);
    prefetch_bytes(static_cast<const uint16_t*>(job.v) + b * block_elems, block_elems * 2);
  }
  static void qk(const QueryBlockJob& job, int32_t b, int cols, float* s, int ld) {
    const int64_t block_elems = static_cast<int64_t>(job.k_block) * job.head_dim;
    QkScores(static_cast<const uint16_t*>(job.q), job.q_stride, job.rows,
             static_cast<const uint16_t*>(job.k_packed) + b * block_elems, job.k_block, cols, job.head_dim,
             kScaleInSoftmax ? 1.0f : job.scale, s, ld);
  }
  static void softmax(const QueryBlockJob& job, float* s, int ld, int valid, float* row_max, float* row_sum,
                      float* rescale, uint16_t* p) {
    online_softmax_rows(s, ld, job.rows, valid, row_max, row_sum, rescale, kScaleInSoftmax ? job.scale : 1.0f,
                        ProbsToBf16{p, ld, job.block_sum != nullptr});
    if (valid % 2 != 0)  // pairs the last key with a zero pad
      for (int r = 0; r < job.rows; ++r) p[static_cast<int64_t>(r) * ld + valid] = 0;
  }
  // p: this block's first probability of row 0 (rows ld apart).
  static void pv(const QueryBlockJob& job, float* o, const float* rescale, const float*, int ld, int valid, int32_t b,
                 const uint16_t* p) {
    const int pairs = (valid + 1) / 2;
    const int64_t block_elems = static_cast<int64_t>(job.k_block) * job.head_dim;
    PvAccumulate(o, job.head_dim, job.rows, rescale, p, ld, pairs, static_cast<const uint16_t*>(job.v) + b * block_elems,
                 job.head_dim);
  }
};
using Bf16Path = Bf16PathWith<&qk_scores_bf16, &pv_accumulate_bf16>;

inline void attend_query_block_bf16(const QueryBlockJob& job) { attend_query_block_with<Bf16Path>(job); }
