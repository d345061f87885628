#pragma once
// KVPlan: the packed operands of one attention call, built once and read by
// every work item (as oneDNN's ukernel plans are), in one of two formats:
//   fp32        each kv head's keys transposed per key block and zero-padded
//               (the layout qk_scores reads); values as contiguous fp32
//               rows (the caller's if they are, else a copy: also widened
//               or NUMA-placed where needed);
//   bf16_pairs  keys and values in bf16 pairs along the reduction dimension
//               (kernels/generic/bf16_products-inl.hpp), zero-padded; chosen
//               for bf16 K/V when the ISA has bf16 dot products.
// bf16 and f16 K/V on other ISAs (and f16 everywhere) are widened to fp32
// here, exactly. Each head's data is first touched on the node of its
// readers. A session that runs several passes over the same K/V (SparseD's
// record step: flash with LSE, then block masses) builds one plan. A
// KVCache (spattn/kv_cache.hpp) is a plan built empty with room for its
// capacity, kept between calls and written in place (write_tokens); it
// always holds its own copy of the values.
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "kernels/numa_placement.hpp"
#include "spattn/shape.hpp"

namespace spattn::detail {

enum class PackFormat { fp32, bf16_pairs };

class KVPlan {
 public:
  // Packs k in blocks of k_block keys; v may be an empty view (data nullptr)
  // for QK-only passes. Threads as the work loop that will read the plan.
  KVPlan(const AttentionShape& shape, InputView k, InputView v, int64_t k_block, int threads);
  // A KV cache's plan: room for `capacity` tokens of K and V of kv_dtype's
  // format, all zero, kv_len 0 (spattn::KVCache owns one). write_tokens fills
  // it and set_kv_len says how many tokens the passes read.
  KVPlan(int64_t kv_heads, int64_t capacity, int64_t head_dim, int64_t k_block, DType kv_dtype, int threads);
  // Rows i of k and v (any dtype; kv_heads x n x head_dim) into positions
  // positions[i], or first + i when positions is empty (< capacity()).
  // Only the keys and values of those positions are written: O(n d).
  void write_tokens(InputView k, InputView v, int64_t first, std::span<const int32_t> positions, int threads);
  // Zeroes positions [from, capacity) (a cache cut back).
  void zero_from(int64_t from, int threads);
  void set_kv_len(int64_t n) { kv_len_ = n; }
  int64_t capacity() const { return capacity_; }

  PackFormat format() const { return format_; }
  // The element type queries must have for this plan's kernels.
  DType q_dtype() const { return format_ == PackFormat::fp32 ? DType::fp32 : DType::bf16; }
  int64_t kv_heads() const { return kv_heads_; }
  int64_t kv_len() const { return kv_len_; }
  int64_t head_dim() const { return head_dim_; }
  int64_t k_block() const { return k_block_; }
  int64_t k_blocks() const { return (kv_len_ + k_block_ - 1) / k_block_; }
  const NumaPlan& numa() const { return numa_; }
  // Key block b of kv head h: k_block x head_dim elements (fp32 or bf16).
  const void* key_block(int64_t h, int64_t b) const;
  // f32: row 0 of the head's fp32 values (row t at + t * v_stride());
  // bf16_pairs: the head's packed values.
  const void* values(int64_t h) const { return v_heads_[static_cast<size_t>(h)]; }
  int64_t v_stride() const { return v_stride_; }
  // Absolute positions of the plan's keys, for causal passes: key t sits at
  // key_positions()[t] (ascending) where the keys are a compaction (DPad's
  // kept tokens), else (nullptr) at t. The span must outlive the plan.
  void set_key_positions(std::span<const int32_t> pos) { key_pos_ = pos.data(); }
  const int32_t* key_positions() const { return key_pos_; }
  int64_t key_position(int64_t t) const { return key_pos_ != nullptr ? key_pos_[t] : t; }

 private:
  void pack_f32(InputView k, InputView v, int threads);
  void pack_bf16(InputView k, InputView v, int threads);
  void write_token(int64_t h, int64_t t, InputView k, InputView v, int64_t row, std::vector<float>& wide);
  void write_range(InputView k, InputView v, int64_t first, int threads);

  int64_t kv_heads_, kv_len_, head_dim_, k_block_, capacity_;
  PackFormat format_;
  NumaPlan numa_;
  std::unique_ptr<HeadBuffers> keys_;
  std::unique_ptr<HeadBuffers> v_copy_;  // widened, placed or bf16-packed values
  std::vector<const void*> v_heads_;     // each kv head's values (nullptr: QK only)
  int64_t v_stride_ = 0;
  const int32_t* key_pos_ = nullptr;
};

}  // namespace spattn::detail
