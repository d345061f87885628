#pragma once
// DiffusionAttention: one object per attention layer, step() once per
// denoising step. It runs the first warmup steps dense, records the SparseD
// pattern at the last dense step and reuses it (optionally refreshing it),
// or applies UniSparse / DPad / window+sink, and reports what ran and how long.
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "spattn/attention.hpp"
#include "spattn/kv_cache.hpp"
#include "spattn/patterns.hpp"

namespace spattn {
namespace detail {
class StepPolicy;
class CachedSteps;
}

enum class Policy { dense, sparsed, unisparse, dpad, dpad_sparsed, window };
const char* policy_name(Policy p);
Policy parse_policy(const std::string& name);  // throws spattn::Error naming the value

// Cached decoding: which rows a cached step recomputes and attends (the
// others' K/V come from the session's KVCache, refreshed by full steps).
//   none   no cache: every step is a full step
//   block  Fast-dLLM's prefix cache: the decoding block and every row after
//          it, [begin, kv_len)
//   dual   Fast-dLLM's dual cache: the decoding block alone, [begin, end)
//   rows   dKV-Cache / dLLM-Cache: the rows set_query_rows lists
enum class CacheMode { none, block, dual, rows };
const char* cache_mode_name(CacheMode m);         // "none", "block", "dual", "rows"
CacheMode parse_cache_mode(const std::string& name);  // throws spattn::Error naming the value

struct SessionConfig {
  Policy policy = Policy::sparsed;
  int64_t total_steps = 64;      // S
  double warmup_fraction = 0.2;  // first ceil(w * S) steps run dense
  int64_t refresh_every = 0;     // re-record the SparseD pattern every R sparse steps (0: never)
  int64_t block_size = 64;       // query and key block size of the sparse paths
  double topk_ratio = 0.1;       // SparseD: share of key blocks kept per query block
  bool pooled_budget = false;    // SparseD: pool that budget across heads (sparsed_select_pooled)
  // SparseD: an adaptive budget instead of topk_ratio (sparsed_select_mass):
  // per row the blocks holding mass_budget->tau of its mass, heads above
  // dense_head_share run dense. Not with pooled_budget.
  std::optional<MassBudget> mass_budget;
  // SparseD: re-record the pattern at the first step of each new decoding
  // block (set_decoding_block), as a block-wise sampler moves on.
  bool record_on_new_block = false;
  // SparseD exactly as its authors' code selects (sparsed_select_paper)
  // instead of topk_ratio's ceil rule: int(topk_ratio * n) + 1 blocks per row,
  // chosen over all keys for the prompt blocks [0, paper_prefix_len) and over
  // the generation keys alone for the rest. sparsed_paper_config() sets it
  // up with the authors' defaults. Not with pooled_budget or mass_budget.
  bool paper_select = false;
  int64_t paper_prefix_len = 0;  // prompt tokens, in [0, kv_len]
  // >= 0: exactly this many dense steps first (overrides warmup_fraction; the
  // SparseD policies still run at least one); -1: ceil(warmup_fraction * S).
  int64_t warmup_steps = -1;
  // SparseD: a drift check every drift_check_every sparse steps (0: never).
  // It takes drift_sample_blocks query blocks per head (spread over the
  // sequence, a different set at each check; one block costs a small share
  // of a dense step, smaller at larger N), computes the exact share of
  // their attention mass inside the cached pattern (one LSE and one QK pass
  // over the sampled rows only), and when any head keeps less than
  // drift_min_recall the step re-records the pattern instead of reusing it.
  int64_t drift_check_every = 0;
  int64_t drift_sample_blocks = 1;  // per check; the checks rotate through the blocks
  double drift_min_recall = 0.9;
  UnisparseParams unisparse;     // its block is overridden by block_size
  DpadParams dpad;               // DPad's prefix / current block / window / sigma
  WindowSinkParams window;       // its block is overridden by block_size
  KernelOptions kernel;          // threads, dense tiles
  // Cached decoding (see CacheMode and DiffusionAttention::cached_step):
  // dense, sparsed, unisparse and window; not the DPad policies (yet).
  CacheMode cache = CacheMode::none;
  void validate() const;         // throws spattn::Error naming the field
};

// Dense warmup steps of a session: ceil(warmup_fraction * total_steps), at
// least 1 for the SparseD policies (the pattern needs one full step), at most
// total_steps. DiffusionAttention::warmup_steps() and the tools use it.
int64_t warmup_steps_for(Policy policy, double warmup_fraction, int64_t total_steps);
// The same for a whole config: config.warmup_steps when >= 0 (at least 1 for
// the SparseD policies, at most total_steps), else warmup_steps_for above.
int64_t warmup_steps_for(const SessionConfig& config);

// SparseD as its authors run it: policy sparsed; dense steps 0..E with
// E = int(0.2 * total_steps) + 1 (E records the pattern, reused to the end);
// paper_select with prefix_len; block 128 and select 0.3 from seq_len 4096
// on (their long-context runs), else block 32 and select 0.5 (their short
// ones); kernel tiles equal to the block (one-pass record step).
SessionConfig sparsed_paper_config(int64_t total_steps, int64_t prefix_len, int64_t seq_len);

enum class StepPath {
  dense,           // full attention
  dense_record,    // full attention + SparseD pattern recorded
  sparse_cached,   // block-sparse on the cached SparseD pattern
  sparse_selected, // pattern selected this step (UniSparse, window+sink), then block-sparse
  gathered,        // DPad: attention among the kept tokens only (dropped rows are zero)
};
const char* step_path_name(StepPath p);

struct StepReport {
  int64_t step = 0;
  StepPath path = StepPath::dense;
  double ms = 0.0;         // whole step, selection included
  double select_ms = 0.0;  // pattern building / selection part of ms
  double density = 1.0;    // share of (query block, key block) pairs visited
  int64_t dense_heads = 0;  // sparse steps: heads that visited every key block (adaptive budget)
  // SparseD drift check (drift_check_every): the lowest per-head mass share
  // the cached pattern kept on the sampled query blocks (NaN: no check ran
  // this step) and the check's milliseconds (part of ms). A recall below
  // drift_min_recall makes this step a dense_record one.
  double drift_recall = std::numeric_limits<double>::quiet_NaN();
  double drift_ms = 0.0;
  // Query rows the step attended: kv_len for a full step (DPad: the kept
  // tokens), the cached rows for a cached_step.
  int64_t query_rows = 0;
};

class DiffusionAttention {
 public:
  DiffusionAttention(const AttentionShape& shape, const SessionConfig& config);
  ~DiffusionAttention();
  DiffusionAttention(DiffusionAttention&&) noexcept;
  DiffusionAttention& operator=(DiffusionAttention&&) noexcept;

