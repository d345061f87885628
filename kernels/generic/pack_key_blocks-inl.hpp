// pack_key_blocks: K of one kv head into the layout qk_scores reads, per
// block of k_block keys [head_dim][k_block] (transposed), zero-padded past
// kv_len. Included inside a per-ISA namespace that defines Ops and Tiles.

inline void pack_key_blocks(const float* k, int64_t k_stride, int64_t kv_len, int head_dim,
                            int k_block, float* packed) {
  const int64_t blocks = (kv_len + k_block - 1) / k_block;
  for (int64_t b = 0; b < blocks; ++b) {
    float* dst = packed + b * k_block * head_dim;
    for (int j = 0; j < k_block; ++j) {
      const int64_t t = b * k_block + j;
      if (t < kv_len) {
        const float* src = k + t * k_stride;
        for (int c = 0; c < head_dim; ++c) dst[c * k_block + j] = src[c];
      } else {
        for (int c = 0; c < head_dim; ++c) dst[c * k_block + j] = 0.0f;
      }
    }
  }
}
