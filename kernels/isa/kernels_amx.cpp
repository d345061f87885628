// AMX-BF16: avx512's fp32 kernels; the bf16 QK and PV products on AMX tiles,
// their edges on AVX-512 BF16 (vdpbf16ps).
#include <immintrin.h>

#include "kernels/kernel_table.hpp"
#include "kernels/generic/simd_ops.hpp"
#include "kernels/generic/tile_dispatch.hpp"

namespace spattn::detail::amx {
using Ops = Avx512Ops;
struct Tiles {
  static constexpr int qk_mr = 8, qk_nv = 2;  // 16 accumulators (edge rows)
  static constexpr int pv_mr = 4, pv_nv = 4;  // 16 accumulators (edge rows)
};
using Bf16Ops = Bf16OpsAvx512;
#include "kernels/generic/bf16-inl.hpp"
#include "kernels/isa/amx_products-inl.hpp"
}  // namespace spattn::detail::amx

namespace spattn::detail {
const KernelTable& kernel_table_amx() {
  static const KernelTable table = amx::with_amx_kernels(kernel_table_avx512());
  return table;
}
}  // namespace spattn::detail
