// UniSparse: block selection from composite tokens.
//
// For every pooling width g in params.granularities, K is mean-pooled over
// runs of g tokens and Q over runs of min(g, block) tokens ("composite
// tokens"). Queries are pooled no wider than a block because selection is
// per query block: a query pool spanning several query blocks would give them
// all the same estimate (the paper, too, compresses Q and K by separate
// factors). The pooled logits scale * q~_i . k~_j, plus log(tokens in j / g)
// (zero except for a short last run: a pooled key stands for all its tokens),
// go through a softmax per pooled query row; each row's distribution is
// folded onto key blocks of params.block tokens (a pooled key wider than a
// block splits its mass by tokens) and averaged over the query block's
// tokens. That gives one estimate of the block-mass matrix per granularity,
// every row a distribution over key blocks.
//
// Combining granularities: a weighted average of the per-granularity
// estimates with weights proportional to 1/g. Each estimate is a
// distribution, so the average is one too and tau keeps the meaning "share of
// the estimated mass". Weights favour the fine widths because they are the
// better estimators: exp of a mean logit underestimates the mean of exps
// (Jensen), more so the wider the pool, and a wide pool can only report the
// mass of a whole region, spread evenly over its blocks. On planted test data
// (4 of 32 key blocks hold ~98% of each query block's mass), threshold
// selection at tau = 0.9 kept 18% of the blocks with these weights, 34% with
// a plain average (the flat coarse third must be covered too) and 57% with a
// plain average and Q pooled at g; recall stayed ~0.98 in all three. The
// coarse widths still contribute a small, context-wide prior (1/21 of the
// mass for {16, 64, 256}) that orders blocks the fine estimate leaves nearly
// tied. A product ("fine refined by coarse") would let a blurred coarse
// estimate veto a block the fine one found; a missed block costs accuracy,
// an extra block only time.
//
// Cost: at g = 16 the logits are (N/16)^2 per head, 1/256 of the dense QK
// work; they run through the same hand-vectorized qk_scores / exp as the
// dense kernels (pooled keys packed like ordinary key blocks), as the
// engine's key_softmax_rows pass over (head, tile of pooled query rows).
// Work items own disjoint query blocks, so the result does not depend on the
// thread count. Q and K are read once, pooled at the finest width (the gcd
// of the granularities; bf16 / fp16 rows widened there), and each
// granularity's pools are token-weighted means of those. K is pooled in a
// pass of its own (every pooled query row needs all pooled keys); Q is
// pooled inside the first granularity's pass, each tile's rows just before
// its products, so that reading Q (half the selection's memory traffic) runs
// beside other threads' arithmetic: a pass of plain reads is bound by memory
// bandwidth and scales poorly with cores (bench/results/README.md).
//
// Selection per (head, query block), on the combined estimate:
//  - forced blocks: key block 0 (attention sink) and the key block(s) at the
//    query block's own positions (the diagonal). Both are cheap insurance:
//    sinks and local context carry large mass in nearly every head, and the
//    pooled estimate is weakest exactly where a few tokens spike.
//  - topk: n = clamp(max(ceil(topk_ratio * k_blocks), min_blocks), 1,
//    k_blocks) blocks in all; the forced blocks count toward n, the rest are
//    the highest estimates (ties to the lower index). A row keeps
//    max(n, forced) blocks.
//  - threshold: the forced blocks, then blocks in decreasing estimate (ties
//    to the lower index) until the kept estimated mass reaches tau times the
//    row's total and at least min_blocks are kept.
//
// Positions: query token t sits at key position t + shape.query_position0()
// (kv_len - q_len unless a causal shape sets q_offset: the queries are the
// last q_len positions, as with a cached prefix; q_len == kv_len is the usual
// bidirectional case), clamped into [0, kv_len).
//
// Causal prefill (shape.causal): a query block may only select key blocks up
// to the one holding its last query's position (its visible blocks), and its
// estimate must not see later tokens. So at every granularity a pooled query
// row sees only the pooled keys that end at or before its query block's last
// position: a pooled key straddling that position would average future
// tokens into the estimate. (At g <= block with block-aligned positions that
// is every key block up to the diagonal; at coarse g the pooled keys around
// the diagonal drop out, and the forced diagonal blocks cover what they
// held.) The softmax runs over the visible pooled keys only; topk_ratio
// counts visible blocks, and the threshold is tau of the visible estimate.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kernels/convert.hpp"
#include "kernels/engine/engine.hpp"
#include "kernels/engine/function_ref.hpp"
#include "kernels/engine/phase_timer.hpp"
#include "kernels/validate.hpp"
#include "patterns/validate_params.hpp"
#include "spattn/error.hpp"
#include "spattn/patterns.hpp"

