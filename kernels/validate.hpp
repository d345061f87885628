#pragma once
// Argument checks shared by every entry point of kernels/. Each throws
// spattn::Error naming the function, the argument and its value.
#include <span>
#include <string>

#include "spattn/attention.hpp"

namespace spattn::detail {

// Shape, non-null data, view extents matching the shape, positive strides,
// and out's extent apart from q's, k's and v's.
// Element types: k and v share one; out is f32 or bf16.
void check_views(const char* where, const AttentionShape& shape, InputView q, InputView k, InputView v,
                 InputView out);
// The same for passes that read q and k (and v when given) but write no
// attention output (block masses, UniSparse scoring, the double reference).
void check_input_views(const char* where, const AttentionShape& shape, InputView q, InputView k,
                       const InputView* v = nullptr);
// The cached passes (q and out against a KVCache): the shape, q's and out's
// views and types, out apart from q.
void check_query_views(const char* where, const AttentionShape& shape, InputView q, InputView out);
// Token positions (DPad's kept tokens, a cache's rows, cached queries):
// strictly increasing, each in [0, limit); errors name name[i] and, when
// given, what limit is (limit_note).
void check_positions(const char* where, const std::string& name, std::span<const int32_t> pos, int64_t limit,
                     const std::string& limit_note = "");
// One view of heads x tokens x head_dim rows of fp32, bf16 or fp16 (errors name `name`).
void check_token_view(const char* where, const char* name, InputView t, int64_t heads, int64_t tokens,
                      int64_t head_dim);
// What the hand-vectorized kernels need beyond that: head_dim a multiple of 16
// up to 256, block sizes as check_block_size.
void check_kernel_limits(const char* where, const AttentionShape& shape, int64_t q_block,
                         int64_t k_block);
// The same for the dense and gathered paths, whose key block may also be 256
// or 512 (check_key_block).
void check_dense_limits(const char* where, const AttentionShape& shape, int64_t q_tile, int64_t k_block);
// KernelOptions' tiles as given: each 0 (preferred_tiles) or a supported
// size; errors name prefix + the field ("opts.", "kernel.").
void check_tile_options(const char* where, const std::string& prefix, const KernelOptions& opts);
// check_tile_options, then check_dense_limits on the resolved tiles (0:
// preferred_tiles(kv_dtype)); returns them.
TileSizes check_dense_tiles(const char* where, const AttentionShape& shape, const KernelOptions& opts,
                            DType kv_dtype);
// With opts.check_finite: throws naming the tensor, head, token and element of
// the first NaN / Inf in q, then k, then v (views already checked), and when
// the logits could overflow fp32 (head_dim x max|q| x max|k| x scale, the
// Cauchy-Schwarz bound on |scale q.k|, above FLT_MAX). No-op otherwise.
void check_finite_inputs(const char* where, const KernelOptions& opts, const AttentionShape& shape, InputView q,
                         InputView k, InputView v);

}  // namespace spattn::detail
