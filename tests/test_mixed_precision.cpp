// bf16 / f16 inputs and bf16 outputs: conversions, then every kernel path on
// every ISA against the double reference on the same rounded inputs.
//
// Tolerances. Where k/v are bf16 and the ISA has bf16 dot products, q is
// rounded to bf16 and so is P before the PV product; the products are exact
// and accumulate in fp32. The rounding of P moves each probability by at most
// 2^-8 of itself, so an output element moves by at most 2^-8 x max|v| (the
// weights sum to 1); a bf16 output adds another 2^-8 x |out|. Elsewhere the
// inputs are widened exactly and the fp32 kernels run: their results equal
// those on fp32 copies of the rounded inputs bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "kernels/kernel_table.hpp"
#include "kernels/engine/engine.hpp"
#include "test_util.hpp"

namespace spattn::test {
namespace {

TEST(Dtype, NamesParseAndRoundTrip) {
  for (DType t : {DType::fp32, DType::bf16, DType::fp16}) EXPECT_EQ(parse_dtype(dtype_name(t)), t);
  EXPECT_EQ(parse_dtype("BFloat16"), DType::bf16);
  EXPECT_EQ(parse_dtype("fp16"), DType::fp16);
  expect_error([] { parse_dtype("int8"); }, {"dtype", "int8", "fp32, bf16 or fp16"});
  EXPECT_EQ(dtype_bytes(DType::fp32), 4);
  EXPECT_EQ(dtype_bytes(DType::bf16), 2);
}

TEST(Dtype, EveryBf16AndF16PatternRoundTrips) {
  for (uint32_t b = 0; b < 65536; ++b) {
    const uint16_t bits = static_cast<uint16_t>(b);
    const float fb = to_float(bf16_t{bits}), fh = to_float(fp16_t{bits});
    if (std::isnan(fb)) EXPECT_TRUE(std::isnan(to_float(to_bf16(fb))));
    else EXPECT_EQ(to_bf16(fb).bits, bits) << b;
    if (std::isnan(fh)) EXPECT_TRUE(std::isnan(to_float(to_fp16(fh))));
    else EXPECT_EQ(to_fp16(fh).bits, bits) << b;
  }
}

TEST(Dtype, NarrowingRoundsToNearestEven) {
  EXPECT_EQ(to_float(to_bf16(1.0f + 0x1p-8f)), 1.0f);                 // tie: to even
  EXPECT_EQ(to_float(to_bf16(1.0f + 3 * 0x1p-8f)), 1.0f + 0x1p-6f);  // tie: up to even
  EXPECT_EQ(to_float(to_bf16(1.0f + 0x1p-8f + 0x1p-20f)), 1.0f + 0x1p-7f);
  EXPECT_EQ(to_float(to_fp16(65504.0f)), 65504.0f);
  EXPECT_EQ(to_float(to_fp16(65519.0f)), 65504.0f);
  EXPECT_TRUE(std::isinf(to_float(to_fp16(65520.0f))));
  EXPECT_EQ(to_float(to_fp16(0x1p-24f)), 0x1p-24f);  // smallest subnormal
  EXPECT_EQ(to_float(to_fp16(0x1p-25f)), 0.0f);      // tie: to even (zero)
  EXPECT_EQ(to_float(to_fp16(3 * 0x1p-25f)), 0x1p-23f);
  EXPECT_EQ(to_float(to_fp16(-1.0f / 3.0f)), -0.333251953125f);
  // Against the exhaustive nearest value for random floats in the f16 range.
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-70000.0f, 70000.0f);
  for (int i = 0; i < 20000; ++i) {
    const float x = i % 2 ? u(rng) : u(rng) * 1e-5f;
    const uint16_t r = to_fp16(x).bits;
    if (std::isinf(to_float(fp16_t{r}))) continue;
    const double err = std::fabs(double(x) - to_float(fp16_t{r}));
    for (int step : {-1, 1}) {
      const float nb = to_float(fp16_t{static_cast<uint16_t>(r + step)});
      if (!std::isfinite(nb)) continue;
      EXPECT_LE(err, std::fabs(double(x) - nb)) << x;
    }
  }
}

// A tensor's values in dtype t, and the same values widened to fp32.
struct Typed {
  std::vector<uint16_t> bits;
  Tensor wide;
  InputView view;
  Typed(const Tensor& src, DType t) : wide(src) {
    if (t == DType::fp32) {
      view = wide.view;
      return;
    }
    bits.resize(src.data.size());
    for (size_t i = 0; i < bits.size(); ++i) {
      bits[i] = t == DType::bf16 ? to_bf16(src.data[i]).bits : to_fp16(src.data[i]).bits;
      wide.data[i] = t == DType::bf16 ? to_float(bf16_t{bits[i]}) : to_float(fp16_t{bits[i]});
    }
    const TensorView& w = src.view;
    view = InputView(bits.data(), t, w.heads, w.tokens, w.head_dim, w.head_stride, w.token_stride);
  }
};

Tensor rounded_to_bf16(const Tensor& t) {
  Tensor r(t);
  for (float& x : r.data) x = to_float(to_bf16(x));
  return r;
}

// One case: q in q_type, k/v in kv_type, and the fp32 inputs the kernels
// compute on (rounded as the active ISA's path rounds them).
struct Case {
  Qkv x;
  Typed q, k, v;
  bool bf16_path;
  Qkv effective;
  Case(const AttentionShape& s, uint64_t seed, DType q_type, DType kv_type, float qk_std = 1.0f)
      : x(s, seed, qk_std), q(x.q, q_type), k(x.k, kv_type), v(x.v, kv_type),
        bf16_path(kv_type == DType::bf16 && detail::active_kernels().has_bf16()), effective(x) {
    effective.q = bf16_path ? rounded_to_bf16(q.wide) : q.wide;
    effective.k = k.wide;
    effective.v = v.wide;
  }
  double max_abs_v() const {
    double m = 0;
    for (float f : v.wide.data) m = std::max(m, double(std::fabs(f)));
    return m;
  }
};

// max |out - ref| over all outputs; out is fp32 or bf16 of the given layout.
double max_abs_error(const void* out, DType t, const std::vector<double>& ref, const AttentionShape& s) {
  double e = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double o = t == DType::fp32 ? static_cast<const float*>(out)[i]
                                     : to_float(bf16_t{static_cast<const uint16_t*>(out)[i]});
    if (std::isnan(o)) return INFINITY;
    e = std::max(e, std::fabs(o - ref[i]));
  }
  (void)s;
  return e;
}

