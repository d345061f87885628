// NEON with BF16 (Armv8.6 BFDOT, or earlier cores reporting bf16): neon's fp32
// kernels plus the bf16 path on BFDOT.
#include <cmath>
#include <cstdint>

#include "kernels/kernel_table.hpp"
#include "kernels/generic/simd_ops.hpp"
#include "kernels/generic/tile_dispatch.hpp"

namespace spattn::detail::neon_bf16 {
using Ops = XsimdOps<xsimd::neon64>;
struct Tiles {
  static constexpr int qk_mr = 6, qk_nv = 4;  // 24 accumulators
  static constexpr int pv_mr = 4, pv_nv = 4;  // 16 accumulators
};
using Bf16Ops = Bf16OpsNeon;
#include "kernels/generic/bf16-inl.hpp"
}  // namespace spattn::detail::neon_bf16

namespace spattn::detail {
const KernelTable& kernel_table_neon_bf16() {
  static const KernelTable table = neon_bf16::with_bf16_kernels(kernel_table_neon(), Isa::neon_bf16);
  return table;
}
}  // namespace spattn::detail
