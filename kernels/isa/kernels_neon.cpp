// NEON (aarch64 Advanced SIMD) instance of the generic kernels: 4 floats per
// vector, 32 registers.
#include <cmath>
#include <cstdint>

#include "kernels/kernel_table.hpp"
#include "kernels/generic/simd_ops.hpp"
#include "kernels/generic/tile_dispatch.hpp"

namespace spattn::detail::neon {
using Ops = XsimdOps<xsimd::neon64>;
struct Tiles {
  static constexpr int qk_mr = 6, qk_nv = 4;  // 24 accumulators
  static constexpr int pv_mr = 4, pv_nv = 4;  // 16 accumulators
  static constexpr TileSizes dense{64, 64};  // preferred_tiles (not timed on Arm)
  static constexpr int step_keys = 0;  // no grouped softmax steps (not timed)
};
#include "kernels/generic/all-inl.hpp"
}  // namespace spattn::detail::neon

namespace spattn::detail {
const KernelTable& kernel_table_neon() {
  static const KernelTable table = neon::make_kernel_table(Isa::neon);
  return table;
}
}  // namespace spattn::detail