double max_abs(const std::vector<double>& ref) {
  double m = 0;
  for (double r : ref) m = std::max(m, std::fabs(r));
  return m;
}

// The bound for this case's path (see the file comment).
double bound(const Case& c, DType out_type, const std::vector<double>& ref) {
  const double fp32 = kFp32Bound * max_abs(ref);
  const double p_rounding = c.bf16_path ? 0x1p-8 * c.max_abs_v() : 0.0;
  const double out_rounding = out_type == DType::bf16 ? 0x1p-8 * max_abs(ref) : 0.0;
  return fp32 + p_rounding + out_rounding;
}

class MixedPrecision : public PerIsa {};
SPATTN_INSTANTIATE_PER_ISA(MixedPrecision);

const DType kTypes[] = {DType::fp32, DType::bf16, DType::fp16};

TEST_P(MixedPrecision, DenseEveryTypeComboOnOddShapesAndGqa) {
  const AttentionShape shapes[] = {{4, 2, 77, 131, 64}, {2, 1, 33, 45, 128}, {3, 3, 1, 70, 32}};
  uint64_t seed = 10;
  for (const AttentionShape& s : shapes)
    for (DType qt : kTypes)
      for (DType kvt : kTypes)
        for (DType ot : {DType::fp32, DType::bf16}) {
          Case c(s, seed++, qt, kvt);
          std::vector<uint16_t> out16(static_cast<size_t>(s.heads * s.q_len * s.head_dim));
          Tensor out32(s.heads, s.q_len, s.head_dim);
          const OutputView out = ot == DType::fp32 ? OutputView(out32.view)
                                                  : OutputView(out16.data(), DType::bf16, s.heads, s.q_len,
                                                               s.head_dim, s.q_len * s.head_dim, s.head_dim);
          KernelOptions o;
          o.q_tile_rows = 32;
          o.k_block = 32;
          dense_attention(s, c.q.view, c.k.view, c.v.view, out, o);
          const std::vector<double> ref = reference(c.effective);
          const void* data = ot == DType::fp32 ? static_cast<const void*>(out32.data.data()) : out16.data();
          EXPECT_LE(max_abs_error(data, ot, ref, s), bound(c, ot, ref))
              << "q " << dtype_name(qt) << " kv " << dtype_name(kvt) << " out " << dtype_name(ot) << " kv_len "
              << s.kv_len;
          if (!c.bf16_path && ot == DType::fp32) {  // widened: the fp32 kernels' result, bit for bit
            Tensor fp32(s.heads, s.q_len, s.head_dim);
            dense_attention(s, c.effective.q, c.effective.k, c.effective.v, fp32.view, o);
            EXPECT_EQ(0, std::memcmp(fp32.data.data(), out32.data.data(), out32.data.size() * 4));
          }
        }
}

