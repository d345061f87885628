#pragma once
// Per-machine tuning profiles: what spattn-tune measured on this CPU and the
// parameters it chose, per shape. Stored as YAML (schema: tuning/README.md).
//
// Files are written atomically (temp file + fsync + rename, under an advisory
// lock on "<path>.lock"), so a reader never sees a half-written profile and
// concurrent tuners merging into one file keep each other's entries. Loading
// a malformed file raises spattn::Error naming the file and the line.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "spattn/session.hpp"

namespace spattn {

// The newest profile schema this build reads and the one it writes.
// 5 added the entry's cache mode (shape.cache); 4 added the entry's dtype and chosen.drift_check_every / drift_min_recall; 3 added the entry's layer and chosen.mass_tau /
// max_block_share / dense_head_share; 2 added chosen.pooled_budget. Older
// schemas still read (dtype fp32).
inline constexpr int kProfileSchemaVersion = 5;

// What a profile was measured on.
struct MachineInfo {
  std::string cpu_model;  // /proc/cpuinfo "model name" (aarch64: from "CPU part"), else "unknown"
  std::string isa;        // isa_name(active_isa()) at detection time
  int cores = 1;          // std::thread::hardware_concurrency()
  int numa_nodes = 1;     // libnuma's configured nodes (1 without libnuma)
  int64_t l1d_bytes = 0;  // per-core L1 data cache; 0 = unknown
  int64_t l2_bytes = 0;
  int64_t l3_bytes = 0;

  // Filesystem-safe slug of cpu model and cores ([a-z0-9-], at most 96
  // characters), e.g. "Intel(R) Xeon(R) Processor" on 2 cores gives
  // "intel-xeon-processor-2c". Names the default profile file.
  std::string machine_id() const;
  // Reads this machine (cheap; not cached, so a set_isa() is seen).
  static MachineInfo detect();

  bool operator==(const MachineInfo&) const = default;
};

// The problem a profile entry was tuned for.
struct TunedShape {
  int64_t heads = 0;
  int64_t kv_heads = 0;
  int64_t seq_len = 0;   // tokens (q_len == kv_len in a diffusion step)
  int64_t head_dim = 0;
  int64_t steps = 0;     // denoising steps of the session
  std::string dtype = "fp32";  // element type of Q, K, V: dtype_name() of a DType (fp32, bf16, fp16)
  // The session's cache mode (cache_mode_name(): none, block, dual, rows): an
  // entry tuned on cached steps serves sessions in that mode; a cached
  // session with no entry of its mode takes a "none" one.
  std::string cache = "none";

  bool operator==(const TunedShape&) const = default;
};

// An entry fits a request when head_dim, dtype and policy (when the request
// names one) are equal, its seq_len is at most kProfileFitRatio times away
// from the request's, and so are its steps (when both are known). A setting
// tuned far from where it is used is not known to be safe there: the pattern
// budgets that held at N 4096 lose accuracy at N 32768.
inline constexpr double kProfileFitRatio = 2.0;
enum class ProfileFit {
  strict,   // an entry that does not fit is refused: the documented defaults apply (with a warning)
  lenient,  // the nearest entry is used anyway if only seq_len / steps are too far (with a warning)
};

struct ProfileEntry;
// What a lookup found: the best entry (fitting ones first, then the nearest
// with the same head_dim, dtype and policy), whether it fits, and if not why
// (a sentence naming the entry's and the request's values). other_dtype:
// match_any_dtype() took an entry tuned at another dtype (match() never does).
struct ProfileMatch {
  const ProfileEntry* entry = nullptr;
  bool fits = false;
  bool other_dtype = false;
  std::string why;
};

struct ProfileEntry {
  TunedShape shape;
  std::string workload = "synthetic";  // "synthetic" or "npy:<dir>"
  std::string policy = "sparsed";      // policy_name() of the session policy ("dense": run this layer dense)
  int layer = -1;                      // the model layer it was tuned on (-1: any layer)
  // Accuracy bound the choice had to meet (cosine similarity to dense).
  double min_mean_cosine = 0.99;  // mean over steps
  double min_step_cosine = 0.98;  // worst single step
  // Chosen parameters.
  int64_t block_size = 64;
  double topk_ratio = 0.1;       // in (0, 1]
  double warmup_fraction = 0.2;  // in [0, 1)
  int64_t q_tile_rows = 64;
  int threads = 0;  // 0: library default (SPATTN_NUM_THREADS / OpenMP)
  bool pooled_budget = false;  // SparseD budget pooled across heads (sparsed_select_pooled)
  // SparseD's adaptive budget (sparsed_select_mass) when mass_tau > 0.
  double mass_tau = 0.0;
  double max_block_share = 1.0;
  double dense_head_share = 1.0;
  // SparseD drift check (SessionConfig::drift_check_every / drift_min_recall); 0: none.
  int64_t drift_check_every = 0;
  double drift_min_recall = 0.9;
  // Measured with the chosen parameters (0 where not measured).
  double dense_ms = 0.0;   // whole session, all steps dense
  double sparse_ms = 0.0;  // whole session with the chosen parameters
  double speedup = 0.0;    // dense_ms / sparse_ms
  double mean_cosine = 0.0;
  double min_cosine = 0.0;
  double mean_density = 0.0;  // mean share of visited blocks over the steps
  std::string tuned_at;       // UTC, ISO 8601 (utc_timestamp_now())

  // Entries with the same key are the same tuning problem: merge replaces.
  bool same_key(const ProfileEntry& o) const {
    return shape == o.shape && workload == o.workload && policy == o.policy && layer == o.layer;
  }
  bool operator==(const ProfileEntry&) const = default;
};

struct Profile {
  int schema_version = kProfileSchemaVersion;
  MachineInfo machine;
  std::vector<ProfileEntry> entries;

