#pragma once
// KVPlan: the packed operands of one attention call, built once and read by
// every work item (as oneDNN's ukernel plans are): each kv head's keys
// transposed per key block and zero-padded (the layout qk_scores reads), and
// its values as strided rows, copied onto the head's NUMA node when the
// machine has several. A session that runs several passes over the same K/V
// (SparseD's record step: flash with LSE, then block masses) builds one plan.
#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/numa_placement.hpp"
#include "spattn/shape.hpp"

namespace spattn::detail {

class KVPlan {
 public:
  // Packs k in blocks of k_block keys; v may be an empty view (data nullptr)
  // for QK-only passes. Threads as the work loop that will read the plan, so
  // each head's data is first touched on the node of its readers.
  KVPlan(const AttentionShape& shape, ConstTensorView k, ConstTensorView v, int64_t k_block, int threads);

  int64_t kv_heads() const { return kv_heads_; }
  int64_t kv_len() const { return kv_len_; }
  int64_t head_dim() const { return head_dim_; }
  int64_t k_block() const { return k_block_; }
  int64_t k_blocks() const { return (kv_len_ + k_block_ - 1) / k_block_; }
  const NumaPlan& numa() const { return numa_; }
  // Key block b of kv head h: [head_dim][k_block] floats.
  const float* key_block(int64_t h, int64_t b) const { return keys_->head(h) + b * k_block_ * head_dim_; }
  const float* values(int64_t h) const { return v_heads_[static_cast<size_t>(h)]; }
  int64_t v_stride() const { return v_stride_; }

 private:
  int64_t kv_heads_, kv_len_, head_dim_, k_block_;
  NumaPlan numa_;
  std::unique_ptr<HeadBuffers> keys_;
  std::unique_ptr<HeadBuffers> v_copy_;  // only with several nodes
  std::vector<const float*> v_heads_;    // row 0 of each kv head's values (nullptr: QK only)
  int64_t v_stride_ = 0;
};

}  // namespace spattn::detail
