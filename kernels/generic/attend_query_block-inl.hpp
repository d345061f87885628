// attend_query_block: the flash-attention loop for one (head, query block)
// over a list of key blocks, built from the micro-kernels qk_scores,
// online_softmax_update and pv_accumulate. Included inside a per-ISA
// namespace that defines Ops and Tiles.

inline void prefetch_bytes(const void* p, int64_t bytes) {
  for (int64_t i = 0; i < bytes; i += 64) __builtin_prefetch(static_cast<const char*>(p) + i);
}

// Query rows a stride apart (heads interleaved, as [tokens][heads][d] holds
// them) are copied to contiguous rows at buf first: with a power-of-two
// stride every row of a tile maps to the same few L1 sets, and the products
// reread them from L2 (KVPlan copies strided values for the same reason).
inline void stage_queries(QueryBlockJob& job, void* buf, int elem_bytes) {
  const int64_t row_bytes = static_cast<int64_t>(job.head_dim) * elem_bytes;
  if (job.q_stride == job.head_dim) return;
  for (int r = 0; r < job.rows; ++r)
    __builtin_memcpy(static_cast<char*>(buf) + r * row_bytes,
                     static_cast<const char*>(job.q) + r * job.q_stride * elem_bytes, static_cast<size_t>(row_bytes));
  job.q = buf;
  job.q_stride = job.head_dim;
}

// The fp32 path: q, packed keys and values in fp32.
struct F32Path {
  static constexpr int kQBytes = 4;
  static void prefetch(const QueryBlockJob& job, int32_t block) {
    const int64_t block_floats = static_cast<int64_t>(job.k_block) * job.head_dim;
    prefetch_bytes(static_cast<const float*>(job.k_packed) + block * block_floats, block_floats * 4);
    const int64_t t0 = static_cast<int64_t>(block) * job.k_block;
    const int64_t t1 = t0 + job.k_block < job.kv_len ? t0 + job.k_block : job.kv_len;
    for (int64_t t = t0; t < t1; ++t) prefetch_bytes(static_cast<const float*>(job.v) + t * job.v_stride, job.head_dim * 4);
  }
  static void qk(const QueryBlockJob& job, int32_t b, int cols, float* s, int ld) {
    const int64_t block_floats = static_cast<int64_t>(job.k_block) * job.head_dim;
    qk_scores(static_cast<const float*>(job.q), job.q_stride, job.rows,
              static_cast<const float*>(job.k_packed) + b * block_floats, job.k_block, cols, job.head_dim,
              job.scale, s, ld);
  }
  static void softmax(const QueryBlockJob& job, float* s, int ld, int valid, float* row_max, float* row_sum,
                      float* rescale, uint16_t*) {
    online_softmax_update(s, ld, job.rows, valid, row_max, row_sum, rescale);
  }
  static void pv(const QueryBlockJob& job, float* o, const float* rescale, const float* s, int ld, int valid,
                 int32_t b, const uint16_t*) {
    const int64_t t0 = static_cast<int64_t>(b) * job.k_block;
    pv_accumulate(o, job.head_dim, job.rows, rescale, s, ld, valid,
                  static_cast<const float*>(job.v) + t0 * job.v_stride, job.v_stride, job.head_dim);
  }
};

// Per row: the running max after the step that holds block i and the sum of
// the block's probabilities relative to it (its valid columns at s, rows ld
// apart; see QueryBlockJob).
inline void record_block_sums(const QueryBlockJob& job, const float* s, int ld, int rows, int valid,
                              const float* row_max, int64_t i) {
  constexpr int W = Ops::W;
  for (int r = 0; r < rows; ++r) {
    const float* row = s + static_cast<int64_t>(r) * ld;
    typename Ops::V acc = Ops::zero();
    int j = 0;
    for (; j + W <= valid; j += W) acc = Ops::add(acc, Ops::load(row + j));
    float t = Ops::hsum(acc);
    for (; j < valid; ++j) t += row[j];
    job.block_sum[r * job.n_key_blocks + i] = t;
    job.block_max[r * job.n_key_blocks + i] = row_max[r];
  }
}

