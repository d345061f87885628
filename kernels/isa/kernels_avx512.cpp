// AVX-512 (F/BW/DQ/VL) instance of the generic kernels: 16 floats per vector,
// 32 registers, so wide register tiles.
#include <cmath>
#include <cstdint>

#include "kernels/kernel_table.hpp"
#include "kernels/generic/simd_ops.hpp"
#include "kernels/generic/tile_dispatch.hpp"

namespace spattn::detail::avx512 {
using Ops = Avx512Ops;
struct Tiles {
  // 24 accumulators each: 10 loads per 24 FMAs, against 16, 10 and 8 loads
  // per 16 FMAs for 8 x 2 / 4 x 4 (timed faster on Zen 4 and the 16-core
  // Xeon: bench/results/README.md).
  static constexpr int qk_mr = 6, qk_nv = 4;
  static constexpr int pv_mr = 6, pv_nv = 4;
  // preferred_tiles: timed faster than 64 x 64 on both machines
  // (bench/results/README.md, "Phases, tiles by ISA").
  static constexpr TileSizes dense{128, 64};
  static constexpr int step_keys = 256;  // softmax steps: 4 blocks of 64 (per-row costs amortized)
};
#include "kernels/generic/all-inl.hpp"
}  // namespace spattn::detail::avx512

namespace spattn::detail {
const KernelTable& kernel_table_avx512() {
  static const KernelTable table = avx512::make_kernel_table(Isa::avx512);
  return table;
}
}  // namespace spattn::detail
