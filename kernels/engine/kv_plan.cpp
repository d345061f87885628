// KVPlan (see kv_plan.hpp).
#include "kernels/engine/kv_plan.hpp"

#include <algorithm>
#include <cstring>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include <new>
#include <string>

#include "kernels/kernel_table.hpp"
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
// at a time go through 4 x 4 transposes in SSE2 registers (with scalar
// moves this packing was a visible share of a many-thread bf16 call:
// bench/results/README.md); head_dim is a multiple of 16, so pairs come in fours.
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

int64_t k_blocks_for(int64_t tokens, int64_t k_block) { return (tokens + k_block - 1) / k_block; }

}  // namespace

KVPlan::KVPlan(const AttentionShape& shape, InputView k, InputView v, int64_t k_block, int threads)
    : kv_heads_(shape.kv_heads), kv_len_(shape.kv_len), head_dim_(shape.head_dim), k_block_(k_block),
      capacity_(shape.kv_len),
      format_(k.dtype == DType::bf16 && active_kernels().has_bf16() ? PackFormat::bf16_pairs : PackFormat::fp32),
      numa_(numa_plan(threads, shape.kv_heads)) {
  const PhaseTimer timer("pack_kv");
  v_heads_.resize(static_cast<size_t>(kv_heads_), nullptr);
  if (format_ == PackFormat::fp32) pack_f32(k, v, threads);
  else pack_bf16(k, v, threads);
}

KVPlan::KVPlan(int64_t kv_heads, int64_t capacity, int64_t head_dim, int64_t k_block, DType kv_dtype, int threads)
    : kv_heads_(kv_heads), kv_len_(0), head_dim_(head_dim), k_block_(k_block), capacity_(capacity),
      format_(kv_dtype == DType::bf16 && active_kernels().has_bf16() ? PackFormat::bf16_pairs : PackFormat::fp32),
      numa_(numa_plan(threads, kv_heads)) {
  // Both formats hold whole blocks of keys and values: fp32 keys transposed
  // per block, fp32 value rows; or bf16 pairs of both (half a float each).
  const int64_t padded = k_blocks_for(capacity, k_block) * k_block * head_dim;
  const int64_t floats = format_ == PackFormat::fp32 ? padded : padded / 2;
  keys_ = head_buffers(numa_, kv_heads_, floats, "keys", capacity);
  v_copy_ = head_buffers(numa_, kv_heads_, floats, "values", capacity);
  v_heads_.resize(static_cast<size_t>(kv_heads_));
  for (int64_t h = 0; h < kv_heads_; ++h) v_heads_[static_cast<size_t>(h)] = v_copy_->head(h);
  v_stride_ = format_ == PackFormat::fp32 ? head_dim : 0;
  zero_from(0, threads);  // positions past the length stay zero: padding the kernels may read
}

void KVPlan::zero_from(int64_t from, int threads) {
  // Blocks wholly past `from` are cleared; in the block holding it, only
  // the positions from it on (the keys before it stay).
  const int64_t first_block = from / k_block_, blocks = k_blocks_for(capacity_, k_block_);
  const int64_t block_floats = format_ == PackFormat::fp32 ? k_block_ * head_dim_ : k_block_ * head_dim_ / 2;
  parallel_for(
      threads, kv_heads_ * (blocks - first_block),
      [&](int64_t begin, int64_t end) {
        for (int64_t item = begin; item < end; ++item) {
          const int64_t h = item / (blocks - first_block), b = first_block + item % (blocks - first_block);
          float* kb = keys_->head(h) + b * block_floats;
          float* vb = v_copy_->head(h) + b * block_floats;
          if (b * k_block_ >= from) {
            std::memset(kb, 0, static_cast<size_t>(block_floats) * 4);
            std::memset(vb, 0, static_cast<size_t>(block_floats) * 4);
            continue;
          }
          const std::vector<float> zeros(static_cast<size_t>(head_dim_), 0.0f);
          const InputView z(zeros.data(), DType::fp32, 1, 1, head_dim_, head_dim_, head_dim_);
          std::vector<float> wide;
          for (int64_t t = from; t < (b + 1) * k_block_; ++t) write_token(h, t, z, z, 0, wide);
        }
      },
      Schedule::contiguous, &numa_);
}

