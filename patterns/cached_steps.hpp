#pragma once
// The cached-decoding half of the DiffusionAttention session: the KV cache
// a full step refreshes, and the cached steps that attend a few rows against
// it on the pattern of the last refresh. Internal header.
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "spattn/kv_cache.hpp"
#include "spattn/session.hpp"

namespace spattn::detail {

class CachedSteps {
 public:
  CachedSteps(const AttentionShape& shape, const SessionConfig& config);
  // A full step ran: all its K/V into the cache (made at the first refresh,
  // keeping K/V as k's dtype); a failed drift check is forgotten.
  void refresh(InputView k, InputView v);
  // Cached step s over `rows` (q, k, v, out hold those rows); pattern: the
  // last refresh's (nullptr: dense). Fills path, density and the drift fields.
  StepReport run(int64_t s, std::span<const int32_t> rows, InputView q, InputView k, InputView v, OutputView out,
                 const BlockMask* pattern);
  const KVCache* cache() const { return cache_ ? &*cache_ : nullptr; }

 private:
  double drift_recall(std::span<const int32_t> rows, InputView q, const BlockMask& pattern);

  AttentionShape shape_;
  SessionConfig c_;
  int64_t warm_;
  std::optional<KVCache> cache_;
  bool drifted_ = false;     // a drift check failed since the last refresh
  int64_t sparse_steps_ = 0;  // cached sparse steps since the last refresh (the drift check's clock)
  int64_t checks_ = 0;        // drift checks so far: rotates the sampled rows
  std::vector<float> sample_q_;
};

}  // namespace spattn::detail
