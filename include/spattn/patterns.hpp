#pragma once
// Sparse-pattern policies: each turns Q/K (or positions) into a BlockMask or a
// list of kept key tokens that the kernels in attention.hpp then run on.
#include <cstdint>
#include <string>
#include <vector>

#include "spattn/attention.hpp"
#include "spattn/block_mask.hpp"

namespace spattn {

// Exact softmax mass of every key block, per head and query block:
// mass[(h * q_blocks + qb) * k_blocks + kb] = mean over the rows of query
// block qb of the softmax probability that falls in key block kb. Each
// (h, qb) row sums to 1. Computed without an N x N buffer (a flash pass for
// each row's log-sum-exp, then a QK-only pass). From a causal shape, a row's
// mass covers only the keys its queries see: key blocks wholly after the
// query block's last position have mass 0 and are not visible_k_blocks.
struct BlockMass {
  int64_t heads = 0, q_len = 0, kv_len = 0, q_block = 0, k_block = 0;
  std::vector<float> mass;
  bool causal = false;   // computed under causality: query token t at position q_offset + t
  int64_t q_offset = 0;  // with causal: the shape's query_position0()
  int64_t q_blocks() const { return (q_len + q_block - 1) / q_block; }
  int64_t k_blocks() const { return (kv_len + k_block - 1) / k_block; }
  // Key blocks query block qb may attend to: all of them, or under causality
  // those up to the block of its last query's position.
  int64_t visible_k_blocks(int64_t qb) const {
    if (!causal) return k_blocks();
    const int64_t last = q_offset + (q_len < (qb + 1) * q_block ? q_len : (qb + 1) * q_block) - 1;
    return last / k_block + 1 < k_blocks() ? last / k_block + 1 : k_blocks();
  }
  const float* row(int64_t head, int64_t query_block) const {
    return mass.data() + (head * q_blocks() + query_block) * k_blocks();
  }
};
BlockMass block_attention_mass(const AttentionShape& shape, InputView q, InputView k,
                               int64_t q_block, int64_t k_block, const KernelOptions& opts = {});
// The same, reusing the rows' log-sum-exp from dense_attention_with_lse (one
// QK pass instead of two): what SparseD does at its last dense step.
BlockMass block_attention_mass_from_lse(const AttentionShape& shape, InputView q,
                                        InputView k, const float* lse, int64_t q_block,
                                        int64_t k_block, const KernelOptions& opts = {});

// Attention-mass recall of a mask: mean over (head, query block) of the mass
// inside the kept key blocks. Block sizes of mask and mass must agree.
double mask_recall(const BlockMass& mass, const BlockMask& mask);

// SparseD: per head and query block keep the ceil(topk_ratio * k_blocks) key
// blocks (at least one) with the largest mass; ties go to the lower index.
// Causal masses: k_blocks counts the row's visible blocks, and only those
// are candidates. (The extensions below are the diffusion session's and
// refuse causal masses.)
BlockMask sparsed_select(const BlockMass& mass, double topk_ratio);
// The same budget (heads x ceil(topk_ratio * k_blocks) blocks per query
// block) pooled across heads: every head keeps its best block, the rest go to
// the largest masses of any head. Diffuse heads get more blocks, sharp heads
// fewer, at the same density. An extension of SparseD (whose budget is per
// head), motivated by the captured traces, where a fixed per-head top-k
// starves diffuse heads.
BlockMask sparsed_select_pooled(const BlockMass& mass, double topk_ratio);

// An adaptive SparseD budget (an extension of SparseD, for learned attention
// whose heads range from sharp to diffuse): per (head, query block) keep the
// fewest key blocks whose mass reaches tau of the row's mass (largest first,
// ties to the lower index), at least min_blocks and at most
// max(min_blocks, ceil(max_share * k_blocks)). A head whose kept share over
// all its query blocks exceeds dense_head_share keeps every block: it runs
// dense, since selection and gathers buy nothing there.
struct MassBudget {
  double tau = 0.95;              // share of each row's mass to keep, (0, 1]
  double max_share = 1.0;         // cap: share of key blocks a row may keep, (0, 1]
  int64_t min_blocks = 1;         // floor: blocks a row keeps at least, >= 1
  double dense_head_share = 1.0;  // a head above this kept share runs dense, (0, 1] (1: never)
  void validate(const char* where, const std::string& prefix) const;  // throws spattn::Error
};
// dense_heads, when given, receives one flag per head: 1 if it runs dense.
BlockMask sparsed_select_mass(const BlockMass& mass, const MassBudget& budget,
                              std::vector<uint8_t>* dense_heads = nullptr);

// SparseD as its authors' code selects (a preset beside the extensions
// above; see patterns/sparsed_paper.cpp for the rules and their source):
// per (head, query block) the top sparsed_paper_keep(select, n) key blocks,
// chosen twice and OR-ed: over all keys (`all`, softmax over every key), of
// which the prompt blocks [0, generation_block) stay, and over the
// generation keys alone (`generation`: the masses of keys
// [generation_block * k_block, kv_len) under their own softmax), whose top
// sparsed_paper_keep(select, n - generation_block) blocks fill the rest.
BlockMask sparsed_select_paper(const BlockMass& all, const BlockMass& generation, int64_t generation_block,
                               double select);
// int(select * n) + 1, at most n: the authors' count of kept blocks.
int64_t sparsed_paper_keep(double select, int64_t n);
// The first key block of the generated part: ceil(prefix_len / block_size),
// at most the last block (the authors' rule; the generation region is never empty).
int64_t sparsed_paper_generation_block(int64_t prefix_len, int64_t kv_len, int64_t block_size);

// UniSparse: composite tokens (Q and K mean-pooled at several granularities)
// estimate block importance cheaply; per query block keep either the top
// topk_ratio of key blocks or the smallest set whose estimated mass reaches tau.
struct UnisparseParams {
  int64_t block_size = 64;                         // query and key block size
  std::vector<int64_t> granularities = {16, 64, 256};  // pooling widths in tokens
  enum class Select { topk, threshold } select = Select::threshold;
  double topk_ratio = 0.1;
  double tau = 0.95;
  int64_t min_blocks = 1;  // never fewer blocks per query block than this
};
BlockMask unisparse_select(const AttentionShape& shape, InputView q, InputView k,
                           const UnisparseParams& params, const KernelOptions& opts = {});

// DPad (Chen et al., "DPad: Efficient Diffusion Language Models with Suffix
// Dropout", 2025): before a decoding block's denoising steps, drop suffix
// tokens (after the current block) from attention, as queries and as keys.
// Every token before block_end (prompt, decoded blocks, current block) is
// kept. A suffix token at distance d = t - block_end (0 for the first) is
// kept with probability
//  - Rule::gaussian (the authors' rule, the default): min(1, scale *
//    phi(k_sigma * d / (window - 1))) for d < window, phi the standard normal
//    density; dropped for d >= window. Their defaults: window 256, k_sigma 4,
//    scale 2.0 (their task scripts also use k_sigma 3, scale 2.3, window 128
//    or 512). The draws are a function of (seed, block_end, t): redrawn for
//    each decoding block, fixed within it.
//  - Rule::dense_window (this library's variant): 1 for d < window, then
//    exp(-(d + 1 - window)^2 / (2 sigma^2)). Draws are a function of (seed, t).
// Kept tokens keep their positions: dpad_kept_tokens lists them, so a caller
// applies RoPE at the original positions.
struct DpadParams {
  enum class Rule { gaussian, dense_window };
  Rule rule = Rule::gaussian;
  int64_t prefix_len = 0;   // tokens [0, prefix_len) are the prompt
  int64_t block_start = 0;  // current block [block_start, block_end)
  int64_t block_end = 0;
  int64_t window = 256;     // suffix tokens considered (gaussian) / always kept (dense_window)
  double k_sigma = 4.0;     // gaussian: the window's end sits at k_sigma standard deviations
  double scale = 2.0;       // gaussian: scale of the keep probability
  double sigma = 256.0;     // dense_window: decay beyond the window, in tokens
  uint64_t seed = 0;
};
const char* dpad_rule_name(DpadParams::Rule rule);  // "gaussian", "dense-window"
DpadParams::Rule parse_dpad_rule(const std::string& name);  // throws spattn::Error naming the value
std::vector<int32_t> dpad_kept_tokens(int64_t kv_len, const DpadParams& params);
// Keep probability of a token at position t under params (1 inside the kept regions).
double dpad_keep_probability(int64_t t, const DpadParams& params);

// StreamingLLM's A-shape: the first sink_tokens keys plus a band of
// window_tokens around each query block's diagonal, as key blocks.
struct WindowSinkParams {
  int64_t block_size = 64;
  int64_t sink_tokens = 64;
  int64_t window_tokens = 512;
};
BlockMask window_sink_mask(const AttentionShape& shape, const WindowSinkParams& params);

}  // namespace spattn
