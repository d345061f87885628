// KVPlan (see kv_plan.hpp).
#include "kernels/engine/kv_plan.hpp"

#include <algorithm>
#include <new>
#include <string>

#include "dispatch/kernel_table.hpp"
#include "kernels/engine/parallel.hpp"
#include "spattn/error.hpp"

namespace spattn::detail {

KVPlan::KVPlan(const AttentionShape& shape, ConstTensorView k, ConstTensorView v, int64_t k_block, int threads)
    : kv_heads_(shape.kv_heads), kv_len_(shape.kv_len), head_dim_(shape.head_dim), k_block_(k_block),
      numa_(numa_plan(threads, shape.kv_heads)) {
  const KernelTable& kt = active_kernels();
  const int64_t d = head_dim_, blocks = k_blocks();
  const bool with_v = v.data != nullptr;
  const bool placed = numa_.nodes > 1 && with_v;
  try {
    keys_ = std::make_unique<HeadBuffers>(numa_, kv_heads_, packed_key_floats(kv_len_, k_block_, d));
    if (placed) v_copy_ = std::make_unique<HeadBuffers>(numa_, kv_heads_, kv_len_ * d);
  } catch (const std::bad_alloc&) {  // the library reports spattn::Error, whatever failed
    throw OutOfMemory("spattn: cannot allocate " + std::to_string(packed_key_floats(kv_len_, k_block_, d) * kv_heads_ * 4) +
                " bytes for the packed keys of kv_len " + std::to_string(kv_len_) + " (out of memory)");
  }
  parallel_for(
      threads, kv_heads_ * blocks,
      [&](int64_t begin, int64_t end) {
        for (int64_t item = begin; item < end; ++item) {
          const int64_t h = item / blocks, b = item % blocks;
          const int64_t t0 = b * k_block_, rows = std::min(k_block_, kv_len_ - t0);
          kt.pack_key_blocks(k.row(h, t0), k.token_stride, rows, static_cast<int>(d),
                             static_cast<int>(k_block_), keys_->head(h) + b * k_block_ * d);
          if (placed)
            for (int64_t t = t0; t < t0 + rows; ++t) std::copy_n(v.row(h, t), d, v_copy_->head(h) + t * d);
        }
      },
      Schedule::contiguous, &numa_);
  v_heads_.resize(static_cast<size_t>(kv_heads_), nullptr);
  if (with_v)
    for (int64_t h = 0; h < kv_heads_; ++h) v_heads_[h] = placed ? v_copy_->head(h) : v.row(h, 0);
  v_stride_ = placed ? d : v.token_stride;
}

}  // namespace spattn::detail