TEST_P(MixedPrecision, Bf16DenseWithLongKeyBlocks) {
  // k_block 256 / 512 (dense only): the bf16 path's P rows, tile loops and
  // odd key tails at those widths, against the double reference; and 16
  // (no AMX tile part: 8 key pairs per block) and 64 for comparison.
  const AttentionShape s{2, 1, 67, 1041, 128};
  uint64_t seed = 90;
  for (int64_t kb : {16, 64, 256, 512})
    for (int64_t qt : {32, 128}) {
      Case c(s, seed++, DType::bf16, DType::bf16);
      Tensor out(s.heads, s.q_len, s.head_dim);
      KernelOptions o;
      o.q_tile_rows = qt;
      o.k_block = kb;
      dense_attention(s, c.q.view, c.k.view, c.v.view, out.view, o);
      const std::vector<double> ref = reference(c.effective);
      EXPECT_LE(max_abs_error(out.data.data(), DType::fp32, ref, s), bound(c, DType::fp32, ref))
          << "k_block " << kb << " q_tile " << qt;
    }
}

TEST_P(MixedPrecision, DefaultTilesAreTheIsasPreferredOnes) {
  // KernelOptions' 0 tiles: the fp32 kernels' 128 x 64 on x86 (64 x 64 on
  // scalar and NEON), the bf16 path's 64 x 512 on AMX (64 x 64 elsewhere;
  // bf16 without a bf16 path runs the fp32 kernels); the default call is the
  // explicit call with those tiles, bit for bit, and stays within the bound
  // of its path (odd lengths, GQA).
  const Isa isa = GetParam();
  const bool x86 = isa == Isa::avx2 || isa == Isa::avx512 || isa == Isa::avx512_bf16 || isa == Isa::amx;
  const TileSizes fp32 = x86 ? TileSizes{128, 64} : TileSizes{64, 64};
  EXPECT_EQ(preferred_tiles(DType::fp32), fp32);
  EXPECT_EQ(preferred_tiles(DType::fp16), fp32);
  const bool bf16_path = detail::active_kernels().has_bf16();
  const TileSizes bf16 = isa == Isa::amx ? TileSizes{64, 512} : (bf16_path ? TileSizes{64, 64} : fp32);
  EXPECT_EQ(preferred_tiles(DType::bf16), bf16);
  KernelOptions half;
  half.k_block = 128;  // one tile given, the other preferred
  EXPECT_EQ(resolve_tiles(half, DType::bf16).k_block, 128);
  EXPECT_EQ(resolve_tiles(half, DType::bf16).q_tile_rows, preferred_tiles(DType::bf16).q_tile_rows);
  const AttentionShape s{4, 2, 101, 1100, 128};
  uint64_t seed = 70;
  for (DType kvt : kTypes) {
    Case c(s, seed++, kvt, kvt);
    Tensor by_default(s.heads, s.q_len, s.head_dim), explicit_tiles(s.heads, s.q_len, s.head_dim);
    dense_attention(s, c.q.view, c.k.view, c.v.view, by_default.view);
    const TileSizes t = preferred_tiles(kvt);
    KernelOptions o;
    o.q_tile_rows = t.q_tile_rows;
    o.k_block = t.k_block;
    dense_attention(s, c.q.view, c.k.view, c.v.view, explicit_tiles.view, o);
    EXPECT_EQ(by_default.data, explicit_tiles.data) << dtype_name(kvt);
    const std::vector<double> ref = reference(c.effective);
    EXPECT_LE(max_abs_error(by_default.data.data(), DType::fp32, ref, s), bound(c, DType::fp32, ref))
        << dtype_name(kvt);
  }
}

