// KVPlan (see kv_plan.hpp).
#include "kernels/engine/kv_plan.hpp"

#include <algorithm>
#include <cstring>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include <new>
#include <string>

#include "dispatch/kernel_table.hpp"
#include "kernels/convert.hpp"
#include "kernels/engine/parallel.hpp"
#include "kernels/engine/phase_timer.hpp"
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

// Keys [t0, t0 + rows) of head h of a bf16 view into [d/2][k_block][2]: a
// transpose of 32-bit pairs; keys past `rows` become zeros. On x86 four keys
// at a time go through 4 x 4 transposes in SSE2 registers (this packing was
// 13% of a 16-thread bf16 call at N 4K on the Xeon with scalar moves);
// head_dim is a multiple of 16, so pairs come in fours.
void pack_key_pairs(InputView k, int64_t h, int64_t t0, int64_t rows, int64_t k_block, uint32_t* dst) {
  const int64_t pairs = k.head_dim / 2;
  int64_t j0 = 0;
#if defined(__SSE2__)
  for (; j0 + 4 <= rows; j0 += 4) {
    const auto* r0 = static_cast<const unsigned char*>(k.row(h, t0 + j0));
    const auto* r1 = static_cast<const unsigned char*>(k.row(h, t0 + j0 + 1));
    const auto* r2 = static_cast<const unsigned char*>(k.row(h, t0 + j0 + 2));
    const auto* r3 = static_cast<const unsigned char*>(k.row(h, t0 + j0 + 3));
    for (int64_t c2 = 0; c2 < pairs; c2 += 4) {
      const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(r0 + 4 * c2));
      const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(r1 + 4 * c2));
      const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(r2 + 4 * c2));
      const __m128i d = _mm_loadu_si128(reinterpret_cast<const __m128i*>(r3 + 4 * c2));
      const __m128i ab_lo = _mm_unpacklo_epi32(a, b), cd_lo = _mm_unpacklo_epi32(c, d);  // pairs 0, 1
      const __m128i ab_hi = _mm_unpackhi_epi32(a, b), cd_hi = _mm_unpackhi_epi32(c, d);  // pairs 2, 3
      uint32_t* out = dst + c2 * k_block + j0;
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm_unpacklo_epi64(ab_lo, cd_lo));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + k_block), _mm_unpackhi_epi64(ab_lo, cd_lo));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2 * k_block), _mm_unpacklo_epi64(ab_hi, cd_hi));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 3 * k_block), _mm_unpackhi_epi64(ab_hi, cd_hi));
    }
  }
#endif
  for (int64_t j = j0; j < k_block; ++j) {
    if (j < rows) {
      const auto* src = static_cast<const unsigned char*>(k.row(h, t0 + j));
      for (int64_t c2 = 0; c2 < pairs; ++c2) std::memcpy(dst + c2 * k_block + j, src + 4 * c2, 4);
    } else {
      for (int64_t c2 = 0; c2 < pairs; ++c2) dst[c2 * k_block + j] = 0;
    }
  }
}

// Values [t0, t0 + rows) of head h of a bf16 view into [k_block/2][d][2]:
// rows 2i and 2i+1 interleaved; rows past `rows` are zeros.
void pack_value_pairs(InputView v, int64_t h, int64_t t0, int64_t rows, int64_t k_block, uint16_t* dst) {
  const int64_t d = v.head_dim;
  for (int64_t j2 = 0; j2 < k_block / 2; ++j2) {
    const int64_t a = 2 * j2, b = a + 1;
    uint16_t* out = dst + j2 * d * 2;
    const auto* ra = a < rows ? static_cast<const uint16_t*>(v.row(h, t0 + a)) : nullptr;
    const auto* rb = b < rows ? static_cast<const uint16_t*>(v.row(h, t0 + b)) : nullptr;
    int64_t c0 = 0;
#if defined(__SSE2__)  // 8 columns of both rows interleaved per step (d is a multiple of 16)
    for (; ra != nullptr && c0 < d; c0 += 8) {
      const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(ra + c0));
      const __m128i y = rb != nullptr ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(rb + c0)) : _mm_setzero_si128();
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2 * c0), _mm_unpacklo_epi16(x, y));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2 * c0 + 8), _mm_unpackhi_epi16(x, y));
    }
#endif
    for (int64_t c = c0; c < d; ++c) {
      out[2 * c] = ra != nullptr ? ra[c] : 0;
      out[2 * c + 1] = rb != nullptr ? rb[c] : 0;
    }
  }
}

}  // namespace

KVPlan::KVPlan(const AttentionShape& shape, InputView k, InputView v, int64_t k_block, int threads)
    : kv_heads_(shape.kv_heads), kv_len_(shape.kv_len), head_dim_(shape.head_dim), k_block_(k_block),
      format_(k.dtype == DType::bf16 && active_kernels().has_bf16() ? PackFormat::bf16_pairs : PackFormat::fp32),
      numa_(numa_plan(threads, shape.kv_heads)) {
  const PhaseTimer timer("pack_kv");
  v_heads_.resize(static_cast<size_t>(kv_heads_), nullptr);
  if (format_ == PackFormat::fp32) pack_f32(k, v, threads);
  else pack_bf16(k, v, threads);
}

const void* KVPlan::key_block(int64_t h, int64_t b) const {
  const int64_t elems = b * k_block_ * head_dim_;
  if (format_ == PackFormat::fp32) return keys_->head(h) + elems;
  return reinterpret_cast<const uint16_t*>(keys_->head(h)) + elems;
}

void KVPlan::pack_f32(InputView k, InputView v, int threads) {
  const KernelTable& kt = active_kernels();
  const int64_t d = head_dim_, blocks = k_blocks();
  const bool with_v = v.data != nullptr;
  // Strided values (heads interleaved) are copied to contiguous rows: at a
  // power-of-two stride (4 KiB for 8 heads of 128) every row of a key block
  // maps to the same 8 L1 sets, so the PV product reread the block from L2.
  const bool copy_v = with_v && (numa_.nodes > 1 || v.dtype != DType::fp32 || v.token_stride != d);
  keys_ = head_buffers(numa_, kv_heads_, packed_key_floats(kv_len_, k_block_, d), "keys", kv_len_);
  if (copy_v) v_copy_ = head_buffers(numa_, kv_heads_, kv_len_ * d, "values", kv_len_);
  parallel_for(
      threads, kv_heads_ * blocks,
      [&](int64_t begin, int64_t end) {
        std::vector<float> wide(k.dtype == DType::fp32 ? 0 : static_cast<size_t>(k_block_ * d));
        for (int64_t item = begin; item < end; ++item) {
          const int64_t h = item / blocks, b = item % blocks;
          const int64_t t0 = b * k_block_, rows = std::min(k_block_, kv_len_ - t0);
          float* dst = keys_->head(h) + b * k_block_ * d;
          if (k.dtype == DType::fp32) {
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

// Only bf16 k/v come here (the format is chosen for them).
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
          pack_key_pairs(k, h, t0, rows, k_block_, reinterpret_cast<uint32_t*>(keys_->head(h)) + b * block_elems / 2);
          if (with_v)
            pack_value_pairs(v, h, t0, rows, k_block_, reinterpret_cast<uint16_t*>(v_copy_->head(h)) + b * block_elems);
        }
      },
      Schedule::contiguous, &numa_);
  if (with_v)
    for (int64_t h = 0; h < kv_heads_; ++h) v_heads_[h] = v_copy_->head(h);
  v_stride_ = 0;
}

}  // namespace spattn::detail
