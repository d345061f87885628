// Portable scalar instance of the generic kernels: the fallback on any CPU.
// Compiled without target flags and without xsimd.
#include <cmath>
#include <cstdint>

#define SPATTN_SCALAR_ONLY 1
#include "kernels/kernel_table.hpp"
#include "kernels/generic/simd_ops.hpp"
#include "kernels/generic/tile_dispatch.hpp"

namespace spattn::detail::scalar {
using Ops = ScalarOps;
struct Tiles {
  static constexpr int qk_mr = 4, qk_nv = 4;
  static constexpr int pv_mr = 4, pv_nv = 4;
  static constexpr TileSizes dense{64, 64};  // preferred_tiles (not timed)
  static constexpr int step_keys = 0;  // no grouped softmax steps (not timed)
};
#include "kernels/generic/all-inl.hpp"
}  // namespace spattn::detail::scalar

namespace spattn::detail {
const KernelTable& kernel_table_scalar() {
  static const KernelTable table = scalar::make_kernel_table(Isa::scalar);
  return table;
}
}  // namespace spattn::detail