// Stores the normalized output rows (fp32 or bf16) and the LSE.
inline void finish_rows(const QueryBlockJob& job, float* o, const float* row_max, const float* row_sum) {
  constexpr int W = Ops::W;
  constexpr float kNegInf = -__builtin_inff();
  const int d = job.head_dim;
  for (int r = 0; r < job.rows; ++r) {
    const float l = row_sum[r];
    // A NaN sum (non-finite inputs) propagates; an empty row gives zeros.
    const float inv = l > 0.0f ? 1.0f / l : (l == 0.0f ? 0.0f : l);
    float* src = o + static_cast<int64_t>(r) * d;
    const typename Ops::V iv = Ops::set1(inv);
    if (job.out_dtype == DType::fp32) {
      float* dst = static_cast<float*>(job.out) + r * job.out_stride;
      for (int c = 0; c < d; c += W) Ops::store(dst + c, Ops::mul(Ops::load(src + c), iv));
    } else {
      for (int c = 0; c < d; c += W) Ops::store(src + c, Ops::mul(Ops::load(src + c), iv));
      uint16_t* dst = static_cast<uint16_t*>(job.out) + r * job.out_stride;
      for (int c = 0; c < d; ++c) dst[c] = bf16_bits(src[c]);
    }
    if (job.lse != nullptr) job.lse[r] = l > 0.0f ? row_max[r] + std::log(l) : (l == 0.0f ? kNegInf : l);
  }
}

// The flash loop, over the products of a Path (F32Path, or Bf16Path where the
// ISA has bf16 dot products). Each step scores up to job.group key blocks
// into one row of logits (ld = group x k_block; only the list's last block
// can be short, so the valid keys of a step are contiguous), updates the
// softmax once, and adds each block's PV (the first with the step's rescale,
// the others with 1), or the whole step's where the Path has a pv_step.
template <class Path>
inline void attend_query_block_with(const QueryBlockJob& job_in) {
  constexpr int W = Ops::W;
  constexpr float kNegInf = -__builtin_inff();
  QueryBlockJob job = job_in;
  const int rows = job.rows, d = job.head_dim, kb = job.k_block;
  const int group = job.group < 1 ? 1 : job.group;
  const int ld = group * kb;
  float* s = job.scratch;
  float* o = s + static_cast<int64_t>(rows) * ld;
  float* row_max = o + static_cast<int64_t>(rows) * d;
  float* row_sum = row_max + rows;
  float* rescale = row_sum + rows;
  float* ones = rescale + rows;
  // The rounded probabilities of the bf16 path: rows x ld bf16.
  uint16_t* p16 = reinterpret_cast<uint16_t*>(ones + rows);
  stage_queries(job, ones + rows + (static_cast<int64_t>(rows) * ld + 1) / 2, Path::kQBytes);
  for (int r = 0; r < rows; ++r) {
    row_max[r] = kNegInf;
    row_sum[r] = 0.0f;
    ones[r] = 1.0f;
  }
  for (int64_t i = 0; i < static_cast<int64_t>(rows) * d; ++i) o[i] = 0.0f;

  for (int64_t i0 = 0; i0 < job.n_key_blocks; i0 += group) {
    const int n = static_cast<int>(job.n_key_blocks - i0 < group ? job.n_key_blocks - i0 : group);
    int step_valid = 0, last_valid = 0;
    for (int j = 0; j < n; ++j) {
      const int32_t b = job.key_blocks[i0 + j];
      if (i0 + j + 1 < job.n_key_blocks) Path::prefetch(job, job.key_blocks[i0 + j + 1]);
      const int64_t t0 = static_cast<int64_t>(b) * kb;
      last_valid = static_cast<int>(job.kv_len - t0 < kb ? job.kv_len - t0 : kb);
      Path::qk(job, b, (last_valid + W - 1) / W * W, s + j * kb, ld);
      if (job.causal) detail::mask_future_keys(s + j * kb, ld, rows, job.q_pos, t0, last_valid, job.key_pos, job.q_rows);
      step_valid = j * kb + last_valid;
    }
    Path::softmax(job, s, ld, step_valid, row_max, row_sum, rescale, p16);
    for (int j = 0; j < n && job.block_sum != nullptr; ++j)
      record_block_sums(job, s + j * kb, ld, rows, j + 1 < n ? kb : last_valid, row_max, i0 + j);
    if constexpr (requires { &Path::pv_step; }) {  // a whole step's PV at once (AMX)
      Path::pv_step(job, o, rescale, ones, p16, ld, job.key_blocks + i0, n, last_valid);
    } else {
      for (int j = 0; j < n; ++j)
        Path::pv(job, o, j == 0 ? rescale : ones, s + j * kb, ld, j + 1 < n ? kb : last_valid,
                 job.key_blocks[i0 + j], p16 + j * kb);
    }
  }
  finish_rows(job, o, row_max, row_sum);
}

inline void attend_query_block(const QueryBlockJob& job) { attend_query_block_with<F32Path>(job); }
