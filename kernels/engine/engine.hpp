#pragma once
// The engine: the one loop over (head, query block) work items (and, for
// few query rows, pieces of their keys: AttendExtras::kv_splits), between the
// per-ISA micro-kernels (kernels/kernel_table.hpp) and the policies
// (patterns/). A pass reads Q and a KVPlan and differs only in what it
// visits (which key blocks) and what it emits:
//
//   attend           flash attention over the listed key blocks -> out (+ LSE)
//   row_lse          log-sum-exp of every query row over all keys (QK only)
//   block_mass       per (head, query block, key block) softmax mass, given LSE
//   attend_with_block_mass  dense attend + LSE + block masses in one pass
//   key_softmax_rows softmax of every query row over all keys of the plan,
//                    handed to the caller per work item (UniSparse scoring
//                    over pooled keys)
//
// Causal shapes (shape.causal): every pass sees only the keys at positions
// <= the query row's (the plan's key_position()); key blocks wholly in the
// future are dropped from what the caller lists (a prefix: lists ascend), the
// blocks crossing the diagonal are masked per element, and what a row cannot
// see counts as zero mass / probability.
//
// Policies choose blocks and call these; they never see the kernel table or
// threads. No argument checks here: the public entry points have made them.
#include <cstdint>
#include <span>
#include <vector>

#include "kernels/engine/function_ref.hpp"
#include "kernels/engine/kv_plan.hpp"
#include "kernels/engine/parallel.hpp"
#include "spattn/shape.hpp"