  // Parses and validates; throws spattn::Error "spattn: profile '<file>':
  // line N: <why>" on bad YAML, a missing key (line of the enclosing map), a
  // wrong type, an out-of-range value, an unknown key, a duplicate entry or a
  // schema_version newer than kProfileSchemaVersion. A missing file is an
  // Error naming it.
  static Profile load(const std::string& path);
  static Profile from_yaml_string(const std::string& text, const std::string& source_name);
  std::string to_yaml() const;

  // Replaces this file with this profile, atomically (see top of file).
  void save(const std::string& path) const;
  // Under the lock: re-reads the file (if any), merges this profile's entries
  // into it (same key replaced, others kept), takes this machine block, and
  // writes the result atomically. Throws spattn::Error if the existing file
  // is malformed, newer, or belongs to another machine (matches() false).
  // Returns what was written.
  Profile save_merged(const std::string& path) const;

  // Replaces the entry with the same shape + workload + policy in place, or appends.
  void merge(const ProfileEntry& entry);
  void merge(const Profile& other);  // every entry of other

  // The entry with exactly this key, or nullptr.
  const ProfileEntry* find(const TunedShape& shape, std::string_view workload,
                           std::string_view policy) const;
  // The best entry for a shape among those with its head_dim, dtype, layer
  // (-1: entries tuned for any layer) and, when not empty, policy: entries
  // that fit (see kProfileFitRatio) first; then the same (heads, kv_heads);
  // then the nearest seq_len by |log(seq_len / entry.seq_len)| (ties: the
  // larger seq_len); then the nearest steps (same measure); then file order.
  ProfileMatch match(const TunedShape& shape, std::string_view policy = {}, int layer = -1) const;
  // match(); when that finds no entry, match() at the other dtypes (fp32,
  // bf16, fp16, in that order), other_dtype set: what sessions use
  // (session_config_from_profile).
  ProfileMatch match_any_dtype(const TunedShape& shape, std::string_view policy = {}, int layer = -1) const;
  // match()'s entry if it fits, else nullptr (use default_entry()).
  const ProfileEntry* lookup(const TunedShape& shape, std::string_view policy = {}, int layer = -1) const;
  // The documented defaults: block 64, topk 0.1, warmup 0.2, q_tile_rows 64,
  // threads 0, policy sparsed, workload synthetic, nothing measured.
  static ProfileEntry default_entry(const TunedShape& shape);

  // Same cpu_model and isa: the measurements apply here.
  bool matches(const MachineInfo& here) const;
  // load(), then check the machine: a profile from another CPU / ISA is
  // returned with a warning on stderr, or refused (spattn::Error) when strict.
  static Profile load_for_machine(const std::string& path, bool strict,
                                  const MachineInfo& here = MachineInfo::detect());

  bool operator==(const Profile&) const = default;
};

// One entry into a profile file, keeping the others (Profile{machine,{entry}}.save_merged(path)).
Profile merge_into_file(const std::string& path, const ProfileEntry& entry,
                        const MachineInfo& machine = MachineInfo::detect());

// Before a long search: throws spattn::Error when merging into path would fail
// (not a regular file, read-only, a folder this user cannot write in, a
// malformed profile, or one of another machine). A file that does not exist
// yet passes.
void check_profile_destination(const std::string& path, const MachineInfo& here = MachineInfo::detect());

// The profile at default_profile_path() through load_for_machine(). When
// $SPATTN_PROFILE names it, any failure to read it is an Error (the user asked
// for that file); the fallback path may be missing: then nullopt.
std::optional<Profile> load_default_profile(bool strict = false);

// base with the parameters entry chose: block size, top-k ratio, warmup
// fraction, query tile rows, threads, the budget rule (per-head, pooled or
// adaptive) and the drift check (policy and steps stay base's).
SessionConfig apply_profile_entry(const ProfileEntry& entry, SessionConfig base);
// The session of one model layer: the entry tuned for that layer (policy
// sparsed or dense) if the profile has one, else session_config_from_profile.
// dtype: the element type the session's Q/K/V will have; entries tuned at it
// come first (see session_config_from_profile for the fallback).
SessionConfig session_config_for_layer(const Profile& profile, const AttentionShape& shape, int layer,
                                       SessionConfig base = {}, ProfileFit fit = ProfileFit::strict,
                                       DType dtype = DType::fp32);
// base with the parameters of the profile entry for this shape,
// base.total_steps and base.policy (Profile::match). An entry that does not
// fit is refused (strict: Profile::default_entry()'s parameters) or used
// (lenient, if only seq_len / steps are too far); either way one line on
// stderr says which entry and why. When the profile has no entry at dtype,
// the entry another dtype would get is used for its pattern (block size,
// budgets, warmup, drift check: properties of the model's attention, not of
// the kernels) with base's query tiles (0: the dtype's preferred ones), and
// one line on stderr says so. The documented defaults also keep base's
// tiles. What a DiffusionAttention built from a profile runs with.
SessionConfig session_config_from_profile(const Profile& profile, const AttentionShape& shape,
                                          SessionConfig base = {}, ProfileFit fit = ProfileFit::strict,
                                          DType dtype = DType::fp32);

// Where a profile is read and written when no path is given, independent of
// the working directory: $SPATTN_PROFILE if set and not empty, else
// $XDG_CONFIG_HOME/spattn/<machine_id>.yaml, else
// $HOME/.config/spattn/<machine_id>.yaml; empty when none of these variables
// is set (then a path must be given).
std::string default_profile_path();

// Current UTC time as "YYYY-MM-DDTHH:MM:SSZ" (for ProfileEntry::tuned_at).
std::string utc_timestamp_now();

}  // namespace spattn
