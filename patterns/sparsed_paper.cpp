// SparseD as its authors' code selects (Wang et al., "SparseD: Sparse
// Attention for Diffusion Language Models", 2025; github.com/INV-WZQ/SparseD,
// models/*/modeling_*.py and SparseD_utils.py, read 2026-11-24):
//  - a block's score is the mean softmax probability over its query block x
//    key block tile (zero-padded at the edges, so within one row of blocks the
//    ranking is the ranking of the block masses);
//  - each (head, query block) keeps the top int(n * select) + 1 key blocks;
//  - the selection is made twice: over all keys, of which only the prompt
//    blocks are kept, and over the generation keys alone (their own softmax),
//    whose top blocks fill the generation region; the two are OR-ed.
// Their selection softmax scales the logits by 1/sqrt(num_heads) where the
// attention itself uses 1/sqrt(head_dim); we use the attention's scale (the
// masses a pattern is meant to keep). Ties: their torch.topk leaves them
// unspecified; we keep the lower block index.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "kernels/engine/parallel.hpp"
#include "patterns/validate_params.hpp"
#include "spattn/error.hpp"
#include "spattn/patterns.hpp"
#include "spattn/session.hpp"

namespace spattn {
namespace {

// The `keep` largest of w[0, n) (NaN lowest, ties to the lower index), as
// indices offset by `base`, appended to out.
void top_blocks(const float* w, int64_t n, int64_t keep, int32_t base, std::vector<int32_t>& idx,
                std::vector<int32_t>& out) {
  idx.resize(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  auto key = [w](int32_t i) { return std::isnan(w[i]) ? -INFINITY : w[i]; };
  std::partial_sort(idx.begin(), idx.begin() + keep, idx.end(), [&key](int32_t a, int32_t b) {
    const float ka = key(a), kb = key(b);
    return ka > kb || (ka == kb && a < b);
  });
  for (int64_t j = 0; j < keep; ++j) out.push_back(base + idx[static_cast<size_t>(j)]);
}

void check_pair(const BlockMass& all, const BlockMass& gen, int64_t generation_block) {
  const char* w = "sparsed_select_paper";
  detail::validate_block_mass(w, all);
  detail::validate_block_mass(w, gen);
  const int64_t n = all.k_blocks();
  if (generation_block < 0 || generation_block >= n)
    throw_bad_argument(w, "generation_block", std::to_string(generation_block),
                       "must be in [0, k_blocks - 1 = " + std::to_string(n - 1) + "]");
  auto agree = [&](const char* field, int64_t a, int64_t b) {
    if (a != b)
      throw_bad_argument(w, field, std::to_string(b), "must equal " + std::to_string(a) + " (from all)");
  };
  agree("generation.heads", all.heads, gen.heads);
  agree("generation.q_len", all.q_len, gen.q_len);
  agree("generation.q_block", all.q_block, gen.q_block);
  agree("generation.k_block", all.k_block, gen.k_block);
  agree("generation.kv_len", all.kv_len - generation_block * all.k_block, gen.kv_len);
}

}  // namespace

int64_t sparsed_paper_keep(double select, int64_t n) {
  if (!(select > 0.0 && select <= 1.0))
    throw_bad_argument("sparsed_paper_keep", "select", detail::fmt_param(select), "must be in (0, 1]");
  if (n <= 0) throw_bad_argument("sparsed_paper_keep", "n", std::to_string(n), "must be positive");
  const auto k = static_cast<int64_t>(std::floor(select * static_cast<double>(n))) + 1;
  return std::min(k, n);
}

BlockMask sparsed_select_paper(const BlockMass& all, const BlockMass& generation, int64_t generation_block,
                               double select) {
  detail::refuse_causal_mass("sparsed_select_paper", all);
  check_pair(all, generation, generation_block);
  const int64_t n = all.k_blocks(), n_gen = n - generation_block, rows = all.heads * all.q_blocks();
  const int64_t keep_all = sparsed_paper_keep(select, n), keep_gen = sparsed_paper_keep(select, n_gen);
  std::vector<std::vector<int32_t>> kept(static_cast<size_t>(rows));
  detail::parallel_for(resolve_threads(KernelOptions{}), rows, [&](int64_t begin, int64_t end) {
    std::vector<int32_t> idx, row;
    for (int64_t r = begin; r < end; ++r) {
      row.clear();
      top_blocks(all.mass.data() + r * n, n, keep_all, 0, idx, row);
      // Of the first selection only the prompt blocks stay.
      row.erase(std::remove_if(row.begin(), row.end(), [&](int32_t b) { return b >= generation_block; }), row.end());
      top_blocks(generation.mass.data() + r * n_gen, n_gen, keep_gen, static_cast<int32_t>(generation_block), idx,
                 row);
      std::sort(row.begin(), row.end());
      kept[static_cast<size_t>(r)] = row;
    }
  });
  BlockMask m{all.heads, all.q_len, all.kv_len, all.q_block, all.k_block, {}, {}};
  m.row_ptr.assign(static_cast<size_t>(rows + 1), 0);
  for (int64_t r = 0; r < rows; ++r) {
    const auto& row = kept[static_cast<size_t>(r)];
    m.row_ptr[r + 1] = m.row_ptr[r] + static_cast<int64_t>(row.size());
    m.col_idx.insert(m.col_idx.end(), row.begin(), row.end());
  }
  return m;
}

int64_t sparsed_paper_generation_block(int64_t prefix_len, int64_t kv_len, int64_t block_size) {
  const char* w = "sparsed_paper_generation_block";
  if (block_size <= 0) throw_bad_argument(w, "block_size", std::to_string(block_size), "must be positive");
  if (kv_len <= 0) throw_bad_argument(w, "kv_len", std::to_string(kv_len), "must be positive");
  if (prefix_len < 0 || prefix_len > kv_len)
    throw_bad_argument(w, "prefix_len", std::to_string(prefix_len), "must be in [0, kv_len = " + std::to_string(kv_len) + "]");
  // The authors' code: the first block that starts inside the generated part,
  // or the last block when none does.
  const int64_t n = (kv_len + block_size - 1) / block_size;
  return std::min((prefix_len + block_size - 1) / block_size, n - 1);
}

SessionConfig sparsed_paper_config(int64_t total_steps, int64_t prefix_len, int64_t seq_len) {
  const char* w = "sparsed_paper_config";
  if (total_steps <= 0) throw_bad_argument(w, "total_steps", std::to_string(total_steps), "must be positive");
  if (seq_len <= 0) throw_bad_argument(w, "seq_len", std::to_string(seq_len), "must be positive");
  if (prefix_len < 0 || prefix_len > seq_len)
    throw_bad_argument(w, "prefix_len", std::to_string(prefix_len), "must be in [0, seq_len]");
  SessionConfig c;
  c.policy = Policy::sparsed;
  c.total_steps = total_steps;
  // Steps 0..E run dense, E = int(S * skip) + 1 with skip 0.2; E records.
  c.warmup_steps = std::min(total_steps, static_cast<int64_t>(std::floor(0.2 * static_cast<double>(total_steps))) + 2);
  // Their long-context runs (4K-64K prompts): block 128, select 0.3; their
  // short-context runs: block 32, select 0.5.
  const bool long_context = seq_len >= 4096;
  c.block_size = long_context ? 128 : 32;
  c.topk_ratio = long_context ? 0.3 : 0.5;
  c.paper_select = true;
  c.paper_prefix_len = prefix_len;
  c.kernel.q_tile_rows = c.block_size;  // the record step's one-pass masses
  c.kernel.k_block = c.block_size;
  return c;
}

}  // namespace spattn