namespace spattn {
namespace {

constexpr const char* kWhere = "unisparse_select";
// Pooled keys are packed in blocks of this many composite tokens.
constexpr int64_t kPooledKeyBlock = 64;
// Pooled query rows per qk_scores call (at least; see rows_per_item).
constexpr int64_t kMinRowsPerItem = 8;

void validate_params(const UnisparseParams& p) { detail::validate_unisparse_params(kWhere, "params.", p); }

}  // namespace

namespace detail {

void validate_unisparse_params(const char* where, const std::string& prefix, const UnisparseParams& p) {
  check_block_size(where, prefix + "block", p.block_size);
  if (p.granularities.empty())
    throw_bad_argument(where, (prefix + "granularities").c_str(), "{}", "must list at least one pooling width");
  for (size_t i = 0; i < p.granularities.size(); ++i) {
    const int64_t g = p.granularities[i];
    const std::string arg = prefix + "granularities[" + std::to_string(i) + "]";
    if (g <= 0) throw_bad_argument(where, arg.c_str(), std::to_string(g), "must be positive");
    if (g % p.block_size != 0 && p.block_size % g != 0)
      throw_bad_argument(where, arg.c_str(), std::to_string(g),
                         "must divide or be a multiple of " + prefix + "block = " + std::to_string(p.block_size));
  }
  if (p.select != UnisparseParams::Select::topk && p.select != UnisparseParams::Select::threshold)
    throw_bad_argument(where, (prefix + "select").c_str(), std::to_string(static_cast<int>(p.select)),
                       "must be Select::topk or Select::threshold");
  if (!(p.topk_ratio > 0.0 && p.topk_ratio <= 1.0))
    throw_bad_argument(where, (prefix + "topk_ratio").c_str(), detail::fmt_param(p.topk_ratio), "must be in (0, 1]");
  if (!(p.tau > 0.0 && p.tau <= 1.0))
    throw_bad_argument(where, (prefix + "tau").c_str(), detail::fmt_param(p.tau), "must be in (0, 1]");
  if (p.min_blocks < 1)
    throw_bad_argument(where, (prefix + "min_blocks").c_str(), std::to_string(p.min_blocks), "must be >= 1");
}

}  // namespace detail

namespace {

// Pooled row `item` (h * n + i, n pools per head) of x at width g: the mean
// of rows [i*g, min((i+1)*g, tokens)) of head h, d floats at out. wide:
// head_dim floats for widening bf16 / f16 rows.
void mean_pool_row(const InputView& x, int64_t g, int64_t n, int64_t item, float* out, float* wide) {
  const int64_t d = x.head_dim, h = item / n, i = item % n;
  const int64_t t0 = i * g, t1 = std::min(x.tokens, t0 + g);
  std::fill(out, out + d, 0.0f);
  for (int64_t t = t0; t < t1; ++t) {
    const float* row = static_cast<const float*>(x.row(h, t));
    if (x.dtype != DType::fp32) {  // bf16 / f16: widened exactly, row by row
      detail::widen_row(x.row(h, t), x.dtype, wide, d);
      row = wide;
    }
    for (int64_t c = 0; c < d; ++c) out[c] += row[c];
  }
  const float inv = 1.0f / static_cast<float>(t1 - t0);
  for (int64_t c = 0; c < d; ++c) out[c] *= inv;
}

// Pooled row `item` at width g from the pools at width w (a divisor of g,
// nb of them per head): the token-weighted mean of those it covers (the
// same mean as pooling the tokens directly, up to rounding).
void coarsen_row(const float* base, int64_t w, int64_t nb, int64_t tokens, int64_t d, int64_t g, int64_t n,
                 int64_t item, float* out) {
  const int64_t h = item / n, i = item % n, per = g / w, j1 = std::min(nb, (i + 1) * per);
  std::fill(out, out + d, 0.0f);
  for (int64_t j = i * per; j < j1; ++j) {
    const float weight = static_cast<float>(std::min(w, tokens - j * w));  // tokens of pool j
    const float* src = base + (h * nb + j) * d;
    for (int64_t c = 0; c < d; ++c) out[c] += weight * src[c];
  }
  const float inv = 1.0f / static_cast<float>(std::min(g, tokens - i * g));
  for (int64_t c = 0; c < d; ++c) out[c] *= inv;
}

// Runs body(task, item) for every item of every task (counts[task] items
// each) in one parallel pass: the selection's pieces are small, and at 16
// threads a pass per tensor and width cost more in its fork and join than
// in its work.
void for_each_task_item(const std::vector<int64_t>& counts, int threads,
                        detail::FunctionRef<void(size_t, int64_t)> body) {
  std::vector<int64_t> first(counts.size() + 1, 0);
  for (size_t t = 0; t < counts.size(); ++t) first[t + 1] = first[t] + counts[t];
  detail::parallel_for(threads, first.back(), [&](int64_t begin, int64_t end) {
    size_t t = static_cast<size_t>(std::upper_bound(first.begin(), first.end(), begin) - first.begin()) - 1;
    for (int64_t i = begin; i < end; ++i) {
      while (i >= first[t + 1]) ++t;
      body(t, i - first[t]);
    }
  });
}

// The pooled-key distribution of one pooled query row folded onto key blocks
// of `block` tokens: bm[kb] = the mass of key block kb.
void fold_onto_key_blocks(const float* p, int64_t nk, int64_t g, int64_t block, int64_t kv_len, float* bm) {
  const int64_t k_blocks = (kv_len + block - 1) / block;
  if (g <= block) {
    const int64_t per_block = block / g;
    for (int64_t kb = 0; kb < k_blocks; ++kb) {
      const int64_t j1 = std::min(nk, (kb + 1) * per_block);
      float acc = 0.0f;
      for (int64_t j = kb * per_block; j < j1; ++j) acc += p[j];
      bm[kb] = acc;
    }
  } else {  // a pooled key spans g / block key blocks: split by tokens
    const int64_t span = g / block;
    for (int64_t j = 0; j < nk; ++j) {
      const float per_token = p[j] / static_cast<float>(std::min(g, kv_len - j * g));
      const int64_t kb1 = std::min(k_blocks, (j + 1) * span);
      for (int64_t kb = j * span; kb < kb1; ++kb)
        bm[kb] = per_token * static_cast<float>(std::min(block, kv_len - kb * block));
    }
  }
}

// Mean pools of one tensor, [heads][n][d] at each width it needs. The
// pools and estimates of a call come from the plans' buffer cache (not
// zero-filled vectors): fresh pages fault in on first touch, and on the CI VM
// that was half the selection's time at N 8K.
struct TensorPools {
  InputView x;
  std::vector<int64_t> widths;  // ascending; each a multiple of the first
  std::vector<detail::CachedFloats> pools;
  int64_t count(size_t w) const { return (x.tokens - 1) / widths[w] + 1; }  // no overflow for huge widths
  const float* at(int64_t g) const {
    return pools[static_cast<size_t>(std::find(widths.begin(), widths.end(), g) - widths.begin())].data();
  }
};

// Allocates every width's pools (filled later).
void allocate_pools(TensorPools& t) {
  for (size_t w = 0; w < t.widths.size(); ++w)
    t.pools.emplace_back(static_cast<size_t>(t.x.heads * t.count(w) * t.x.head_dim));
}

// The widening buffer of 16-bit rows, one per thread.
float* wide_row(const InputView& x) {
  thread_local std::vector<float> wide;
  if (x.dtype != DType::fp32 && wide.size() < static_cast<size_t>(x.head_dim))
    wide.resize(static_cast<size_t>(x.head_dim));
  return wide.data();
}

// Pooled row `item` of width index w: the finest from the tensor (16-bit
// rows widened), a wider one from the finest pools (already filled there).
void pool_row(TensorPools& t, size_t w, int64_t item) {
  const int64_t d = t.x.head_dim;
  float* out = t.pools[w].data() + item * d;
  if (w == 0)
    mean_pool_row(t.x, t.widths[0], t.count(0), item, out, wide_row(t.x));
  else
    coarsen_row(t.pools[0].data(), t.widths[0], t.count(0), t.x.tokens, d, t.widths[w], t.count(w), item, out);
}

// Fills the key pools from one read of K: the finest width from the tensor
// (16-bit inputs widened there, once) in one pass, which also zeroes `zero`
// (the estimates), then every wider width from those in a second. (The
// query pools are filled tile by tile inside the first estimate: see
// pool_query_rows.)
void pool_keys(TensorPools& k, std::span<float> zero, int threads) {
  allocate_pools(k);
  constexpr int64_t kZeroChunk = 4096;
  const int64_t zero_items = (static_cast<int64_t>(zero.size()) + kZeroChunk - 1) / kZeroChunk;
  for_each_task_item({k.x.heads * k.count(0), zero_items}, threads, [&](size_t task, int64_t item) {
    if (task == 1) {
      const size_t b = static_cast<size_t>(item * kZeroChunk);
      std::fill(zero.begin() + b, zero.begin() + std::min(zero.size(), b + kZeroChunk), 0.0f);
      return;
    }
    pool_row(k, 0, item);
  });
  std::vector<int64_t> counts;
  for (size_t w = 1; w < k.widths.size(); ++w) counts.push_back(k.x.heads * k.count(w));
  for_each_task_item(counts, threads, [&](size_t task, int64_t item) { pool_row(k, task + 1, item); });
}

// Fills every width's query pools of head h over tokens [t0, t1): t0 a
// multiple of every width (a query block's start), t1 another such or the
// end of the queries. Finest from the tensor, wider from the finest.
void pool_query_rows(TensorPools& q, int64_t h, int64_t t0, int64_t t1) {
  for (size_t w = 0; w < q.widths.size(); ++w) {
    const int64_t width = q.widths[w];
    for (int64_t j = t0 / width; j < (t1 + width - 1) / width; ++j) pool_row(q, w, h * q.count(w) + j);
  }
}

// Adds weight * (granularity g's block-mass estimate) to est
// ([heads][q_blocks][k_blocks]), from the pools of q and k.
// With fill_queries, the query pools are filled here, tile by tile (the
// first granularity's call).
void add_granularity_estimate(const AttentionShape& shape, TensorPools& q_pools, const TensorPools& k_pools,
                              int64_t g, int64_t block, float weight, bool fill_queries, int threads,
                              float* est) {
  const detail::PhaseTimer timer("estimate g", g);
  const int64_t d = shape.head_dim;
  const int64_t gq = std::min(g, block);  // query pooling width: divides block
  const int64_t nq = (shape.q_len - 1) / gq + 1, nk = (shape.kv_len - 1) / g + 1;
  const int64_t q_blocks = (shape.q_len + block - 1) / block;
  const int64_t k_blocks = (shape.kv_len + block - 1) / block;

  const float* q_pooled = q_pools.at(gq);
  const float* k_pooled = k_pools.at(g);
  AttentionShape pooled = shape;  // composite tokens; the scale stays the shape's
  pooled.q_len = nq;
  pooled.kv_len = nk;
  const detail::KVPlan kv(pooled, ConstTensorView::heads_major(k_pooled, shape.kv_heads, nk, d),
                          InputView{}, kPooledKeyBlock, threads);
  // A short last pooled key stands for fewer tokens than g.
  const int64_t last_key_tokens = shape.kv_len - (nk - 1) * g;
  const float last_key_bias = std::log(static_cast<float>(last_key_tokens) / static_cast<float>(g));

  // Causal: pooled keys each pooled query row may see (see the top).
  std::vector<int64_t> visible;
  if (shape.causal) {
    visible.resize(static_cast<size_t>(nq));
    for (int64_t i = 0; i < nq; ++i) {
      const int64_t qb = i * gq / block;
      const int64_t last = shape.query_position0() + std::min((qb + 1) * block, shape.q_len) - 1;
      visible[static_cast<size_t>(i)] = last + 1 >= shape.kv_len ? nk : (last + 1) / g;
    }
  }
  // Pooled query rows per work item: a multiple of block / gq (both powers of
  // two), so that items own whole query blocks and write disjoint est rows.
  // The tile's tokens start on a query block, so every query width's pools
  // of the tile lie inside it.
  const int64_t rows_per_item = std::max(block / gq, kMinRowsPerItem);
  auto pool_tile = [&](int64_t h, int64_t i0, int rows) {
    pool_query_rows(q_pools, h, i0 * gq, std::min((i0 + rows) * gq, shape.q_len));
  };
  const detail::PrepareRowsFn fill = pool_tile;  // refers to pool_tile, which outlives the pass
  detail::key_softmax_rows(
      pooled, ConstTensorView::heads_major(q_pooled, shape.heads, nq, d), kv, rows_per_item,
      last_key_bias, visible, threads, [&](int64_t h, int64_t i0, int rows, const float* probs, int64_t ld) {
        std::vector<float> bm(static_cast<size_t>(k_blocks));
        for (int r = 0; r < rows; ++r) {
          fold_onto_key_blocks(probs + r * ld, nk, g, block, shape.kv_len, bm.data());
          // Add to the query block this pooled row lies in.
          const int64_t i = i0 + r;
          const int64_t qb = i * gq / block;
          const int64_t row_tokens = std::min(gq, shape.q_len - i * gq);
          const int64_t block_tokens = std::min(block, shape.q_len - qb * block);
          const float w = weight * static_cast<float>(row_tokens) / static_cast<float>(block_tokens);
          float* e = est + (h * q_blocks + qb) * k_blocks;
          for (int64_t kb = 0; kb < k_blocks; ++kb) e[kb] += w * bm[kb];
        }
      },
      fill_queries ? &fill : nullptr);
}

// Key blocks at the positions of query block qb (queries aligned to the end
// of the keys, clamped into [0, kv_len)).
void diagonal_blocks(const AttentionShape& shape, int64_t block, int64_t qb, int64_t& first,
                     int64_t& last) {
  const int64_t offset = shape.query_position0();
  const int64_t lo = qb * block + offset;
  const int64_t hi = std::min((qb + 1) * block, shape.q_len) + offset - 1;
  first = std::clamp<int64_t>(lo, 0, shape.kv_len - 1) / block;
  last = std::clamp<int64_t>(hi, 0, shape.kv_len - 1) / block;
}

// Sort key of key block kb: ascending keys give decreasing estimate, ties to
// the lower index (estimates are >= 0, so their bits order like their values).
uint64_t rank_key(float e, int64_t kb) {
  return (static_cast<uint64_t>(~std::bit_cast<uint32_t>(e)) << 32) | static_cast<uint64_t>(kb);
}

int64_t block_of(uint64_t key) { return static_cast<int64_t>(key & 0xffffffffu); }

// Smallest L such that mass + (the L highest estimates among keys[0, n))
// reaches target (n if none does); on return keys[0, L) hold those L blocks.
// A weighted quickselect: expected O(n), where a sort would be O(n log n).
int64_t threshold_prefix(uint64_t* keys, int64_t n, const float* est, double mass, double target) {
  int64_t lo = 0, hi = n;  // keys[0, lo) taken; the answer lies in [lo, hi]
  while (lo < hi && mass < target) {
    if (hi - lo == 1) {
      ++lo;
      break;
    }
    const int64_t mid = lo + (hi - lo) / 2;
    std::nth_element(keys + lo, keys + mid, keys + hi);  // keys[lo, mid): the range's highest
    double m = 0.0;
    for (int64_t i = lo; i < mid; ++i) m += est[block_of(keys[i])];
    if (mass + m >= target) {
      hi = mid;
    } else {
      mass += m;
      lo = mid;
    }
  }
  return lo;
}

// Marks the kept key blocks of one (head, query block) row in kept (k_blocks
// flags, zero on entry) and returns how many. k_blocks: the blocks the row
// may see (all, or under causality those up to its diagonal).
int64_t select_row(const float* est, int64_t k_blocks, int64_t diag_first, int64_t diag_last,
                   const UnisparseParams& p, std::vector<uint64_t>& keys, uint8_t* kept) {
  int64_t forced = 0;
  double forced_mass = 0.0;
  auto force = [&](int64_t kb) {
    if (!kept[kb]) {
      kept[kb] = 1;
      ++forced;
      forced_mass += est[kb];
    }
  };
  force(0);
  for (int64_t kb = diag_first; kb <= diag_last; ++kb) force(kb);

  int64_t n = 0;  // the other blocks, as rank keys
  for (int64_t kb = 0; kb < k_blocks; ++kb)
    if (!kept[kb]) keys[n++] = rank_key(est[kb], kb);
  int64_t take = 0;  // how many of the highest others to keep
  if (p.select == UnisparseParams::Select::topk) {
    const int64_t total = std::clamp<int64_t>(std::max(blocks_for_ratio(p.topk_ratio, k_blocks), p.min_blocks), 1,
                                              k_blocks);
    take = std::max<int64_t>(0, total - forced);
    if (take > 0 && take < n) std::nth_element(keys.begin(), keys.begin() + (take - 1), keys.begin() + n);
  } else {
    double total = 0.0;
    for (int64_t kb = 0; kb < k_blocks; ++kb) total += est[kb];
    take = threshold_prefix(keys.data(), n, est, forced_mass, p.tau * total);
    const int64_t min_take = std::min(n, std::max<int64_t>(0, p.min_blocks - forced));
    if (take < min_take) {
      std::nth_element(keys.begin() + take, keys.begin() + (min_take - 1), keys.begin() + n);
      take = min_take;
    }
  }
  for (int64_t i = 0; i < take; ++i) kept[block_of(keys[i])] = 1;
  return forced + take;
}

}  // namespace

BlockMask unisparse_select(const AttentionShape& shape, InputView q, InputView k,
                           const UnisparseParams& params, const KernelOptions& opts) {
  const detail::PhaseTimer timer(kWhere);
  validate_params(params);
  detail::check_input_views(kWhere, shape, q, k);  // V is not read
  detail::check_kernel_limits(kWhere, shape, params.block_size, params.block_size);
  const int threads = resolve_threads(opts);

  const int64_t block = params.block_size;
  const int64_t q_blocks = (shape.q_len + block - 1) / block;
  const int64_t k_blocks = (shape.kv_len + block - 1) / block;
  const int64_t rows = shape.heads * q_blocks;
  detail::CachedFloats est_buffer(static_cast<size_t>(rows * k_blocks));
  float* est = est_buffer.data();
  // Pool q and k once at the finest widths (the gcd of the granularities;
  // queries pool no wider than a block), then every granularity from those.
  TensorPools q_pools{q, {}, {}}, k_pools{k, {}, {}};
  double inv_g_sum = 0.0;
  for (const int64_t g : params.granularities) {
    k_pools.widths.push_back(g);
    q_pools.widths.push_back(std::min(g, block));
    inv_g_sum += 1.0 / static_cast<double>(g);
  }
  for (TensorPools* t : {&q_pools, &k_pools}) {
    std::vector<int64_t>& w = t->widths;
    std::sort(w.begin(), w.end());
    w.erase(std::unique(w.begin(), w.end()), w.end());
    const int64_t finest = std::accumulate(w.begin(), w.end(), int64_t{0}, [](int64_t a, int64_t b) {
      return std::gcd(a, b);
    });
    if (finest != w.front()) w.insert(w.begin(), finest);
  }
  allocate_pools(q_pools);
  std::optional<detail::PhaseTimer> phase(std::in_place, "pool keys");
  pool_keys(k_pools, std::span<float>(est, static_cast<size_t>(rows * k_blocks)), threads);
  phase.reset();
  for (size_t i = 0; i < params.granularities.size(); ++i) {
    const int64_t g = params.granularities[i];
    add_granularity_estimate(shape, q_pools, k_pools, g, block,
                             static_cast<float>(1.0 / static_cast<double>(g) / inv_g_sum), i == 0, threads, est);
  }

  // Select into per-row flags, then emit each row's blocks in ascending order.
  phase.emplace("select");
  detail::CachedFloats kept_buffer(static_cast<size_t>((rows * k_blocks + 3) / 4));
  auto* kept = reinterpret_cast<uint8_t*>(kept_buffer.data());  // per row, k_blocks flags
  BlockMask m{shape.heads, shape.q_len, shape.kv_len, block, block, {}, {}};
  m.row_ptr.assign(static_cast<size_t>(rows + 1), 0);
  detail::parallel_for(threads, rows, [&](int64_t begin, int64_t end) {
    std::vector<uint64_t> keys(static_cast<size_t>(k_blocks));
    std::fill(kept + begin * k_blocks, kept + end * k_blocks, uint8_t{0});
    for (int64_t r = begin; r < end; ++r) {
      int64_t first = 0, last = 0;
      diagonal_blocks(shape, block, r % q_blocks, first, last);
      const int64_t visible = shape.causal ? last + 1 : k_blocks;  // last: the block of the last query
      m.row_ptr[r + 1] = select_row(est + r * k_blocks, visible, first, last, params, keys, kept + r * k_blocks);
    }
  });
  phase.emplace("emit");
  for (int64_t r = 0; r < rows; ++r) m.row_ptr[r + 1] += m.row_ptr[r];
  m.col_idx.resize(static_cast<size_t>(m.row_ptr[rows]));
  detail::parallel_for(threads, rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const uint8_t* flags = kept + r * k_blocks;
      int32_t* out = m.col_idx.data() + m.row_ptr[r];
      for (int64_t kb = 0; kb < k_blocks; ++kb)
        if (flags[kb]) *out++ = static_cast<int32_t>(kb);
    }
  });
  // Valid by construction (ascending, unique, in range); BlockMask::validate
  // is left to the tests, it costs more than the selection at 1024 key blocks.
  return m;
}

}  // namespace spattn
