#pragma once
// Dense baselines and the double-precision reference every kernel is checked
// against. The baselines accept any head_dim.
#include "spattn/attention.hpp"

namespace spattn {

// Double-precision attention. out: [heads][q_len][head_dim] contiguous doubles.
// With a mask, key blocks it does not list count as -inf logits (a query
// block with none gives zeros). With kept tokens, only those keys count.
void reference_attention(const AttentionShape& shape, ConstTensorView q, ConstTensorView k,
                         ConstTensorView v, double* out, const BlockMask* mask = nullptr,
                         std::span<const int32_t> kept = {});

// Three passes per query row over materialized scores: QK^T, softmax, PV.
void naive_attention(const AttentionShape& shape, ConstTensorView q, ConstTensorView k,
                     ConstTensorView v, TensorView out, const KernelOptions& opts = {});

// cblas_sgemm for QK^T and for PV with a row-wise softmax between, tiled over
// query rows (256 at a time) so memory stays O(tile x kv_len). OpenBLAS
// threads each sgemm (resolve_threads(opts) threads).
// Throws spattn::Error if the library was built without OpenBLAS.
void blas_attention(const AttentionShape& shape, ConstTensorView q, ConstTensorView k,
                    ConstTensorView v, TensorView out, const KernelOptions& opts = {});
bool have_blas();

}  // namespace spattn