TEST_P(MixedPrecision, Bf16PathRoundsPWhereTheIsaHasIt) {
  // The documented dispatch: on avx512_bf16, bf16 k/v run the bf16 kernels
  // (results differ from the widened fp32 kernels by P's rounding); nowhere
  // else do they.
  const AttentionShape s{2, 2, 64, 200, 64};
  Case c(s, 3, DType::bf16, DType::bf16);
  Tensor a(s.heads, s.q_len, s.head_dim), b(s.heads, s.q_len, s.head_dim);
  dense_attention(s, c.q.view, c.k.view, c.v.view, a.view);
  dense_attention(s, c.q.wide, c.k.wide, c.v.wide, b.view);
  const bool same = std::memcmp(a.data.data(), b.data.data(), a.data.size() * 4) == 0;
  EXPECT_EQ(same, GetParam() != Isa::avx512_bf16 && GetParam() != Isa::amx && GetParam() != Isa::neon_bf16);
}

TEST_P(MixedPrecision, HugeLogitsAndBitwiseIdenticalThreads) {
  // Logits of order 1e4: no overflow, and the same result as the fp32 kernels
  // on the rounded inputs (fp32 logits that large carry absolute errors of
  // 1e-2 whatever the dtype, so the double reference is not the yardstick;
  // the fp32 kernels are tested against it on such inputs in test_attention).
  const AttentionShape s{2, 2, 70, 90, 64};
  for (DType kvt : {DType::bf16, DType::fp16}) {
    Case c(s, 42, kvt, kvt, 30.0f);
    Tensor one(s.heads, s.q_len, s.head_dim), two(s.heads, s.q_len, s.head_dim), fp32(s.heads, s.q_len, s.head_dim);
    KernelOptions o;
    o.threads = 1;
    dense_attention(s, c.q.view, c.k.view, c.v.view, one.view, o);
    o.threads = 2;
    dense_attention(s, c.q.view, c.k.view, c.v.view, two.view, o);
    EXPECT_EQ(0, std::memcmp(one.data.data(), two.data.data(), one.data.size() * 4)) << dtype_name(kvt);
    dense_attention(s, c.effective.q, c.effective.k, c.effective.v, fp32.view, o);
    double err = 0, mx = 0;
    for (size_t i = 0; i < one.data.size(); ++i) {
      ASSERT_TRUE(std::isfinite(one.data[i]));
      err = std::max(err, double(std::fabs(one.data[i] - fp32.data[i])));
      mx = std::max(mx, double(std::fabs(fp32.data[i])));
    }
    EXPECT_LE(err, kFp32Bound * mx + (c.bf16_path ? 0x1p-8 * c.max_abs_v() : 0.0)) << dtype_name(kvt);
  }
}

TEST_P(MixedPrecision, BlockSparseWithEmptyRowsAndGathered) {
  const AttentionShape s{4, 2, 100, 150, 64};
  std::vector<std::vector<int32_t>> rows;
  std::mt19937 rng(4);
  for (int64_t r = 0; r < s.heads * 4; ++r) {
    std::vector<int32_t> row;
    if (r % 5 != 3)  // every fifth row is fully masked: zeros
      for (int32_t b = 0; b < 5; ++b)
        if (rng() % 2) row.push_back(b);
    rows.push_back(row);
  }
  const BlockMask mask = BlockMask::from_rows(s.heads, s.q_len, s.kv_len, 32, 32, rows);
  const std::vector<int32_t> kept{0, 1, 5, 31, 32, 33, 90, 149};
  for (DType kvt : kTypes) {
    Case c(s, 7, DType::fp32, kvt);
    Tensor out(s.heads, s.q_len, s.head_dim);
    block_sparse_attention(s, c.q.view, c.k.view, c.v.view, mask, out.view);
    std::vector<double> ref = reference(c.effective, &mask);
    EXPECT_LE(max_abs_error(out.data.data(), DType::fp32, ref, s), bound(c, DType::fp32, ref)) << dtype_name(kvt);
    for (int64_t h = 0; h < s.heads; ++h)  // fully masked rows: exact zeros
      for (int64_t t = 96; t < 100; ++t)
        if ((h * 4 + 3) % 5 == 3) {
          EXPECT_EQ(out.view.row(h, t)[0], 0.0f);
        }
    gathered_attention(s, c.q.view, c.k.view, c.v.view, kept, out.view);
    ref = reference(c.effective, nullptr, kept);
    EXPECT_LE(max_abs_error(out.data.data(), DType::fp32, ref, s), bound(c, DType::fp32, ref)) << dtype_name(kvt);
  }
}

