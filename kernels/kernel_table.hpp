#pragma once
// The kernel contract: one (head, query block) job of flash attention and the
// table of micro-kernels, one function pointer per kernel family, one table
// per ISA (filled by kernels/generic/kernel_table-inl.hpp in each ISA's
// translation unit, by field name). dispatch/ picks the table once at start
// (dispatch.cpp); the engine (kernels/engine/) calls through it. Internal header.
#include <cstdint>

#include "kernels/causal_mask.hpp"
#include "spattn/attention.hpp"
#include "spattn/isa.hpp"
#include "spattn/shape.hpp"

namespace spattn::detail {

// One (head, query block) work item of flash-style attention. On the fp32
// path (attend_query_block) q, K and V are fp32: K packed (pack_key_blocks),
// V as strided rows. On the bf16 path (attend_query_block_bf16) q is bf16
// rows, K and V bf16 in pairs (kernels/generic/bf16_products-inl.hpp).
struct QueryBlockJob {
  const void* q = nullptr;  // first query row of the block
  int64_t q_stride = 0;     // in elements
  int rows = 0;                     // query rows in this block (<= q_block)
  const void* k_packed = nullptr;  // this kv head's packed keys
  const void* v = nullptr;         // this kv head's V: fp32 row t at v + t * v_stride, or bf16 pairs
  int64_t v_stride = 0;
  int64_t kv_len = 0;
  int head_dim = 0;
  int k_block = 0;
  float scale = 1.0f;
  const int32_t* key_blocks = nullptr;  // key blocks to visit, ascending
  int64_t n_key_blocks = 0;
  void* out = nullptr;  // first output row, of out_dtype (f32 or bf16)
  int64_t out_stride = 0;  // in elements
  DType out_dtype = DType::fp32;
  float* lse = nullptr;      // optional: per-row log-sum-exp (-inf for an empty row)
  // Causal: row r sits at position q_pos + r and sees the keys at positions
  // <= its own; key t of the plan sits at key_pos[t] (ascending; nullptr: at
  // t). Blocks wholly in the future are the caller's to leave out; this
  // masks the keys of the blocks it is given that a row must not see.
  bool causal = false;
  int64_t q_pos = 0;
  const int32_t* key_pos = nullptr;
  // Or (cached steps over scattered rows) row r sits at q_rows[r], ascending,
  // q_rows[0] == q_pos; nullptr: the rows are consecutive.
  const int32_t* q_rows = nullptr;
  // Optional, for SparseD's record step fused into the flash pass: per row r
  // and visited block i, block_max[r * n_key_blocks + i] = the row's running
  // max after block i and block_sum[...] = sum over the block of
  // exp(logit - that max). The block's softmax mass of row r is then
  // exp(block_max - lse) * block_sum, exactly, with no second QK pass.
  float* block_max = nullptr;
  float* block_sum = nullptr;
  // Key blocks per softmax step: up to `group` consecutive entries of
  // key_blocks are scored into one row of group x k_block logits and go
  // through one online-softmax update (one max, one rescale of the output),
  // then one PV product each. Short blocks (a mask's 64 keys) then cost what
  // long ones do. Block sums are per block, relative to the step's max.
  int group = 1;
  float* scratch = nullptr;  // scratch_floats(rows, group * k_block, head_dim) floats
};

// Logits, output accumulator, row statistics (max, sum, rescale, ones),
// (bf16 path) rounded P, and a contiguous copy of strided query rows;
// step_keys: keys per softmax step (group x k_block).
inline int64_t scratch_floats(int64_t rows, int64_t step_keys, int64_t head_dim) {
  return rows * step_keys + rows * head_dim + 4 * rows + (rows * step_keys + 1) / 2 + rows * head_dim;
}
// Packed keys: [block][head_dim][k_block], transposed, zero-padded past kv_len.
inline int64_t packed_key_floats(int64_t kv_len, int64_t k_block, int64_t head_dim) {
  return (kv_len + k_block - 1) / k_block * k_block * head_dim;
}

struct KernelTable {
  Isa isa;
  int vector_floats;  // SIMD width in floats

  // s[r][j] = scale * dot(q row r, key j) for r < rows, j < cols; keys come
  // transposed (kt[c * ld_kt + j]); cols is a multiple of vector_floats.
  void (*qk_scores)(const float* q, int64_t q_stride, int rows, const float* kt, int ld_kt,
                    int cols, int head_dim, float scale, float* s, int ld_s);
  // Per row: new running max, rescale = exp(old max - new max), s -> exp(s - new max)
  // over cols entries, row_sum = row_sum * rescale + sum. A row that has seen
  // only -inf keeps max -inf, its probabilities 0.
  void (*online_softmax_update)(float* s, int ld_s, int rows, int cols, float* row_max,
                                float* row_sum, float* rescale);
  // o[r] = o[r] * rescale[r] + sum_j p[r][j] * v[j] over head_dim columns.
  void (*pv_accumulate)(float* o, int ld_o, int rows, const float* rescale, const float* p,
                        int ld_p, int cols, const float* v, int64_t v_stride, int head_dim);
  // x[i] = exp(x[i]); the same exp the softmax uses.
  void (*exp_inplace)(float* x, int64_t n);
  void (*pack_key_blocks)(const float* k, int64_t k_stride, int64_t kv_len, int head_dim,
                          int k_block, float* packed);
  void (*attend_query_block)(const QueryBlockJob& job);

  // The bf16 path, on ISAs with bf16 dot products (nullptr elsewhere: there
  // bf16 and f16 operands are widened to fp32 when packed). qk_scores with q
  // in bf16 rows and keys in bf16 pairs (ld_kt keys per pair row).
  void (*qk_scores_bf16)(const uint16_t* q, int64_t q_stride, int rows, const uint16_t* kt, int ld_kt, int cols,
                         int head_dim, float scale, float* s, int ld_s) = nullptr;
  void (*attend_query_block_bf16)(const QueryBlockJob& job) = nullptr;
  bool has_bf16() const { return attend_query_block_bf16 != nullptr; }

  // The dense paths' tiles this ISA runs fastest (preferred_tiles): for the
  // fp32 kernels (fp32 and widened fp16 K/V; each ISA's Tiles::dense) and
  // for the bf16 path.
  TileSizes tiles_fp32{64, 64};
  TileSizes tiles_bf16{64, 64};
  // Keys per softmax step the fp32 and bf16 paths reach by grouping shorter
  // key blocks (QueryBlockJob::group); 0: no grouping.
  int fp32_step_keys = 0;
  int bf16_step_keys = 0;
};

// The table of the active ISA (chosen once; see isa.hpp).
const KernelTable& active_kernels();
// The table of a given ISA, or nullptr if this build or CPU lacks it.
const KernelTable* kernel_table_for(Isa isa);

// Defined by each ISA translation unit in kernels/isa/.
const KernelTable& kernel_table_scalar();
const KernelTable& kernel_table_avx2();
const KernelTable& kernel_table_avx512();
const KernelTable& kernel_table_avx512_bf16();
const KernelTable& kernel_table_amx();
const KernelTable& kernel_table_neon_bf16();
const KernelTable& kernel_table_neon();

}  // namespace spattn::detail
