// KVPlan (see kv_plan.hpp).
#include "kernels/engine/kv_plan.hpp"

#include <algorithm>
#include <new>
#include <string>

#include "dispatch/kernel_table.hpp"
#include "kernels/convert.hpp"
#include "kernels/engine/parallel.hpp"
#include "spattn/error.hpp"

namespace spattn::detail {
namespace {

std::unique_ptr<HeadBuffers> head_buffers(const NumaPlan& numa, int64_t heads, int64_t floats, const char* what,
                                          int64_t kv_len) {
  try {
    return std::make_unique<HeadBuffers>(numa, heads, floats);
  } catch (const std::bad_alloc&) {  // the library reports spattn::Error, whatever failed
    throw OutOfMemory("spattn: cannot allocate " + std::to_string(floats * heads * 4) + " bytes for the packed " +
                      what + " of kv_len " + std::to_string(kv_len) + " (out of memory)");
  }
}

// Rows [t0, t0 + rows) of x's head h, as bf16, into dst[j * ld + c] (pairs
// along the key axis when pair_keys, along head_dim otherwise); rows past
// `rows` up to k_block become zeros.
void pack_block_pairs(InputView x, int64_t h, int64_t t0, int64_t rows, int64_t k_block, bool pair_keys,
                      uint16_t* dst) {
  const int64_t d = x.head_dim;
  std::vector<uint16_t> row(static_cast<size_t>(d));
  for (int64_t j = 0; j < k_block; ++j) {
    if (j < rows) bf16_row(x.row(h, t0 + j), x.dtype, row.data(), d);
    else std::fill(row.begin(), row.end(), uint16_t{0});
    for (int64_t c = 0; c < d; ++c) {
      // keys: [d/2][k_block][2] (pairs of c); values: [k_block/2][d][2] (pairs of j).
      const int64_t at = pair_keys ? ((j / 2) * d + c) * 2 + j % 2 : ((c / 2) * k_block + j) * 2 + c % 2;
      dst[at] = row[static_cast<size_t>(c)];
    }
  }
}

}  // namespace

KVPlan::KVPlan(const AttentionShape& shape, InputView k, InputView v, int64_t k_block, int threads)
    : kv_heads_(shape.kv_heads), kv_len_(shape.kv_len), head_dim_(shape.head_dim), k_block_(k_block),
      format_(k.dtype == DType::bf16 && active_kernels().has_bf16() ? PackFormat::bf16_pairs : PackFormat::f32),
      numa_(numa_plan(threads, shape.kv_heads)) {
  v_heads_.resize(static_cast<size_t>(kv_heads_), nullptr);
  if (format_ == PackFormat::f32) pack_f32(k, v, threads);
  else pack_bf16(k, v, threads);
}

const void* KVPlan::key_block(int64_t h, int64_t b) const {
  const int64_t elems = b * k_block_ * head_dim_;
  if (format_ == PackFormat::f32) return keys_->head(h) + elems;
  return reinterpret_cast<const uint16_t*>(keys_->head(h)) + elems;
}

void KVPlan::pack_f32(InputView k, InputView v, int threads) {
  const KernelTable& kt = active_kernels();
  const int64_t d = head_dim_, blocks = k_blocks();
  const bool with_v = v.data != nullptr;
  const bool copy_v = with_v && (numa_.nodes > 1 || v.dtype != DType::f32);
  keys_ = head_buffers(numa_, kv_heads_, packed_key_floats(kv_len_, k_block_, d), "keys", kv_len_);
  if (copy_v) v_copy_ = head_buffers(numa_, kv_heads_, kv_len_ * d, "values", kv_len_);
  parallel_for(
      threads, kv_heads_ * blocks,
      [&](int64_t begin, int64_t end) {
        std::vector<float> wide(k.dtype == DType::f32 ? 0 : static_cast<size_t>(k_block_ * d));
        for (int64_t item = begin; item < end; ++item) {
          const int64_t h = item / blocks, b = item % blocks;
          const int64_t t0 = b * k_block_, rows = std::min(k_block_, kv_len_ - t0);
          float* dst = keys_->head(h) + b * k_block_ * d;
          if (k.dtype == DType::f32) {
            kt.pack_key_blocks(static_cast<const float*>(k.row(h, t0)), k.token_stride, rows, static_cast<int>(d),
                               static_cast<int>(k_block_), dst);
          } else {  // widen the block's rows, then the same packing
            for (int64_t j = 0; j < rows; ++j) widen_row(k.row(h, t0 + j), k.dtype, wide.data() + j * d, d);
            kt.pack_key_blocks(wide.data(), d, rows, static_cast<int>(d), static_cast<int>(k_block_), dst);
          }
          if (copy_v)
            for (int64_t t = t0; t < t0 + rows; ++t) widen_row(v.row(h, t), v.dtype, v_copy_->head(h) + t * d, d);
        }
      },
      Schedule::contiguous, &numa_);
  if (with_v)
    for (int64_t h = 0; h < kv_heads_; ++h) v_heads_[h] = copy_v ? v_copy_->head(h) : v.row(h, 0);
  v_stride_ = copy_v ? d : v.token_stride;
}

void KVPlan::pack_bf16(InputView k, InputView v, int threads) {
  const int64_t d = head_dim_, blocks = k_blocks(), block_elems = k_block_ * d;
  const bool with_v = v.data != nullptr;
  // Two bf16 per float of the buffers (block_elems is even: k_block is).
  keys_ = head_buffers(numa_, kv_heads_, blocks * block_elems / 2, "keys", kv_len_);
  if (with_v) v_copy_ = head_buffers(numa_, kv_heads_, blocks * block_elems / 2, "values", kv_len_);
  parallel_for(
      threads, kv_heads_ * blocks,
      [&](int64_t begin, int64_t end) {
        for (int64_t item = begin; item < end; ++item) {
          const int64_t h = item / blocks, b = item % blocks;
          const int64_t t0 = b * k_block_, rows = std::min(k_block_, kv_len_ - t0);
          pack_block_pairs(k, h, t0, rows, k_block_, false,
                           reinterpret_cast<uint16_t*>(keys_->head(h)) + b * block_elems);
          if (with_v)
            pack_block_pairs(v, h, t0, rows, k_block_, true,
                             reinterpret_cast<uint16_t*>(v_copy_->head(h)) + b * block_elems);
        }
      },
      Schedule::contiguous, &numa_);
  if (with_v)
    for (int64_t h = 0; h < kv_heads_; ++h) v_heads_[h] = v_copy_->head(h);
  v_stride_ = 0;
}

}  // namespace spattn::detail
