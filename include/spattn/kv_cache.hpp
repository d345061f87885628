#pragma once
// Cached attention, as diffusion LMs are served with a KV cache (Fast-dLLM's
// prefix and dual caches, dKV-Cache, dLLM-Cache): K and V of the whole
// sequence live in a KVCache, packed once in the kernels' layout and updated
// in place for the rows a step recomputes; each step attends its few query
// rows (a block at an offset, or a list of scattered rows) against all
// cached keys, dense or on a block pattern recorded over the whole sequence.
// A step with few query rows splits each head's keys into pieces computed on
// different threads and merged exactly (KernelOptions::kv_splits).
#include <cstdint>
#include <memory>
#include <span>

#include "spattn/attention.hpp"
#include "spattn/block_mask.hpp"
#include "spattn/shape.hpp"

namespace spattn {
namespace detail {
class KVPlan;
}

// Keys per packed block of a KVCache when none is given: masks of 64- and
// 128-token blocks run on it, and the kernels group blocks into longer
// softmax steps where the ISA gains from them.
inline constexpr int64_t kDefaultCacheKeyBlock = 64;

class KVCache {
 public:
  // Room for `capacity` tokens of kv_heads heads of head_dim (a multiple of
  // 16 up to 256). dtype is how K and V are kept: bf16 stays bf16 where the
  // ISA has bf16 dot products (elsewhere, and for fp16 and fp32, fp32).
  // k_block: keys per packed block (16 ... 512; 0: kDefaultCacheKeyBlock);
  // a mask used with the cache needs a k_block that is a multiple of it.
  // Empty (length 0) at first.
  KVCache(int64_t kv_heads, int64_t capacity, int64_t head_dim, DType dtype, int64_t k_block = 0,
          const KernelOptions& opts = {});
  ~KVCache();
  KVCache(KVCache&&) noexcept;
  KVCache& operator=(KVCache&&) noexcept;

  // Rows t of k and v ([kv_heads][n][head_dim], any dtype) to positions
  // first + t. first <= length() (no gaps) and first + n <= capacity();
  // length() becomes max(length(), first + n). Costs O(n head_dim).
  void write(int64_t first, InputView k, InputView v, const KernelOptions& opts = {});
  // Row i to positions[i] (strictly increasing, each < length()).
  void write_rows(std::span<const int32_t> positions, InputView k, InputView v, const KernelOptions& opts = {});
  // Cuts the cache back to `length` tokens (<= length()); the rest is zeroed.
  void truncate(int64_t length, const KernelOptions& opts = {});

  int64_t length() const;
  int64_t capacity() const;
  int64_t kv_heads() const;
  int64_t head_dim() const;
  int64_t k_block() const;
  DType dtype() const { return dtype_; }
  // How K and V are stored: bf16 (a bf16 cache on an ISA with bf16 dot
  // products) or fp32.
  DType storage_dtype() const;
  const detail::KVPlan& plan() const { return *plan_; }

 private:
  std::unique_ptr<detail::KVPlan> plan_;
  DType dtype_;
};

// Which cached tokens the query rows are: rows [first, first + q_len), or the
// listed positions (strictly increasing, in [0, kv_len)) when rows is not
// empty. first kQOffsetEnd: the shape's query_position0() (kv_len - q_len,
// or a causal shape's q_offset). Causal shapes mask by these positions.
struct CachedQueries {
  int64_t first = AttentionShape::kQOffsetEnd;
  std::span<const int32_t> rows;
};

// Attention of q ([heads][q_len][head_dim], any dtype) over every token of
// the cache: shape.kv_len must equal cache.length(), shape.kv_heads and
// head_dim the cache's. opts' q_tile_rows applies, its k_block does not (the
// cache's); with lse, each row's log-sum-exp at lse[h * q_len + t].
void cached_attention(const AttentionShape& shape, InputView q, const KVCache& cache, OutputView out,
                      const CachedQueries& queries = {}, const KernelOptions& opts = {}, float* lse = nullptr);

// The same over the key blocks of a pattern recorded over the whole sequence
// (mask.q_len == mask.kv_len == shape.kv_len, e.g. SparseD's at a refresh
// step): query row i uses the mask row of the query block holding its
// position. mask.k_block must be a multiple of cache.k_block().
void cached_block_sparse_attention(const AttentionShape& shape, InputView q, const KVCache& cache,
                                   const BlockMask& mask, OutputView out, const CachedQueries& queries = {},
                                   const KernelOptions& opts = {});

}  // namespace spattn
