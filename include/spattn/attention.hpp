#pragma once
// The attention kernels: flash-style dense attention, block-sparse attention
// over a BlockMask, and attention over an explicit list of kept key tokens.
// All run on the ISA path chosen at start-up (see isa.hpp), threaded with
// OpenMP over (head, query block) and, for few query rows, over pieces of
// the keys (KernelOptions::kv_splits); results are bitwise identical for any
// thread count.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "spattn/block_mask.hpp"
#include "spattn/shape.hpp"

namespace spattn {

struct KernelOptions {
  int threads = 0;       // 0: SPATTN_NUM_THREADS, else OpenMP's default
  // Query rows per work item (the query tile) and keys per block of the
  // dense and gathered paths: 16 ... 128 and 16 ... 512 (check_key_block).
  // 0, the default: the tiles the active ISA runs fastest for the K/V dtype
  // (preferred_tiles).
  int64_t q_tile_rows = 0;
  int64_t k_block = 0;
  // Non-finite inputs (NaN, +-Inf in q, k or v): with check_finite the kernels
  // scan q, k and v first (one read of each, no extra memory) and throw
  // spattn::Error naming the tensor, head, token and element of the first
  // non-finite value. Without it (the default, for speed) nothing is checked
  // and non-finite values propagate into the output rows they reach; the
  // kernels never crash or read out of bounds on them.
  bool check_finite = false;
  // Split-KV: when heads x query tiles are few (a cached step's 32 rows, a
  // decode's one), each tile's keys are split into pieces that run on
  // different threads, each a flash pass with its own (max, sum), merged
  // exactly (merge_attention_states). 0, the default: pieces chosen from the
  // shape alone (up to 64 work items, at least 256 keys a piece), so results
  // stay bitwise the same for any thread count; 1: never split; n: n pieces.
  // Split results equal unsplit ones within fp32 rounding.
  int kv_splits = 0;
};
inline constexpr int kMaxKvSplits = 1024;

// Argument rules shared by every kernel (each violation throws spattn::Error
// naming the argument and its value): the shape (AttentionShape::validate);
// views with non-null data, extents equal to the shape, positive strides,
// token_stride >= head_dim when tokens > 1 and head_stride >= head_dim when
// heads > 1 (rows must not overlap); head_dim and block sizes as below;
// threads >= 0. No alignment is required: any float-aligned pointer works.
// Limits of the hand-vectorized kernels.
inline constexpr int64_t kMaxHeadDim = 256;
inline constexpr int64_t kHeadDimMultiple = 16;
// Block sizes (and query tiles) the kernels run: 16, 32, 64 or 128. One
// check and one message for every place a block size comes in.
bool is_supported_block_size(int64_t b);
inline constexpr const char* kBlockSizeRule = "must be 16, 32, 64 or 128";
void check_block_size(const char* where, const std::string& field, int64_t value);  // throws spattn::Error
// KernelOptions::k_block of the dense and gathered paths may also be 256 or
// 512 (longer key blocks amortize the per-block softmax and output work; the
// AMX path gains from them). Masks' blocks stay 16-128.
bool is_supported_key_block(int64_t b);
inline constexpr const char* kKeyBlockRule = "must be 16, 32, 64, 128, 256 or 512";
void check_key_block(const char* where, const std::string& field, int64_t value);  // throws spattn::Error
// The number of key blocks a ratio keeps: ceil(ratio * k_blocks), at least 1,
// at most k_blocks (a tiny epsilon absorbs ratios that are exact fractions
// written in decimal). SparseD's top-k, UniSparse's top-k and the tuner use it.
int64_t blocks_for_ratio(double ratio, int64_t k_blocks);

// Threads: 0 means SPATTN_NUM_THREADS, else OpenMP's default; at most
// kMaxThreads, wherever a thread count comes from (options, C API, profiles,
// flags, the environment). One check for all of them:
inline constexpr int kMaxThreads = 4096;
void check_thread_count(const char* where, const char* field, int64_t threads);  // throws spattn::Error
// Threads the kernels use for these options.
int resolve_threads(const KernelOptions& opts);

struct TileSizes {
  int64_t q_tile_rows = 64, k_block = 64;
  bool operator==(const TileSizes&) const = default;
};
// The tiles KernelOptions' zeros stand for, on the active ISA, for K/V of
// this dtype (per-ISA data, timed on Zen 4 and a 16-core Xeon:
// bench/results/README.md): 128 x 64 for the fp32 kernels on x86 (fp32 and
// widened fp16 K/V), 64 x 512 for bf16 K/V on AMX (long key blocks amortize
// the softmax and the output rescaling per block), 64 x 64 elsewhere.
TileSizes preferred_tiles(DType kv_dtype);
// opts' tiles, each 0 replaced by preferred_tiles(kv_dtype)'s.
TileSizes resolve_tiles(const KernelOptions& opts, DType kv_dtype);

// Element types. q, k and v may each be fp32, bf16 or fp16 (k and v the same),
// out fp32 or bf16; fp32 views pass as they are. Logits, softmax and every
// accumulation are fp32 whatever the inputs. Where the ISA has bf16 dot
// products (avx512_bf16) and k/v are bf16, QK and PV run on them: q is rounded
// to bf16 (if it is not), and so are the probabilities P before the PV
// product, as FlashAttention does (the row sums use the unrounded P). Each
// output element is then within 2^-8 x max|v| of the exact attention of the
// rounded inputs. Otherwise (fp16 k/v everywhere, bf16 on other ISAs) the
// operands are widened to fp32 exactly when packed and the fp32 kernels run:
// the result is that of the fp32 kernels on the widened inputs.

void dense_attention(const AttentionShape& shape, InputView q, InputView k, InputView v, OutputView out,
                     const KernelOptions& opts = {});

// Partial attention over disjoint key sets (a split across threads,
// processes or machines), each as its normalized output ([heads][q_len][d],
// fp32 or bf16) and its rows' log-sum-exp (lse[h * q_len + t], -inf for a row
// that saw no key), as dense_attention_with_lse gives them.
struct AttentionPart {
  InputView out;
  const float* lse = nullptr;
};
// The exact attention over the union: out = sum_i exp(lse_i - lse) out_i with
// lse = log sum_i exp(lse_i) (written to lse when not null). A row no part saw
// is zeros (lse -inf); NaN in a part's lse gives a NaN row. All parts and out
// share heads, q_len and head_dim.
void merge_attention_states(std::span<const AttentionPart> parts, OutputView out, float* lse = nullptr,
                            const KernelOptions& opts = {});

// dense_attention that also writes every row's log-sum-exp of the scaled
// logits to lse[h * q_len + t] (heads * q_len floats).
void dense_attention_with_lse(const AttentionShape& shape, InputView q, InputView k, InputView v, OutputView out,
                              float* lse, const KernelOptions& opts = {});

// Visits only the key blocks mask lists for each (head, query block). The
// mask's block sizes are used; opts.q_tile_rows / k_block are ignored. A query
// block with no key blocks yields zeros.
void block_sparse_attention(const AttentionShape& shape, InputView q, InputView k, InputView v,
                            const BlockMask& mask, OutputView out, const KernelOptions& opts = {});

// Attention over the key tokens listed in kept (strictly increasing, in
// [0, kv_len), shared by all heads). K/V are compacted once per call.
void gathered_attention(const AttentionShape& shape, InputView q, InputView k, InputView v,
                        std::span<const int32_t> kept, OutputView out, const KernelOptions& opts = {});

// DPad's compaction, as the session runs it: rows kept[i] (strictly
// increasing, in [0, x.tokens), shared by all heads) of x into dst as a
// heads-major [heads][kept][head_dim] tensor; returns the view of dst.
ConstTensorView gather_tokens(ConstTensorView x, std::span<const int32_t> kept, std::vector<float>& dst,
                              const KernelOptions& opts = {});
// The inverse for outputs: row i of src ([heads][kept][d]) to row kept[i] of
// out; every other row of out becomes zero.
void scatter_tokens(ConstTensorView src, std::span<const int32_t> kept, TensorView out,
                    const KernelOptions& opts = {});

}  // namespace spattn