// Softmax steps over several key blocks (QueryBlockJob::group; AMX groups
// bf16 blocks to 512 keys): block-sparse rows with gaps, empty rows and a
// short last block, and causal dense, against the double reference, on both
// paths and every ISA.
TEST_P(MixedPrecision, GroupedSoftmaxStepsMatchTheReference) {
  struct StepKeys {
    explicit StepKeys(int k) { detail::set_softmax_step_keys_for_testing(k); }
    ~StepKeys() { detail::set_softmax_step_keys_for_testing(0); }
  };
  const AttentionShape s{4, 2, 100, 301, 64};  // 10 key blocks of 32, the last of 13 keys
  std::vector<std::vector<int32_t>> rows;
  std::mt19937 rng(8);
  for (int64_t r = 0; r < s.heads * 4; ++r) {
    std::vector<int32_t> row;
    if (r % 7 != 2)
      for (int32_t b = 0; b < 10; ++b)
        if (rng() % 3 != 0 || b == 9) row.push_back(b);
    rows.push_back(row);
  }
  const BlockMask mask = BlockMask::from_rows(s.heads, s.q_len, s.kv_len, 32, 32, rows);
  AttentionShape causal = s;
  causal.causal = true;
  uint64_t seed = 300;
  for (const int step_keys : {96, 128, 256}) {
    const StepKeys forced(step_keys);
    for (DType kvt : kTypes) {
      Case c(s, seed++, DType::fp32, kvt);
      Tensor out(s.heads, s.q_len, s.head_dim);
      block_sparse_attention(s, c.q.view, c.k.view, c.v.view, mask, out.view);
      std::vector<double> ref = reference(c.effective, &mask);
      EXPECT_LE(max_abs_error(out.data.data(), DType::fp32, ref, s), bound(c, DType::fp32, ref))
          << dtype_name(kvt) << " step " << step_keys;
      KernelOptions o;
      o.q_tile_rows = o.k_block = 32;
      Case cc(causal, seed++, kvt, kvt);
      dense_attention(causal, cc.q.view, cc.k.view, cc.v.view, out.view, o);
      ref = reference(cc.effective);
      EXPECT_LE(max_abs_error(out.data.data(), DType::fp32, ref, causal), bound(cc, DType::fp32, ref))
          << "causal " << dtype_name(kvt) << " step " << step_keys;
    }
  }
}

TEST_P(MixedPrecision, RecordMassAndLseOnTypedInputs) {
  const AttentionShape s{2, 1, 96, 160, 64};
  for (DType kvt : {DType::bf16, DType::fp16}) {
    Case c(s, 11, kvt, kvt);
    const BlockMass typed = block_attention_mass(s, c.q.view, c.k.view, 32, 32);
    const BlockMass wide = block_attention_mass(s, c.effective.q, c.effective.k, 32, 32);
    ASSERT_EQ(typed.mass.size(), wide.mass.size());
    // Same logits up to fp32 summation order: the masses agree to 1e-5.
    for (size_t i = 0; i < typed.mass.size(); ++i) EXPECT_NEAR(typed.mass[i], wide.mass[i], 1e-5) << i;
    std::vector<float> lse_t(static_cast<size_t>(s.heads * s.q_len)), lse_w(lse_t.size());
    Tensor o1(s.heads, s.q_len, s.head_dim), o2(s.heads, s.q_len, s.head_dim);
    dense_attention_with_lse(s, c.q.view, c.k.view, c.v.view, o1.view, lse_t.data());
    dense_attention_with_lse(s, c.effective.q, c.effective.k, c.effective.v, o2.view, lse_w.data());
    for (size_t i = 0; i < lse_t.size(); ++i) EXPECT_NEAR(lse_t[i], lse_w[i], 1e-4) << i;
  }
}

