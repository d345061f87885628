// attend_query_block: the flash-attention loop for one (head, query block)
// over a list of key blocks, built from the micro-kernels qk_scores,
// online_softmax_update and pv_accumulate. Included inside a per-ISA
// namespace that defines Ops and Tiles.

inline void prefetch_key_block(const QueryBlockJob& job, int32_t block) {
  constexpr int kLine = 64 / sizeof(float);
  const int64_t block_floats = static_cast<int64_t>(job.k_block) * job.head_dim;
  const float* kp = job.k_packed + block * block_floats;
  for (int64_t i = 0; i < block_floats; i += kLine) __builtin_prefetch(kp + i);
  const int64_t t0 = static_cast<int64_t>(block) * job.k_block;
  const int64_t t1 = t0 + job.k_block < job.kv_len ? t0 + job.k_block : job.kv_len;
  for (int64_t t = t0; t < t1; ++t)
    for (int c = 0; c < job.head_dim; c += kLine) __builtin_prefetch(job.v + t * job.v_stride + c);
}

// Per row: the running max after block i and the sum of the block's
// probabilities relative to it (valid columns only; see QueryBlockJob).
inline void record_block_sums(const QueryBlockJob& job, const float* s, int rows, int valid, const float* row_max,
                              int64_t i) {
  constexpr int W = Ops::W;
  for (int r = 0; r < rows; ++r) {
    const float* row = s + static_cast<int64_t>(r) * job.k_block;
    typename Ops::V acc = Ops::zero();
    int j = 0;
    for (; j + W <= valid; j += W) acc = Ops::add(acc, Ops::load(row + j));
    float t = Ops::hsum(acc);
    for (; j < valid; ++j) t += row[j];
    job.block_sum[r * job.n_key_blocks + i] = t;
    job.block_max[r * job.n_key_blocks + i] = row_max[r];
  }
}

inline void attend_query_block(const QueryBlockJob& job) {
  constexpr int W = Ops::W;
  constexpr float kNegInf = -__builtin_inff();
  const int rows = job.rows, d = job.head_dim, kb = job.k_block;
  float* s = job.scratch;
  float* o = s + static_cast<int64_t>(rows) * kb;
  float* row_max = o + static_cast<int64_t>(rows) * d;
  float* row_sum = row_max + rows;
  float* rescale = row_sum + rows;
  for (int r = 0; r < rows; ++r) {
    row_max[r] = kNegInf;
    row_sum[r] = 0.0f;
  }
  for (int64_t i = 0; i < static_cast<int64_t>(rows) * d; ++i) o[i] = 0.0f;

  const int64_t block_floats = static_cast<int64_t>(kb) * d;
  for (int64_t i = 0; i < job.n_key_blocks; ++i) {
    const int32_t b = job.key_blocks[i];
    if (i + 1 < job.n_key_blocks) prefetch_key_block(job, job.key_blocks[i + 1]);
    const int64_t t0 = static_cast<int64_t>(b) * kb;
    const int valid = static_cast<int>(job.kv_len - t0 < kb ? job.kv_len - t0 : kb);
    const int cols = (valid + W - 1) / W * W;
    qk_scores(job.q, job.q_stride, rows, job.k_packed + b * block_floats, kb, cols, d, job.scale, s,
              kb);
    online_softmax_update(s, kb, rows, valid, row_max, row_sum, rescale);
    if (job.block_sum != nullptr) record_block_sums(job, s, rows, valid, row_max, i);
    pv_accumulate(o, d, rows, rescale, s, kb, valid, job.v + t0 * job.v_stride, job.v_stride, d);
  }

  for (int r = 0; r < rows; ++r) {
    const float l = row_sum[r];
    // A NaN sum (non-finite inputs) propagates; an empty row gives zeros.
    const float inv = l > 0.0f ? 1.0f / l : (l == 0.0f ? 0.0f : l);
    float* dst = job.out + r * job.out_stride;
    const float* src = o + static_cast<int64_t>(r) * d;
    const typename Ops::V iv = Ops::set1(inv);
    for (int c = 0; c < d; c += W) Ops::store(dst + c, Ops::mul(Ops::load(src + c), iv));
    if (job.lse != nullptr) job.lse[r] = l > 0.0f ? row_max[r] + std::log(l) : (l == 0.0f ? kNegInf : l);
  }
}
