// Sessions configured from a tuning profile.
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "spattn/profile.hpp"

namespace spattn {

std::optional<Profile> load_default_profile(bool strict) {
  const std::string path = default_profile_path();
  if (path.empty()) return std::nullopt;  // no location known (no SPATTN_PROFILE, XDG_CONFIG_HOME or HOME)
  const char* env = std::getenv("SPATTN_PROFILE");
  if (env == nullptr || *env == '\0') {  // the per-user path: absent is fine
    std::error_code ec;
    if (!std::filesystem::exists(path, ec) && !ec) return std::nullopt;
  }
  return Profile::load_for_machine(path, strict);
}

SessionConfig apply_profile_entry(const ProfileEntry& e, SessionConfig base) {
  base.block_size = e.block_size;
  base.topk_ratio = e.topk_ratio;
  base.unisparse.topk_ratio = e.topk_ratio;
  base.warmup_fraction = e.warmup_fraction;
  base.kernel.q_tile_rows = e.q_tile_rows;
  base.kernel.threads = e.threads;
  base.pooled_budget = e.pooled_budget;
  base.drift_check_every = e.drift_check_every;
  base.drift_min_recall = e.drift_min_recall;
  base.mass_budget.reset();
  if (e.mass_tau > 0) {
    MassBudget b;
    b.tau = e.mass_tau;
    b.max_share = e.max_block_share;
    b.dense_head_share = e.dense_head_share;
    base.mass_budget = b;
  }
  return base;
}

namespace {

// The entry a session uses under fit, with the one line on stderr when the
// best one does not fit or was tuned at another dtype (nullptr: the
// documented defaults).
const ProfileEntry* chosen_entry(const ProfileMatch& m, ProfileFit fit, const TunedShape& key) {
  const std::string request = "(request: heads " + std::to_string(key.heads) + ", seq_len " +
                              std::to_string(key.seq_len) + ", head_dim " + std::to_string(key.head_dim) +
                              ", steps " + std::to_string(key.steps) + ", dtype " + key.dtype + ")";
  const bool use = m.entry != nullptr && (m.fits || fit == ProfileFit::lenient);
  if (m.other_dtype && use) {
    std::cerr << "spattn: note: profile: no entry for dtype " << key.dtype << "; using the " << m.entry->shape.dtype
              << " entry's pattern (block " << m.entry->block_size << ", topk " << m.entry->topk_ratio << "), not its tiles "
              << request << (m.fits ? "" : "; " + m.why + " (lenient)") << "\n";
  } else if (!m.fits) {
    std::cerr << "spattn: warning: profile: " << m.why << " " << request << "; "
              << (use ? "using it anyway (lenient)" : "documented defaults used") << "\n";
  }
  return use ? m.entry : nullptr;
}

// The query tile rows a session at key.dtype takes from entry e (nullptr:
// the documented defaults). Tiles are timed on one dtype's kernels: an entry
// of another dtype, or none at all, leaves base's (0: the session dtype's
// preferred tiles, resolve_tiles()).
int64_t q_tile_rows_from(const ProfileEntry* e, const TunedShape& key, int64_t base_rows) {
  return e != nullptr && e->shape.dtype == key.dtype ? e->q_tile_rows : base_rows;
}

// apply_profile_entry for a session at key.dtype, e nullptr meaning the
// documented defaults, with q_tile_rows_from's tiles.
SessionConfig apply_chosen(const ProfileEntry* e, const TunedShape& key, SessionConfig base) {
  const int64_t rows = q_tile_rows_from(e, key, base.kernel.q_tile_rows);
  base = apply_profile_entry(e != nullptr ? *e : Profile::default_entry(key), base);
  base.kernel.q_tile_rows = rows;
  return base;
}

}  // namespace

SessionConfig session_config_for_layer(const Profile& profile, const AttentionShape& shape, int layer,
                                       SessionConfig base, ProfileFit fit, DType dtype) {
  TunedShape key{shape.heads, shape.kv_heads, shape.kv_len, shape.head_dim, base.total_steps};
  key.dtype = dtype_name(dtype);
  key.cache = cache_mode_name(base.cache);
  if (layer >= 0) {
    const ProfileMatch sparse = profile.match_any_dtype(key, "sparsed", layer),
                       dense = profile.match_any_dtype(key, "dense", layer);
    // A layer has one of the two; an entry at the session's dtype wins.
    const bool sparse_first = sparse.entry != nullptr && (!sparse.other_dtype || dense.entry == nullptr ||
                                                          dense.other_dtype);
    const ProfileMatch& m = sparse_first ? sparse : dense;
    if (m.entry != nullptr) {
      const ProfileEntry* e = chosen_entry(m, fit, key);
      if (e == nullptr) return apply_chosen(nullptr, key, base);
      if (e->policy == "dense") {
        base.policy = Policy::dense;
        base.kernel.q_tile_rows = q_tile_rows_from(e, key, base.kernel.q_tile_rows);
        base.kernel.threads = e->threads;
        return base;
      }
      base.policy = Policy::sparsed;
      return apply_chosen(e, key, base);
    }
  }
  return session_config_from_profile(profile, shape, base, fit, dtype);
}

SessionConfig session_config_from_profile(const Profile& profile, const AttentionShape& shape,
                                          SessionConfig base, ProfileFit fit, DType dtype) {
  TunedShape key{shape.heads, shape.kv_heads, shape.kv_len, shape.head_dim, base.total_steps};
  key.dtype = dtype_name(dtype);
  key.cache = cache_mode_name(base.cache);
  const ProfileEntry* e = chosen_entry(profile.match_any_dtype(key, policy_name(base.policy), -1), fit, key);
  return apply_chosen(e, key, base);
}

}  // namespace spattn
