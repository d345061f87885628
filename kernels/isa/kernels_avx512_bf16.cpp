// AVX-512 BF16: avx512's fp32 kernels plus the bf16 path (vdpbf16ps).
#include <immintrin.h>

#include "kernels/kernel_table.hpp"
#include "kernels/generic/simd_ops.hpp"
#include "kernels/generic/tile_dispatch.hpp"

namespace spattn::detail::avx512_bf16 {
using Ops = Avx512Ops;
struct Tiles {
  static constexpr int qk_mr = 8, qk_nv = 2;  // 16 accumulators
  static constexpr int pv_mr = 4, pv_nv = 4;  // 16 accumulators
};
using Bf16Ops = Bf16OpsAvx512;
#include "kernels/generic/bf16-inl.hpp"
}  // namespace spattn::detail::avx512_bf16

namespace spattn::detail {
const KernelTable& kernel_table_avx512_bf16() {
  static const KernelTable table = avx512_bf16::with_bf16_kernels(kernel_table_avx512(), Isa::avx512_bf16);
  return table;
}
}  // namespace spattn::detail
