// Cached attention (spattn/kv_cache.hpp) on every ISA: a KVCache written in
// ranges and rows, queried by a block at an offset, by scattered rows, by one
// row (decode), bidirectional and causal, GQA, odd lengths, dense and on a
// block pattern, against the double reference over the whole sequence (whose
// rows the queries pick); split-KV against the unsplit path; the merge of
// partial states; and the argument rules.
//
// Tolerances: fp32 caches meet kFp32Bound. bf16 caches on ISAs with bf16 dot
// products round q and P to bf16 (an output element moves by at most
// 2^-8 x max|v|); the inputs here are bf16 values already.
#include <gtest/gtest.h>

#include <cstring>
#include <numeric>

#include "kernels/engine/kv_plan.hpp"
#include "test_util.hpp"

namespace spattn::test {
namespace {

class KvCache : public PerIsa {};
SPATTN_INSTANTIATE_PER_ISA(KvCache);

// A whole sequence (queries for every token) and its reference output.
struct Sequence {
  AttentionShape full;  // q_len == kv_len
  Qkv x;
  std::vector<double> ref;
  Sequence(int64_t heads, int64_t kv_heads, int64_t n, int64_t d, bool causal, uint64_t seed,
           const BlockMask* mask = nullptr)
      : full{heads, kv_heads, n, n, d}, x(with_causal(full, causal), seed) {
    full.causal = causal;
    for (Tensor* t : {&x.q, &x.k, &x.v})  // bf16 values: a bf16 cache holds them exactly
      for (float& f : t->data) f = to_float(to_bf16(f));
    ref = reference(x, mask);
  }
  static AttentionShape with_causal(AttentionShape s, bool causal) {
    s.causal = causal;
    return s;
  }
  // The queries of the listed rows, [heads][rows][d].
  Tensor queries(const std::vector<int32_t>& rows) const {
    Tensor q(full.heads, static_cast<int64_t>(rows.size()), full.head_dim);
    for (int64_t h = 0; h < full.heads; ++h)
      for (size_t i = 0; i < rows.size(); ++i)
        std::memcpy(q.view.row(h, static_cast<int64_t>(i)), x.q.view.row(h, rows[i]), full.head_dim * 4);
    return q;
  }
  // max |out - ref| over the rows, and max |ref| over them.
  std::pair<double, double> error(const Tensor& out, const std::vector<int32_t>& rows) const {
    double err = 0, mref = 0;
    for (int64_t h = 0; h < full.heads; ++h)
      for (size_t i = 0; i < rows.size(); ++i)
        for (int64_t c = 0; c < full.head_dim; ++c) {
          const double r = ref[(h * full.kv_len + rows[i]) * full.head_dim + c];
          const double o = out.view.row(h, static_cast<int64_t>(i))[c];
          err = std::isnan(o) ? INFINITY : std::max(err, std::fabs(o - r));
          mref = std::max(mref, std::fabs(r));
        }
    return {err, mref};
  }
  // A cache of dtype t holding the sequence, written in uneven pieces: a
  // range ending inside a block, one crossing several blocks, then the rest,
  // then some rows rewritten (with their own values, so nothing changes).
  KVCache cache(DType t, int64_t k_block = 0) const {
    KVCache c(full.kv_heads, full.kv_len + 13, full.head_dim, t, k_block);
    const int64_t n = full.kv_len, cuts[] = {0, std::min<int64_t>(n, 37), std::min<int64_t>(n, 37 + 150), n};
    for (int i = 0; i < 3; ++i) {
      if (cuts[i + 1] <= cuts[i]) continue;
      c.write(cuts[i], slice(x.k, cuts[i], cuts[i + 1]), slice(x.v, cuts[i], cuts[i + 1]));
    }
    std::vector<int32_t> rows;
    for (int32_t r = 3; r < n; r += 29) rows.push_back(r);
    Tensor k(full.kv_heads, static_cast<int64_t>(rows.size()), full.head_dim), v = k;
    for (int64_t h = 0; h < full.kv_heads; ++h)
      for (size_t i = 0; i < rows.size(); ++i) {
        std::memcpy(k.view.row(h, static_cast<int64_t>(i)), x.k.view.row(h, rows[i]), full.head_dim * 4);
        std::memcpy(v.view.row(h, static_cast<int64_t>(i)), x.v.view.row(h, rows[i]), full.head_dim * 4);
      }
    c.write_rows(rows, k, v);
    return c;
  }
  static InputView slice(const Tensor& t, int64_t a, int64_t b) {
    InputView s = t.view;
    s.data = t.view.row(0, a);
    s.tokens = b - a;
    return s;
  }
};

std::vector<int32_t> range_rows(int64_t first, int64_t n) {
  std::vector<int32_t> r(static_cast<size_t>(n));
  std::iota(r.begin(), r.end(), static_cast<int32_t>(first));
  return r;
}

std::vector<int32_t> scattered_rows(int64_t n, int64_t count, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> all = range_rows(0, n);
  std::shuffle(all.begin(), all.end(), rng);
  all.resize(static_cast<size_t>(std::min(n, count)));
  std::sort(all.begin(), all.end());
  return all;
}

// The bound for a cache of dtype t on the active ISA.
double bound(DType t, double max_ref, const Sequence& s) {
  double mv = 0;
  for (float f : s.x.v.data) mv = std::max(mv, double(std::fabs(f)));
  const bool bf16_products = t == DType::bf16 && detail::KVPlan(1, 16, 16, 16, DType::bf16, 1).format() ==
                                                     detail::PackFormat::bf16_pairs;
  return kFp32Bound * max_ref + (bf16_products ? 0x1p-8 * mv : 0.0);
}

struct Case {
  int64_t heads, kv_heads, n, d;
};
const Case kCases[] = {{4, 2, 333, 64}, {2, 1, 1100, 128}, {3, 3, 97, 32}, {1, 1, 2049, 16}};

TEST_P(KvCache, DenseQueriesAsBlockRowsOrOneRowMatchTheReference) {
  uint64_t seed = 1;
  for (const Case& c : kCases)
    for (bool causal : {false, true})
      for (DType t : {DType::fp32, DType::bf16, DType::fp16}) {
        const Sequence s(c.heads, c.kv_heads, c.n, c.d, causal, seed++);
        const KVCache cache = s.cache(t);
        ASSERT_EQ(cache.length(), c.n);
        const std::vector<std::vector<int32_t>> queries = {
            range_rows(c.n / 3, std::min<int64_t>(32, c.n - c.n / 3)), scattered_rows(c.n, 41, seed),
            range_rows(c.n - 1, 1), range_rows(0, 1), range_rows(c.n - 17, 17)};
        for (size_t qi = 0; qi < queries.size(); ++qi) {
          const std::vector<int32_t>& rows = queries[qi];
          AttentionShape shape = s.full;
          shape.q_len = static_cast<int64_t>(rows.size());
          const bool contiguous = rows.back() - rows.front() + 1 == shape.q_len;
          if (causal && contiguous) shape.q_offset = rows.front();
          CachedQueries cq;
          if (contiguous) cq.first = rows.front();
          else cq.rows = rows;
          const Tensor q = s.queries(rows);
          Tensor out(shape.heads, shape.q_len, shape.head_dim);
          cached_attention(shape, q, cache, out.view, cq);
          const auto [err, mref] = s.error(out, rows);
          EXPECT_LE(err, bound(t, mref, s)) << "n " << c.n << " causal " << causal << " " << dtype_name(t)
                                            << " query set " << qi;
        }
      }
}

TEST_P(KvCache, SplitKeysEqualTheUnsplitPathAndAnyThreadCount) {
  uint64_t seed = 100;
  for (const Case& c : kCases)
    for (bool causal : {false, true}) {
      const Sequence s(c.heads, c.kv_heads, c.n, c.d, causal, seed++);
      const KVCache cache = s.cache(DType::fp32);
      for (const std::vector<int32_t>& rows : {scattered_rows(c.n, 20, seed), range_rows(c.n - 32 > 0 ? c.n - 32 : 0, std::min<int64_t>(32, c.n))}) {
        AttentionShape shape = s.full;
        shape.q_len = static_cast<int64_t>(rows.size());
        CachedQueries cq;
        cq.rows = rows;
        const Tensor q = s.queries(rows);
        auto run = [&](int splits, int threads) {
          Tensor out(shape.heads, shape.q_len, shape.head_dim);
          std::vector<float> lse(static_cast<size_t>(shape.heads * shape.q_len));
          KernelOptions o;
          o.kv_splits = splits;
          o.threads = threads;
          cached_attention(shape, q, cache, out.view, cq, o, lse.data());
          return std::pair{out.data, lse};
        };
        const auto [one, lse1] = run(1, 2);
        for (int splits : {0, 2, 7, 64}) {
          const auto [split, lse_s] = run(splits, 2);
          double err = 0, m = 0;
          for (size_t i = 0; i < one.size(); ++i) {
            err = std::max(err, double(std::fabs(one[i] - split[i])));
            m = std::max(m, double(std::fabs(one[i])));
          }
          EXPECT_LE(err, 4e-6 * m) << "n " << c.n << " splits " << splits;
          for (size_t i = 0; i < lse1.size(); ++i) EXPECT_NEAR(lse1[i], lse_s[i], 1e-4 * (1 + std::fabs(lse1[i])));
        }
        // The automatic split depends on the shape only: any thread count, the same bits.
        EXPECT_EQ(run(0, 1).first, run(0, 2).first) << "n " << c.n;
        EXPECT_EQ(run(0, 1).first, run(0, 3).first) << "n " << c.n;
      }
    }
}

TEST_P(KvCache, CacheEqualsAFreshPackingBitForBit) {
  // The cache's packed K/V (written in pieces and rows) are what a call's
  // own packing makes: cached and plain dense attention agree exactly.
  uint64_t seed = 200;
  for (const Case& c : kCases)
    for (DType t : {DType::fp32, DType::bf16}) {
      const Sequence s(c.heads, c.kv_heads, c.n, c.d, false, seed++);
      const KVCache cache = s.cache(t);
      const std::vector<int32_t> rows = range_rows(c.n / 2, std::min<int64_t>(40, c.n - c.n / 2));
      AttentionShape shape = s.full;
      shape.q_len = static_cast<int64_t>(rows.size());
      const Tensor q = s.queries(rows);
      std::vector<uint16_t> kb(s.x.k.data.size()), vb(kb.size());
      for (size_t i = 0; i < kb.size(); ++i) {
        kb[i] = to_bf16(s.x.k.data[i]).bits;
        vb[i] = to_bf16(s.x.v.data[i]).bits;
      }
      const TensorView& kv = s.x.k.view;
      const InputView k = t == DType::fp32 ? InputView(s.x.k) : InputView(kb.data(), DType::bf16, kv.heads, kv.tokens, kv.head_dim, kv.head_stride, kv.token_stride);
      const InputView v = t == DType::fp32 ? InputView(s.x.v) : InputView(vb.data(), DType::bf16, kv.heads, kv.tokens, kv.head_dim, kv.head_stride, kv.token_stride);
      for (int splits : {1, 3}) {
        KernelOptions o;
        o.kv_splits = splits;
        o.q_tile_rows = 64;
        Tensor a(shape.heads, shape.q_len, shape.head_dim), b = a;
        cached_attention(shape, q, cache, a.view, {}, o);
        o.k_block = cache.k_block();
        dense_attention(shape, q, k, v, b.view, o);
        EXPECT_EQ(a.data, b.data) << "n " << c.n << " " << dtype_name(t) << " splits " << splits;
      }
    }
}

// A random mask over the whole sequence (each block with probability 0.4,
// the diagonal always; causal: no block past the diagonal).
BlockMask random_mask(int64_t heads, int64_t n, int64_t qb, int64_t kb, bool causal, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::vector<int32_t>> rows;
  const int64_t qbs = (n + qb - 1) / qb, kbs = (n + kb - 1) / kb;
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t r = 0; r < qbs; ++r) {
      std::vector<int32_t> row;
      const int64_t last = std::min(n, (r + 1) * qb) - 1;
      for (int64_t b = 0; b < kbs; ++b) {
        if (causal && b * kb > last) break;
        if (b == last / kb || rng() % 5 < 2) row.push_back(static_cast<int32_t>(b));
      }
      rows.push_back(row);
    }
  return BlockMask::from_rows(heads, n, n, qb, kb, rows);
}

TEST_P(KvCache, SparseQueriesUseTheMaskRowsOfTheirPositions) {
  uint64_t seed = 300;
  for (const Case& c : kCases)
    for (bool causal : {false, true})
      for (const auto& [qb, kb] : {std::pair<int64_t, int64_t>{64, 64}, {32, 128}})
        for (DType t : {DType::fp32, DType::bf16}) {
          const BlockMask mask = random_mask(c.heads, c.n, qb, kb, causal, seed);
          const Sequence s(c.heads, c.kv_heads, c.n, c.d, causal, seed++, &mask);
          const KVCache cache = s.cache(t);
          for (const std::vector<int32_t>& rows :
               {scattered_rows(c.n, 50, seed), range_rows(c.n / 2, std::min<int64_t>(32, c.n - c.n / 2))}) {
            AttentionShape shape = s.full;
            shape.q_len = static_cast<int64_t>(rows.size());
            CachedQueries cq;
            cq.rows = rows;
            const Tensor q = s.queries(rows);
            Tensor out(shape.heads, shape.q_len, shape.head_dim);
            cached_block_sparse_attention(shape, q, cache, mask, out.view, cq);
            const auto [err, mref] = s.error(out, rows);
            EXPECT_LE(err, bound(t, mref, s)) << "n " << c.n << " causal " << causal << " blocks " << qb << "/" << kb;
          }
        }
}

TEST_P(KvCache, TruncateThenRewriteServesTheNewTokens) {
  const Sequence a(2, 1, 300, 64, false, 7), b(2, 1, 300, 64, false, 8);
  KVCache cache = a.cache(DType::fp32);
  cache.truncate(100);
  EXPECT_EQ(cache.length(), 100);
  cache.write(100, Sequence::slice(b.x.k, 100, 300), Sequence::slice(b.x.v, 100, 300));
  cache.write(0, Sequence::slice(b.x.k, 0, 100), Sequence::slice(b.x.v, 0, 100));
  const std::vector<int32_t> rows = range_rows(250, 30);
  AttentionShape shape = b.full;
  shape.q_len = 30;
  Tensor out(2, 30, 64);
  cached_attention(shape, b.queries(rows), cache, out.view);
  const auto [err, mref] = b.error(out, rows);
  EXPECT_LE(err, kFp32Bound * mref);
}

TEST(KvCacheMerge, PartsOverKeyHalvesMergeToTheWholeAttention) {
  const AttentionShape s{3, 1, 21, 300, 64};
  const Qkv x(s, 11);
  Tensor whole(3, 21, 64);
  dense_attention(s, x.q, x.k, x.v, whole.view);
  // Keys [0, 120) and [120, 300) in two calls, then the merge.
  std::vector<AttentionPart> parts;
  std::vector<Tensor> outs;
  std::vector<std::vector<float>> lses;
  outs.reserve(2);
  for (const auto& [a, b] : {std::pair<int64_t, int64_t>{0, 120}, {120, 300}}) {
    AttentionShape p = s;
    p.kv_len = b - a;
    InputView k = x.k, v = x.v;
    k.data = x.k.view.row(0, a);
    v.data = x.v.view.row(0, a);
    k.tokens = v.tokens = p.kv_len;
    outs.emplace_back(3, 21, 64);
    lses.emplace_back(static_cast<size_t>(3 * 21));
    dense_attention_with_lse(p, x.q, k, v, outs.back().view, lses.back().data());
  }
  // A third part that saw no key changes nothing.
  outs.emplace_back(3, 21, 64);
  lses.emplace_back(static_cast<size_t>(3 * 21), -INFINITY);
  for (size_t i = 0; i < outs.size(); ++i) parts.push_back({outs[i].view, lses[i].data()});
  Tensor merged(3, 21, 64);
  std::vector<float> lse(3 * 21);
  merge_attention_states(parts, merged.view, lse.data());
  EXPECT_LE(max_rel_error(merged, reference(x), s), kFp32Bound);
  std::vector<float> lse_whole(3 * 21);
  dense_attention_with_lse(s, x.q, x.k, x.v, whole.view, lse_whole.data());
  for (size_t i = 0; i < lse.size(); ++i) EXPECT_NEAR(lse[i], lse_whole[i], 1e-5 * (1 + std::fabs(lse_whole[i])));
  // Every part empty: zeros and -inf; a NaN LSE: a NaN row, never garbage.
  std::vector<AttentionPart> empty = {parts.back(), parts.back()};
  merge_attention_states(empty, merged.view, lse.data());
  for (float f : merged.data) EXPECT_EQ(f, 0.0f);
  for (float l : lse) EXPECT_EQ(l, -INFINITY);
  lses[0][5] = NAN;
  merge_attention_states(parts, merged.view, lse.data());
  EXPECT_TRUE(std::isnan(merged.view.row(0, 5)[0]));
  EXPECT_TRUE(std::isnan(lse[5]));
  EXPECT_FALSE(std::isnan(merged.view.row(0, 6)[0]));
}

TEST(KvCacheErrors, BadArgumentsAreRefusedByName) {
  expect_error([] { KVCache(0, 10, 64, DType::fp32); }, {"kv_heads"});
  expect_error([] { KVCache(1, 10, 60, DType::fp32); }, {"head_dim", "60"});
  expect_error([] { KVCache(1, 10, 64, DType::fp32, 48); }, {"k_block", "48"});
  KVCache c(2, 100, 64, DType::fp32);
  Tensor k(2, 10, 64), v(2, 10, 64), q(4, 10, 64), out(4, 10, 64);
  expect_error([&] { c.write(5, k, v); }, {"first", "5", "gap"});
  c.write(0, k, v);
  Tensor big(2, 91, 64);
  expect_error([&] { c.write(10, big, big); }, {"k.tokens", "101", "capacity() 100"});
  const std::vector<int32_t> bad = {3, 2};
  Tensor k2(2, 2, 64), v2(2, 2, 64);
  expect_error([&] { c.write_rows(bad, k2, v2); }, {"positions[1]", "increasing"});
  const std::vector<int32_t> past = {3, 10};
  expect_error([&] { c.write_rows(past, k2, v2); }, {"positions[1]", "10", "length"});
  expect_error([&] { c.truncate(11); }, {"truncate", "11"});
  AttentionShape s{4, 2, 10, 11, 64};
  expect_error([&] { cached_attention(s, q, c, out.view); }, {"kv_len", "11", "length() 10"});
  s.kv_len = 10;
  CachedQueries cq;
  cq.first = 3;
  expect_error([&] { cached_attention(s, q, c, out.view, cq); }, {"queries.first", "3"});
  const std::vector<int32_t> rows = {0, 1, 2};
  cq = {};
  cq.rows = rows;
  expect_error([&] { cached_attention(s, q, c, out.view, cq); }, {"queries.rows", "3 positions"});
  const BlockMask m = BlockMask::dense(4, 10, 10, 16, 16);
  s.q_len = 10;
  expect_error([&] { cached_block_sparse_attention(s, q, c, m, out.view); }, {"mask.k_block", "16", "64"});
  KernelOptions o;
  o.kv_splits = -1;
  expect_error([&] { cached_attention(s, q, c, out.view, {}, o); }, {"kv_splits", "-1"});
  Tensor other(4, 9, 64);
  std::vector<float> lse(40);
  const std::vector<AttentionPart> parts = {{other.view, lse.data()}};
  expect_error([&] { merge_attention_states(parts, out.view); }, {"parts[0].out", "shape"});
}

}  // namespace
}  // namespace spattn::test
