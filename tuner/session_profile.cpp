// Sessions configured from a tuning profile.
#include <cstdlib>
#include <filesystem>

#include "spattn/profile.hpp"

namespace spattn {

std::optional<Profile> load_default_profile(bool strict) {
  const std::string path = default_profile_path();
  const char* env = std::getenv("SPATTN_PROFILE");
  if (env == nullptr || *env == '\0') {  // the fallback path: absent is fine
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

SessionConfig session_config_for_layer(const Profile& profile, const AttentionShape& shape, int layer,
                                       SessionConfig base) {
  const TunedShape key{shape.heads, shape.kv_heads, shape.kv_len, shape.head_dim, base.total_steps};
  if (layer >= 0) {
    if (const ProfileEntry* e = profile.lookup(key, "sparsed", layer)) {
      base.policy = Policy::sparsed;
      return apply_profile_entry(*e, base);
    }
    if (const ProfileEntry* e = profile.lookup(key, "dense", layer)) {
      base.policy = Policy::dense;
      base.kernel.q_tile_rows = e->q_tile_rows;
      base.kernel.threads = e->threads;
      return base;
    }
  }
  return session_config_from_profile(profile, shape, base);
}

SessionConfig session_config_from_profile(const Profile& profile, const AttentionShape& shape,
                                          SessionConfig base) {
  const TunedShape key{shape.heads, shape.kv_heads, shape.kv_len, shape.head_dim, base.total_steps};
  const ProfileEntry* e = profile.lookup(key, policy_name(base.policy));
  return apply_profile_entry(e ? *e : Profile::default_entry(key), base);
}

}  // namespace spattn
