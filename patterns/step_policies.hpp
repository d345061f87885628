#pragma once
// The session's per-policy behaviour as small strategy objects: each decides
// what one denoising step runs (dense, record, cached pattern, selected
// pattern, DPad compaction) and calls the kernels / engine. DiffusionAttention
// owns one and knows nothing of the policies' internals. Internal header.
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "spattn/session.hpp"

namespace spattn::detail {

class KVPlan;

// One step's tensors, with the shape they have (DPad passes compacted ones).
struct StepTensors {
  AttentionShape shape;
  InputView q, k, v;
  OutputView out;
  // Cached decoding: the session's KV cache, just refreshed with exactly k
  // and v (in blocks of the session's block_size): the step reads it instead
  // of packing K/V again. nullptr: the step packs its own.
  const KVPlan* plan = nullptr;
};

class StepPolicy {
 public:
  virtual ~StepPolicy() = default;
  // Runs step s (0-based); fills path, density and select_ms of the report.
  virtual StepReport run(int64_t s, const StepTensors& t) = 0;
  // The block mask the last step ran on, over the caller's (uncompacted)
  // keys; nullptr when it ran dense or gathered.
  virtual const BlockMask* last_mask() const { return nullptr; }
  // The cached SparseD pattern, if this policy keeps one.
  virtual const BlockMask* cached_pattern() const { return nullptr; }
  // DPad: the kept tokens (empty for other policies) and a new geometry.
  virtual const std::vector<int32_t>& dpad_kept() const;
  virtual void set_dpad(const DpadParams&) {}
  // The keys changed under the policy (DPad kept a new set): forget patterns.
  virtual void reset_pattern() {}
  // A block-wise sampler moved to another block.
  virtual void set_decoding_block(int64_t /*begin*/, int64_t /*end*/) {}
};

std::unique_ptr<StepPolicy> make_step_policy(const SessionConfig& config);

}  // namespace spattn::detail