// SparseD's fused record step (flash with block sums) and plain flash give
// bitwise the same output and LSE on bf16 inputs too (the record step's
// masses rely on it): several softmax steps, an odd last block, full and
// partial 16-row groups, forced step widths.
TEST_P(MixedPrecision, Bf16FlashAndFusedRecordAgreeBitwise) {
  struct ResetSteps {
    ~ResetSteps() { detail::set_softmax_step_keys_for_testing(0); }
  } reset;
  for (const int step_keys : {0, 128})
    for (const AttentionShape s : {AttentionShape{2, 1, 96, 1101, 64}, AttentionShape{1, 1, 40, 700, 128}}) {
      detail::set_softmax_step_keys_for_testing(step_keys);
      Case c(s, 21, DType::bf16, DType::bf16);
      for (const int64_t b : {32, 64}) {
        const detail::KVPlan kv(s, c.k.view, c.v.view, b, 2);
        const int64_t qbs = (s.q_len + b - 1) / b;
        Tensor out(s.heads, s.q_len, s.head_dim), ref(s.heads, s.q_len, s.head_dim);
        std::vector<float> lse(static_cast<size_t>(s.heads * s.q_len)), lse_ref(lse.size());
        std::vector<float> mass(static_cast<size_t>(s.heads * qbs * kv.k_blocks()));
        detail::attend_with_block_mass(s, c.q.view, kv, out.view, b, 2, lse.data(), mass.data());
        const std::vector<int32_t> all = detail::all_key_blocks(kv);
        // The unsplit flash pass (the fused pass never splits the keys).
        detail::attend(s, c.q.view, kv, ref.view, b, [&](int64_t, int64_t) { return std::span<const int32_t>(all); },
                       2, detail::AttendExtras{lse_ref.data(), nullptr, {}, 1});
        EXPECT_EQ(out.data, ref.data) << "block " << b << " step keys " << step_keys;
        EXPECT_EQ(lse, lse_ref) << "block " << b << " step keys " << step_keys;
        const std::vector<double> want = reference(c.effective);
        EXPECT_LE(max_abs_error(ref.data.data(), DType::fp32, want, s), bound(c, DType::fp32, want));
      }
    }
}

TEST_P(MixedPrecision, UnisparseSelectsTheSameBlocksFromTypedAndWidenedInputs) {
  const AttentionShape s{2, 2, 256, 256, 64};
  Case c(s, 12, DType::bf16, DType::bf16, 2.0f);
  UnisparseParams p;
  p.block_size = 32;
  const BlockMask a = unisparse_select(s, c.q.view, c.k.view, p);
  const BlockMask b = unisparse_select(s, c.q.wide, c.k.wide, p);  // pooling widens exactly: same estimate
  EXPECT_EQ(a.row_ptr, b.row_ptr);
  EXPECT_EQ(a.col_idx, b.col_idx);
}

TEST_P(MixedPrecision, SessionStepsOnBf16ViewsMatchTheReferenceOfTheirMask) {
  const AttentionShape s{2, 2, 128, 128, 64};
  Case c(s, 13, DType::bf16, DType::bf16, 2.0f);
  SessionConfig cfg;
  cfg.total_steps = 4;
  cfg.block_size = 32;
  cfg.topk_ratio = 0.5;
  DiffusionAttention session(s, cfg);
  std::vector<uint16_t> out16(static_cast<size_t>(s.heads * s.q_len * s.head_dim));
  const OutputView out(out16.data(), DType::bf16, s.heads, s.q_len, s.head_dim, s.q_len * s.head_dim, s.head_dim);
  for (int i = 0; i < 4; ++i) {
    const StepReport r = session.step(c.q.view, c.k.view, c.v.view, out);
    const std::vector<double> ref = reference(c.effective, session.last_mask());
    EXPECT_LE(max_abs_error(out16.data(), DType::bf16, ref, s), bound(c, DType::bf16, ref)) << i;
    if (i == 3) {
      EXPECT_EQ(r.path, StepPath::sparse_cached);
    }
  }
}

TEST(MixedPrecisionArgs, TypeRulesAreCheckedWithClearErrors) {
  const AttentionShape s{2, 2, 16, 16, 16};
  Case c(s, 1, DType::fp32, DType::bf16);
  Typed v32(c.x.v, DType::fp32);
  Tensor out(s.heads, s.q_len, s.head_dim);
  expect_error([&] { dense_attention(s, c.q.view, c.k.view, v32.view, out.view); },
               {"v.dtype", "fp32", "must equal k.dtype (bf16)"});
  std::vector<uint16_t> o16(512);
  const OutputView f16_out(o16.data(), DType::fp16, 2, 16, 16, 256, 16);
  expect_error([&] { dense_attention(s, c.q.view, c.k.view, c.v.view, f16_out); }, {"out.dtype", "fp16", "fp32 or bf16"});
  KernelOptions o;
  o.check_finite = true;
  c.k.bits[37] = 0x7fc0;  // a bf16 NaN: found at head 0, token 2, element 5
  expect_error([&] { dense_attention(s, c.q.view, c.k.view, c.v.view, out.view, o); },
               {"k", "nan", "head 0, token 2, element 5"});
}

}  // namespace
}  // namespace spattn::test
