#pragma once
// Internal entry points of kernels/ for the rooms built on it (patterns/):
// no argument checks here, callers have done them.
#include "spattn/attention.hpp"

namespace spattn::detail {

// Dense flash attention; with lse != nullptr also writes each row's
// log-sum-exp of the scaled logits to lse[h * q_len + t]. kv_splits as
// KernelOptions::kv_splits.
void dense_attention_unchecked(const AttentionShape& shape, InputView q, InputView k, InputView v,
                               OutputView out, int64_t q_block, int64_t k_block, int threads, float* lse = nullptr,
                               int kv_splits = 0);

}  // namespace spattn::detail
