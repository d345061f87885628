// The bf16 kernel families, for ISA translation units that add a bf16 path to
// another ISA's fp32 table. Included inside a per-ISA namespace that defines
// Ops, Tiles and Bf16Ops.
#include "kernels/generic/online_softmax-inl.hpp"
#include "kernels/generic/qk_scores-inl.hpp"
#include "kernels/generic/pv_accumulate-inl.hpp"
#include "kernels/generic/attend_query_block-inl.hpp"
#include "kernels/generic/bf16_products-inl.hpp"

// The fp32 table of the base ISA, with this ISA's name and bf16 kernels.
inline KernelTable with_bf16_kernels(KernelTable base, Isa isa) {
  base.isa = isa;
  base.qk_scores_bf16 = &qk_scores_bf16;
  base.attend_query_block_bf16 = &attend_query_block_bf16;
  return base;
}