// One token: row `row` of kv head h of k and v (any dtype) to position t.
void KVPlan::write_token(int64_t h, int64_t t, InputView k, InputView v, int64_t row, std::vector<float>& wide) {
  const int64_t d = head_dim_, b = t / k_block_, j = t % k_block_;
  const int64_t kh = k.heads == 1 ? 0 : h;  // zero_from passes one row for every head
  if (format_ == PackFormat::fp32) {
    wide.resize(static_cast<size_t>(d));
    float* kdst = keys_->head(h) + b * k_block_ * d;  // [d][k_block]
    widen_row(k.row(kh, row), k.dtype, wide.data(), d);
    for (int64_t c = 0; c < d; ++c) kdst[c * k_block_ + j] = wide[static_cast<size_t>(c)];
    widen_row(v.row(kh, row), v.dtype, v_copy_->head(h) + t * d, d);
    return;
  }
  wide.resize(static_cast<size_t>(d / 2));
  auto* bits = reinterpret_cast<uint16_t*>(wide.data());
  bf16_row(k.row(kh, row), k.dtype, bits, d);
  auto* kdst = reinterpret_cast<uint32_t*>(keys_->head(h)) + b * k_block_ * d / 2;  // [d/2][k_block] pairs
  for (int64_t c2 = 0; c2 < d / 2; ++c2) std::memcpy(kdst + c2 * k_block_ + j, bits + 2 * c2, 4);
  bf16_row(v.row(kh, row), v.dtype, bits, d);
  auto* vdst = reinterpret_cast<uint16_t*>(v_copy_->head(h)) + b * k_block_ * d + (j / 2) * d * 2 + (j & 1);
  for (int64_t c = 0; c < d; ++c) vdst[2 * c] = bits[c];  // [k_block/2][d][2]
}

void KVPlan::write_tokens(InputView k, InputView v, int64_t first, std::span<const int32_t> positions, int threads) {
  const PhaseTimer timer("cache_write");
  if (positions.empty()) {
    write_range(k, v, first, threads);
    return;
  }
  const int64_t n = static_cast<int64_t>(positions.size());
  parallel_for(threads, kv_heads_ * n, [&](int64_t begin, int64_t end) {
    std::vector<float> wide;
    for (int64_t item = begin; item < end; ++item)
      write_token(item / n, positions[static_cast<size_t>(item % n)], k, v, item % n, wide);
  });
}

// Positions [first, first + k.tokens): a block the range covers whole is
// packed as a fresh plan packs it (a refresh of the whole cache costs what
// packing does); the partial blocks at its ends token by token.
void KVPlan::write_range(InputView k, InputView v, int64_t first, int threads) {
  const KernelTable& kt = active_kernels();
  const int64_t n = k.tokens, d = head_dim_, b0 = first / k_block_, b1 = k_blocks_for(first + n, k_block_);
  parallel_for(
      threads, kv_heads_ * (b1 - b0),
      [&](int64_t begin, int64_t end) {
        std::vector<float> wide;
        for (int64_t item = begin; item < end; ++item) {
          const int64_t h = item / (b1 - b0), b = b0 + item % (b1 - b0);
          const int64_t t0 = std::max(first, b * k_block_), t1 = std::min(first + n, (b + 1) * k_block_);
          const bool whole = t0 == b * k_block_ && t1 == (b + 1) * k_block_;
          if (whole && format_ == PackFormat::fp32) {
            wide.resize(static_cast<size_t>(k_block_ * d));
            for (int64_t t = t0; t < t1; ++t) widen_row(k.row(h, t - first), k.dtype, wide.data() + (t - t0) * d, d);
            kt.pack_key_blocks(wide.data(), d, k_block_, static_cast<int>(d), static_cast<int>(k_block_),
                               keys_->head(h) + b * k_block_ * d);
            for (int64_t t = t0; t < t1; ++t) widen_row(v.row(h, t - first), v.dtype, v_copy_->head(h) + t * d, d);
          } else if (whole && k.dtype == DType::bf16 && v.dtype == DType::bf16) {  // bf16 pairs from bf16 rows
            pack_key_pairs(k, h, t0 - first, k_block_, k_block_,
                           reinterpret_cast<uint32_t*>(keys_->head(h)) + b * k_block_ * d / 2);
            pack_value_pairs(v, h, t0 - first, k_block_, k_block_,
                             reinterpret_cast<uint16_t*>(v_copy_->head(h)) + b * k_block_ * d);
          } else {
            for (int64_t t = t0; t < t1; ++t) write_token(h, t, k, v, t - first, wide);
          }
        }
      },
      Schedule::contiguous, &numa_);
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
