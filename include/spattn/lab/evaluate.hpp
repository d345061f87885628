#pragma once
// Runs a DiffusionAttention policy over a workload (synthetic or captured .npy
// steps) next to dense attention, and measures time and accuracy per step:
// what spattn-eval prints and what the tuner's objective is made of.
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "spattn/session.hpp"
#include "spattn/lab/workload.hpp"

namespace spattn {

struct WorkloadSpec {
  std::string npy_dir;          // empty: the synthetic workload below
  int layer = -1;               // layer folder of a trace (-1: the first)
  SyntheticConfig synthetic;
  // A trace's block-wise decoding (for record_on_new_block and DPad): with
  // npy_steps_per_block > 0 the folder stepNNNN decodes block
  // NNNN / npy_steps_per_block of synthetic.decode_block tokens after the
  // npy_prompt_len prompt tokens. 0: unknown (no decoding block is set).
  int64_t npy_prompt_len = 0;
  int64_t npy_steps_per_block = 0;
};

class WorkloadSource {
 public:
  explicit WorkloadSource(WorkloadSpec spec);  // throws spattn::Error on a bad spec or folder
  AttentionShape shape() const { return shape_; }
  int64_t steps() const;  // synthetic: config steps; npy: step folders
  // heads-major Q/K/V of step s.
  void step(int64_t s, std::vector<float>& q, std::vector<float>& k, std::vector<float>& v) const;
  std::string describe() const;  // "synthetic" or "npy:<dir>"
  // The block being decoded at step s when the synthetic workload decodes
  // block-wise (SyntheticConfig::decode_block), else {0, 0}. evaluate() moves
  // a DPad policy's current block along with it.
  std::pair<int64_t, int64_t> decoding_block(int64_t s) const;

 private:
  WorkloadSpec spec_;
  std::optional<SyntheticWorkload> synthetic_;  // built once: its derived state serves every step
  AttentionShape shape_;
  std::vector<std::string> npy_steps_;
};

struct StepEval {
  int64_t step = 0;
  StepPath path = StepPath::dense;
  double ms = 0, dense_ms = 0, select_ms = 0;
  double density = 1, recall = 1, cosine = 1, rel_l2 = 0;  // recall: NaN where no mask applies
  int64_t dense_heads = 0;  // heads that visited every key block on a sparse step
  double drift_recall = std::numeric_limits<double>::quiet_NaN();  // the session's drift check (NaN: none)
  double drift_ms = 0;
  int64_t query_rows = 0;  // rows the step attended (fewer than the sequence on a cached step)
  std::vector<double> head_cosine, head_recall;  // per query head (recall: steps on a mask over all keys)
};

struct EvalResult {
  std::vector<StepEval> steps;
  // mean_density covers every step (dense ones count 1); mean_recall only the
  // steps that ran on a block mask over the full keys (NaN if none did).
  double mean_cosine = 0, min_cosine = 0, mean_density = 0, mean_rel_l2 = 0, mean_recall = 0;
  double sparse_total_ms = 0, dense_total_ms = 0, speedup_vs_dense = 0;
  // Pattern records after the first (refresh, new block, drift) and the drift
  // checks' time as a share of the mean dense step.
  int64_t rerecords = 0, drift_checks = 0;
  double drift_share_of_dense_step = 0;
};

struct EvalOptions {
  int64_t max_steps = 0;        // 0: all the workload's steps
  bool recall = true;           // attention-mass recall of the mask (one extra QK pass per step)
  // Element type Q, K and V are handed to the session and the dense baseline
  // in (rounded from the workload's fp32); the output stays fp32. Accuracy is
  // then against the dense flash output on the same rounded inputs: what the
  // sparsity costs at that dtype.
  DType dtype = DType::fp32;
  std::function<void(const StepEval&)> on_step;  // progress callback
  // With a cache mode (SessionConfig::cache): a full step (a refresh) at the
  // first step and, unless refresh_first_only, at each step that decodes a
  // new block (the workload's decoding_block); the others are cached steps
  // over the mode's rows (rows mode: every other row of the decoding block,
  // standing for its not-yet-decoded ones), compared with dense attention of
  // the same rows against the same cached K/V (its time is the dense_ms).
  // refresh_first_only serves traces that captured one step per block.
  bool refresh_first_only = false;
};

// Accuracy is measured against the dense flash output of the same step (fp32,
// itself within 2e-5 of the double-precision reference: see the kernel tests);
// a double-precision reference at N = 8192 would take minutes per step.
// DPad policies drop the far suffix from the step, so their accuracy is taken
// over the kept tokens' rows only (the rows the step produces). With a cache
// mode, see EvalOptions::refresh_first_only.
EvalResult evaluate(const WorkloadSource& workload, SessionConfig config, const EvalOptions& opts = {});
// The means, minimum and totals of res from res.steps (what evaluate ends
// with): a NaN cosine makes min_cosine NaN; mean_density is in [0, 1].
void summarize_steps(EvalResult& res);

}  // namespace spattn
