// AVX2 + FMA instance of the generic kernels: 8 floats per vector, 16
// registers, so tiles of at most 12 accumulators.
#include <cmath>
#include <cstdint>

#include "kernels/kernel_table.hpp"
#include "kernels/generic/simd_ops.hpp"
#include "kernels/generic/tile_dispatch.hpp"

namespace spattn::detail::avx2 {
using Ops = Avx2Ops;
struct Tiles {
  static constexpr int qk_mr = 6, qk_nv = 2;  // 12 accumulators
  static constexpr int pv_mr = 3, pv_nv = 4;  // 12 accumulators
  static constexpr TileSizes dense{128, 64};  // preferred_tiles (timed: bench/results/README.md)
  static constexpr int step_keys = 0;  // one block per softmax step: longer steps timed no faster here
};
#include "kernels/generic/all-inl.hpp"
}  // namespace spattn::detail::avx2

namespace spattn::detail {
const KernelTable& kernel_table_avx2() {
  static const KernelTable table = avx2::make_kernel_table(Isa::avx2);
  return table;
}
}  // namespace spattn::detail