  // Runs the next denoising step; throws spattn::Error past total_steps.
  // With a cache (config.cache != none) it is also a refresh: every row's K
  // and V are written into the session's KVCache, and the SparseD policies
  // record their pattern at every refresh from the last warmup step on.
  StepReport step(InputView q, InputView k, InputView v, OutputView out);
  // A cached step (config.cache != none, after a first step()): q, k, v and
  // out hold only cached_rows() ([heads][rows][d], k and v [kv_heads][rows][d],
  // in cached_rows() order). Their K/V replace the cached ones, then they
  // attend every cached token: dense during the warmup steps, before any
  // pattern exists, or after a failed drift check until the next refresh;
  // else on the rows of the last refresh's pattern (SparseD's recorded,
  // UniSparse's or window's selected) for the query blocks that hold them.
  // The drift check (drift_check_every) samples the step's rows. Counts as a
  // step of total_steps.
  StepReport cached_step(InputView q, InputView k, InputView v, OutputView out);
  // CacheMode::rows: the rows the next cached steps recompute (strictly
  // increasing, each < kv_len).
  void set_query_rows(std::vector<int32_t> rows);
  // The rows a cached step attends now (block and dual follow
  // set_decoding_block, which they need).
  std::vector<int32_t> cached_rows() const;
  // The session's cache (nullptr without one, or before the first step).
  const KVCache* kv_cache() const;

  // DPad's current block moves as decoding goes on; a change re-records the
  // dpad+sparsed pattern at the next step.
  void set_dpad(const DpadParams& params);
  // The block a block-wise sampler decodes now, [begin, end). With
  // record_on_new_block, a change re-records the SparseD pattern at the next
  // step (sparsed and dpad+sparsed). Tokens, not blocks; begin < end <= kv_len.
  void set_decoding_block(int64_t begin, int64_t end);

  int64_t warmup_steps() const;  // ceil(warmup_fraction * total_steps), >= 1 for SparseD policies
  int64_t steps_done() const { return static_cast<int64_t>(reports_.size()); }
  const std::vector<StepReport>& reports() const { return reports_; }
  // The SparseD pattern in use (over the DPad-compacted keys for dpad+sparsed).
  const BlockMask* cached_pattern() const;
  // The block mask the last step ran on (over the full keys), or nullptr when
  // it ran dense or gathered, or on DPad-compacted keys.
  const BlockMask* last_mask() const { return last_mask_; }
  // DPad policies: the tokens kept at the current DPad parameters (updated by
  // step()); the other tokens are dropped from the step, as queries and as
  // keys, and their output rows are zero. Empty before the first step.
  const std::vector<int32_t>& dpad_kept() const;
  const AttentionShape& shape() const { return shape_; }
  const SessionConfig& config() const { return config_; }

 private:
  AttentionShape shape_;
  SessionConfig config_;
  std::unique_ptr<detail::StepPolicy> policy_;  // what each step runs (patterns/step_policies.hpp)
  std::unique_ptr<detail::CachedSteps> cached_;  // the KV cache and its steps (patterns/cached_steps.hpp)
  int64_t block_begin_ = -1, block_end_ = -1;    // the decoding block, for the cache modes
  std::vector<int32_t> query_rows_;               // CacheMode::rows
  const BlockMask* last_mask_ = nullptr;
  const BlockMask* refresh_mask_ = nullptr;  // the last full step's selected mask (UniSparse, window)
  std::vector<StepReport> reports_;
};

}  // namespace spattn