namespace spattn::detail {

// The key blocks a (head, query block) visits, ascending.
using KeyBlocksFn = FunctionRef<std::span<const int32_t>(int64_t head, int64_t q_block_index)>;

// Which positions of the sequence the query rows hold: row i at first + i,
// or at positions[i] (strictly ascending) when given. Only causal masking
// and the callers' choice of key blocks depend on it.
struct QueryRows {
  int64_t first = 0;
  const int32_t* positions = nullptr;
  int64_t at(int64_t i) const { return positions != nullptr ? positions[i] : first + i; }
};

// What attend may also be given.
struct AttendExtras {
  float* lse = nullptr;  // each row's log-sum-exp at lse[h * q_len + t]
  // The rows' positions (cached steps); nullptr: shape.query_position0() + i.
  const QueryRows* rows = nullptr;
  // Query tiles: tile t is rows [tile_starts[t], tile_starts[t + 1]) (at most
  // q_block rows each); empty: tiles of q_block rows.
  std::span<const int64_t> tile_starts;
  // Pieces each work item's key blocks are split into (split-KV): 1 none,
  // 0 kv_split_count's choice. Pieces are computed as independent flash
  // passes and merged exactly (merge_attention_rows).
  int kv_splits = 1;
};

// Split-KV's automatic choice: enough pieces that items x pieces reaches
// kSplitTargetItems, with at least kSplitMinKeys keys per piece. It depends
// on the shape only, never on the thread count, so results stay bitwise
// the same for any number of threads.
inline constexpr int64_t kSplitTargetItems = 64;
inline constexpr int64_t kSplitMinKeys = 256;
int kv_split_count(int64_t items, int64_t visited_keys);

// Flash attention of q ([heads][q_len][d]) against the plan; with lse, also
// each row's log-sum-exp (-inf for a row that visited nothing) at
// lse[h * q_len + t].
// q of any dtype (converted once to the plan's, q_dtype()), out f32 or bf16.
void attend(const AttentionShape& shape, InputView q, const KVPlan& kv, OutputView out, int64_t q_block,
            KeyBlocksFn key_blocks, int threads, const AttendExtras& extras);
inline void attend(const AttentionShape& shape, InputView q, const KVPlan& kv, OutputView out, int64_t q_block,
                   KeyBlocksFn key_blocks, int threads, float* lse = nullptr) {
  attend(shape, q, kv, out, q_block, key_blocks, threads, AttendExtras{lse, nullptr, {}, 0});
}

// Merges partial attention results of one query row over disjoint key sets:
// part i holds its normalized output at outs[i] (head_dim floats) and its
// log-sum-exp lses[i] (-inf: it saw no key). out = sum_i w_i outs[i] with
// w_i = exp(lses[i] - lse) and lse = log sum_i exp(lses[i]); a row no part
// saw gives zeros and -inf. Returns lse.
float merge_attention_rows(const float* const* outs, const float* lses, int64_t parts, int64_t head_dim, float* out);
// SparseD's record step in one pass: dense flash attention with each row's
// LSE (required) and the block masses block_mass would give, from the same
// logits (the kernel keeps per-block sums relative to the running max). Query
// blocks of the mass are the work items' q_block rows; key blocks the plan's.
// It never splits the keys: its output is unsplit attend's bit for bit.
void attend_with_block_mass(const AttentionShape& shape, InputView q, const KVPlan& kv, OutputView out,
                            int64_t q_block, int threads, float* lse, float* mass);
// Tests: keys per softmax step (QueryBlockJob::group x the plan's k_block)
// forced on both paths, fp32 and bf16, on every ISA; 0 restores each ISA's
// own (KernelTable::fp32_step_keys, bf16_step_keys).
void set_softmax_step_keys_for_testing(int keys);
// Every key block of the plan, for dense passes.
std::vector<int32_t> all_key_blocks(const KVPlan& kv);

// Log-sum-exp of the scaled logits of every query row over all keys.
std::vector<float> row_lse(const AttentionShape& shape, InputView q, const KVPlan& kv, int64_t q_block,
                           int threads);

// mass[(h * q_blocks + qb) * k_blocks + b]: the softmax mass of key block b
// averaged over the rows of query block qb (rows sum to 1), from the rows'
// LSE. Query and key blocks: q_block and the plan's k_block.
void block_mass(const AttentionShape& shape, InputView q, const KVPlan& kv, const float* lse,
                int64_t q_block, int threads, float* mass);

// For every head and every tile of rows_per_item query rows: the softmax of
// scale * q . k + bias(j) over all keys j of the plan (bias: last_key_bias on
// the last key, 0 elsewhere), row r of the tile at probs + r * ld. With
// visible_keys (one count per query row) row i sees only keys
// [0, visible_keys[i]) (causal selection over pooled keys) and the others get
// probability 0 (a row that sees none is all zeros); empty: every row sees
// every key. The
// callback sees each tile once, from any thread; tiles are handed out
// dynamically (their cost is uneven with GQA and short last tiles).
//
// prepare (optional) is called for each tile, on the thread that runs it,
// before the tile's rows of q are read: a caller may write those rows there
// (q must then already be in the plan's dtype, which is checked). UniSparse
// pools its queries so, tile by tile, and the pooling's reads of the
// caller's Q overlap other threads' products instead of forming a pass of
// their own that is bound by memory bandwidth on many cores.
using SoftmaxRowsFn =
    FunctionRef<void(int64_t head, int64_t first_row, int rows, const float* probs, int64_t ld)>;
using PrepareRowsFn = FunctionRef<void(int64_t head, int64_t first_row, int rows)>;
void key_softmax_rows(const AttentionShape& shape, InputView q, const KVPlan& kv, int64_t rows_per_item,
                      float last_key_bias, std::span<const int64_t> visible_keys, int threads,
                      SoftmaxRowsFn emit, const PrepareRowsFn* prepare = nullptr);

// DPad compaction: the rows kept lists (ascending, shared by all heads) of x,
// into dst as [heads][kept][d] of x's dtype (dst holds the bytes); returns the
// compact view.
InputView gather_tokens(InputView x, std::span<const int32_t> kept, int threads, std::vector<float>& dst);
// The inverse for outputs: row i of src (out's dtype) goes to row kept[i] of
// out; every other row of out becomes zero.
void scatter_tokens(InputView src, std::span<const int32_t> kept, OutputView out, int threads);

}  // namespace spattn::detail
