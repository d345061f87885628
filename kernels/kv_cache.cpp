// KVCache and the cached attention entry points (spattn/kv_cache.hpp):
// argument checks, then one engine pass over the cache's plan.
#include "spattn/kv_cache.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include "kernels/engine/engine.hpp"
#include "kernels/engine/kv_plan.hpp"
#include "kernels/engine/phase_timer.hpp"
#include "kernels/validate.hpp"
#include "spattn/error.hpp"

namespace spattn {
namespace {

constexpr const char* kCache = "KVCache";

}  // namespace

KVCache::KVCache(int64_t kv_heads, int64_t capacity, int64_t head_dim, DType dtype, int64_t k_block,
                 const KernelOptions& opts)
    : dtype_(dtype) {
  if (kv_heads <= 0) throw_bad_argument(kCache, "kv_heads", std::to_string(kv_heads), "must be positive");
  if (capacity <= 0) throw_bad_argument(kCache, "capacity", std::to_string(capacity), "must be positive");
  if (head_dim <= 0 || head_dim % kHeadDimMultiple != 0 || head_dim > kMaxHeadDim)
    throw_bad_argument(kCache, "head_dim", std::to_string(head_dim), "the kernels need a multiple of 16 up to 256");
  if (dtype != DType::fp32 && dtype != DType::bf16 && dtype != DType::fp16)
    throw_bad_argument(kCache, "dtype", std::to_string(static_cast<int>(dtype)), "must be fp32, bf16 or fp16");
  const int64_t kb = k_block == 0 ? kDefaultCacheKeyBlock : k_block;
  check_key_block(kCache, "k_block", kb);
  // The same size rule as a shape's (AttentionShape::validate): far below int64.
  AttentionShape probe{kv_heads, kv_heads, 1, capacity, head_dim};
  probe.validate();
  plan_ = std::make_unique<detail::KVPlan>(kv_heads, capacity, head_dim, kb, dtype, resolve_threads(opts));
}

KVCache::~KVCache() = default;
KVCache::KVCache(KVCache&&) noexcept = default;
KVCache& KVCache::operator=(KVCache&&) noexcept = default;

int64_t KVCache::length() const { return plan_->kv_len(); }
int64_t KVCache::capacity() const { return plan_->capacity(); }
int64_t KVCache::kv_heads() const { return plan_->kv_heads(); }
int64_t KVCache::head_dim() const { return plan_->head_dim(); }
int64_t KVCache::k_block() const { return plan_->k_block(); }
DType KVCache::storage_dtype() const { return plan_->q_dtype(); }

void KVCache::write(int64_t first, InputView k, InputView v, const KernelOptions& opts) {
  const char* where = "KVCache::write";
  if (first < 0 || first > length())
    throw_bad_argument(where, "first", std::to_string(first),
                       "must be in [0, length() " + std::to_string(length()) + "] (a write may not leave a gap)");
  detail::check_token_view(where, "k", k, kv_heads(), k.tokens, head_dim());
  detail::check_token_view(where, "v", v, kv_heads(), k.tokens, head_dim());
  if (k.tokens <= 0) throw_bad_argument(where, "k.tokens", std::to_string(k.tokens), "must be positive");
  if (first + k.tokens > capacity())
    throw_bad_argument(where, "k.tokens", std::to_string(k.tokens),
                       "first + tokens = " + std::to_string(first + k.tokens) + " exceeds capacity() " +
                           std::to_string(capacity()));
  plan_->write_tokens(k, v, first, {}, resolve_threads(opts));
  plan_->set_kv_len(std::max(length(), first + k.tokens));
}

void KVCache::write_rows(std::span<const int32_t> positions, InputView k, InputView v, const KernelOptions& opts) {
  const char* where = "KVCache::write_rows";
  const auto n = static_cast<int64_t>(positions.size());
  if (n == 0) return;
  detail::check_positions(where, "positions", positions, length(), "the cache's length(); append with write()");
  detail::check_token_view(where, "k", k, kv_heads(), n, head_dim());
  detail::check_token_view(where, "v", v, kv_heads(), n, head_dim());
  plan_->write_tokens(k, v, 0, positions, resolve_threads(opts));
}

void KVCache::truncate(int64_t n, const KernelOptions& opts) {
  if (n < 0 || n > length())
    throw_bad_argument("KVCache::truncate", "length", std::to_string(n),
                       "must be in [0, length() " + std::to_string(length()) + "]");
  plan_->zero_from(n, resolve_threads(opts));
  plan_->set_kv_len(n);
}

namespace {

// The checks every cached pass makes; returns the rows' positions.
detail::QueryRows check_cached(const char* where, const AttentionShape& shape, InputView q, const KVCache& cache,
                               OutputView out, const CachedQueries& queries, const KernelOptions& opts) {
  detail::check_query_views(where, shape, q, out);
  detail::check_tile_options(where, "opts.", opts);
  if (shape.kv_len != cache.length())
    throw_bad_argument(where, "shape.kv_len", std::to_string(shape.kv_len),
                       "must equal cache.length() " + std::to_string(cache.length()));
  if (shape.kv_heads != cache.kv_heads())
    throw_bad_argument(where, "shape.kv_heads", std::to_string(shape.kv_heads),
                       "must equal cache.kv_heads() " + std::to_string(cache.kv_heads()));
  if (shape.head_dim != cache.head_dim())
    throw_bad_argument(where, "shape.head_dim", std::to_string(shape.head_dim),
                       "must equal cache.head_dim() " + std::to_string(cache.head_dim()));
  if (!queries.rows.empty()) {
    if (static_cast<int64_t>(queries.rows.size()) != shape.q_len)
      throw_bad_argument(where, "queries.rows", std::to_string(queries.rows.size()) + " positions",
                         "must list shape.q_len " + std::to_string(shape.q_len) + " positions");
    detail::check_positions(where, "queries.rows", queries.rows, shape.kv_len, "shape.kv_len");
    return detail::QueryRows{queries.rows[0], queries.rows.data()};
  }
  const int64_t first = queries.first == AttentionShape::kQOffsetEnd ? shape.query_position0() : queries.first;
  if (first < 0 || first + shape.q_len > shape.kv_len)
    throw_bad_argument(where, "queries.first", std::to_string(first),
                       "rows [first, first + q_len) must lie in [0, kv_len " + std::to_string(shape.kv_len) + ")");
  if (shape.causal && queries.first != AttentionShape::kQOffsetEnd && first != shape.query_position0())
    throw_bad_argument(where, "queries.first", std::to_string(first),
                       "disagrees with the causal shape's query_position0() " +
                           std::to_string(shape.query_position0()));
  return detail::QueryRows{first, nullptr};
}

}  // namespace

void cached_attention(const AttentionShape& shape, InputView q, const KVCache& cache, OutputView out,
                      const CachedQueries& queries, const KernelOptions& opts, float* lse) {
  const char* where = "cached_attention";
  const detail::PhaseTimer timer(where);
  const detail::QueryRows rows = check_cached(where, shape, q, cache, out, queries, opts);
  const int64_t tile = resolve_tiles(opts, cache.dtype()).q_tile_rows;
  const std::vector<int32_t> all = detail::all_key_blocks(cache.plan());
  detail::attend(shape, q, cache.plan(), out, tile, [&](int64_t, int64_t) { return std::span<const int32_t>(all); },
                 resolve_threads(opts), detail::AttendExtras{lse, &rows, {}, opts.kv_splits});
}

void cached_block_sparse_attention(const AttentionShape& shape, InputView q, const KVCache& cache,
                                   const BlockMask& mask, OutputView out, const CachedQueries& queries,
                                   const KernelOptions& opts) {
  const char* where = "cached_block_sparse_attention";
  const detail::PhaseTimer timer(where);
  const detail::QueryRows rows = check_cached(where, shape, q, cache, out, queries, opts);
  mask.validate();
  if (mask.heads != shape.heads)
    throw_bad_argument(where, "mask.heads", std::to_string(mask.heads), "must equal shape.heads " + std::to_string(shape.heads));
  if (mask.q_len != shape.kv_len || mask.kv_len != shape.kv_len)
    throw_bad_argument(where, "mask", std::to_string(mask.q_len) + " x " + std::to_string(mask.kv_len),
                       "must cover the whole sequence: q_len and kv_len equal to shape.kv_len " +
                           std::to_string(shape.kv_len));
  if (mask.k_block % cache.k_block() != 0)
    throw_bad_argument(where, "mask.k_block", std::to_string(mask.k_block),
                       "must be a multiple of cache.k_block() " + std::to_string(cache.k_block()));
  check_block_size(where, "mask.q_block", mask.q_block);
  // Tiles: runs of rows in one query block of the mask (at most q_block rows).
  std::vector<int64_t> starts, tile_qb;
  for (int64_t i = 0; i < shape.q_len; ++i) {
    const int64_t qb = rows.at(i) / mask.q_block;
    if (tile_qb.empty() || tile_qb.back() != qb) {
      starts.push_back(i);
      tile_qb.push_back(qb);
    }
  }
  starts.push_back(shape.q_len);
  // Each of the mask's key blocks is `ratio` consecutive blocks of the cache.
  const int64_t ratio = mask.k_block / cache.k_block(), nk = cache.plan().k_blocks();
  const auto n_tiles = static_cast<int64_t>(tile_qb.size());
  std::vector<int64_t> ptr(static_cast<size_t>(shape.heads * n_tiles + 1), 0);
  std::vector<int32_t> blocks;
  for (int64_t h = 0; h < shape.heads; ++h)
    for (int64_t t = 0; t < n_tiles; ++t) {
      for (int32_t b : mask.row(h, tile_qb[static_cast<size_t>(t)]))
        for (int64_t j = b * ratio; j < std::min(nk, (b + 1) * ratio); ++j) blocks.push_back(static_cast<int32_t>(j));
      ptr[static_cast<size_t>(h * n_tiles + t + 1)] = static_cast<int64_t>(blocks.size());
    }
  const auto key_blocks = [&](int64_t h, int64_t t) {
    const size_t i = static_cast<size_t>(h * n_tiles + t);
    return std::span<const int32_t>(blocks).subspan(static_cast<size_t>(ptr[i]), static_cast<size_t>(ptr[i + 1] - ptr[i]));
  };
  detail::attend(shape, q, cache.plan(), out, mask.q_block, key_blocks, resolve_threads(opts),
                 detail::AttendExtras{nullptr, &rows, starts, opts.kv_splits});
}

}  // namespace spattn
