// Tuning profiles: merge and merge-save, lookup of the nearest entry, the
// machine check and the default path. The YAML schema is profile_schema.cpp,
// the file handling profile_file.cpp.
#include "spattn/profile.hpp"

#include <cmath>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <limits>
#include <string>

#include "spattn/error.hpp"
#include "tuner/profile_file.hpp"

namespace spattn {
namespace {

using detail::fail_file;
using detail::FileLock;
using detail::in_quotes;
using detail::read_file;
using detail::write_atomically;
using detail::check_writable_destination;

// The text to write for p, checked by reading it back: a profile that could
// not be loaded is never written.
std::string checked_yaml(const Profile& p, const std::string& path) {
  std::string text = p.to_yaml();
  (void)Profile::from_yaml_string(text, path + " (refused before writing)");
  return text;
}

std::string describe(const MachineInfo& m) { return in_quotes(m.cpu_model) + " (isa " + m.isa + ")"; }

double log_distance(int64_t a, int64_t b) {
  if (a <= 0 || b <= 0) return std::numeric_limits<double>::infinity();
  return std::fabs(std::log(static_cast<double>(a) / static_cast<double>(b)));
}
}  // namespace

void Profile::save(const std::string& path) const {
  const std::string text = checked_yaml(*this, path);
  FileLock lock(path);
  write_atomically(path, text);
}

Profile Profile::save_merged(const std::string& path) const {
  (void)checked_yaml(*this, path);  // refuse a bad profile before touching the file
  FileLock lock(path);
  Profile merged;
  std::string text;
  if (read_file(path, text)) {
    merged = from_yaml_string(text, path);
    if (!merged.matches(machine))
      fail_file(path, "holds entries measured on " + describe(merged.machine) +
                          "; refusing to merge entries measured on " + describe(machine) +
                          " into it (write to another path, e.g. tuning/" + machine.machine_id() +
                          ".yaml)");
    merged.schema_version = kProfileSchemaVersion;
    merged.machine = machine;
    merged.merge(*this);
  } else {
    merged = *this;
  }
  write_atomically(path, checked_yaml(merged, path));
  return merged;
}

void Profile::merge(const ProfileEntry& entry) {
  for (ProfileEntry& e : entries) {
    if (e.same_key(entry)) {
      e = entry;
      return;
    }
  }
  entries.push_back(entry);
}

void Profile::merge(const Profile& other) {
  for (const ProfileEntry& e : other.entries) merge(e);
}

const ProfileEntry* Profile::find(const TunedShape& shape, std::string_view workload,
                                  std::string_view policy) const {
  for (const ProfileEntry& e : entries)
    if (e.shape == shape && e.workload == workload && e.policy == policy) return &e;
  return nullptr;
}

namespace {

// Why entry e does not fit request shape (empty when it fits).
std::string misfit(const TunedShape& shape, const ProfileEntry& e) {
  auto too_far = [](int64_t want, int64_t have) {
    return want > 0 && have > 0 && log_distance(want, have) > std::log(kProfileFitRatio) + 1e-12;
  };
  std::string why;
  auto add = [&](const std::string& part) { why += (why.empty() ? "" : "; ") + part; };
  if (too_far(shape.seq_len, e.shape.seq_len))
    add("tuned at seq_len " + std::to_string(e.shape.seq_len) + ", more than 2x from " + std::to_string(shape.seq_len));
  if (too_far(shape.steps, e.shape.steps))
    add("tuned for " + std::to_string(e.shape.steps) + " steps, more than 2x from " + std::to_string(shape.steps));
  return why;
}

}  // namespace

ProfileMatch Profile::match(const TunedShape& shape, std::string_view policy, int layer) const {
  ProfileMatch m;
  bool best_heads = false;
  double best_seq = 0.0, best_steps = 0.0;
  for (const ProfileEntry& e : entries) {
    if (e.shape.head_dim != shape.head_dim || e.shape.dtype != shape.dtype || e.shape.cache != shape.cache) continue;
    if (!policy.empty() && e.policy != policy) continue;
    if (e.layer != layer) continue;
    const bool fits = misfit(shape, e).empty();
    const bool heads = e.shape.heads == shape.heads && e.shape.kv_heads == shape.kv_heads;
    const double seq = shape.seq_len > 0 ? log_distance(shape.seq_len, e.shape.seq_len) : 0.0;
    const double steps = shape.steps > 0 ? log_distance(shape.steps, e.shape.steps) : 0.0;
    bool better;
    if (!m.entry) {
      better = true;
    } else if (fits != m.fits) {
      better = fits;
    } else if (heads != best_heads) {
      better = heads;
    } else if (std::fabs(seq - best_seq) > 1e-12) {
      better = seq < best_seq;
    } else if (e.shape.seq_len != m.entry->shape.seq_len) {
      better = e.shape.seq_len > m.entry->shape.seq_len;
    } else {
      better = steps < best_steps - 1e-12;
    }
    if (better) {
      m.entry = &e;
      m.fits = fits;
      best_heads = heads;
      best_seq = seq;
      best_steps = steps;
    }
  }
  if (m.entry == nullptr) {
    m.why = "no entry for head_dim " + std::to_string(shape.head_dim) + ", dtype " + shape.dtype +
            (shape.cache != "none" ? ", cache " + shape.cache : std::string()) +
            (policy.empty() ? std::string() : ", policy " + std::string(policy)) +
            (layer >= 0 ? ", layer " + std::to_string(layer) : std::string());
  } else if (!m.fits) {
    m.why = "the nearest entry (" + m.entry->policy + ", heads " + std::to_string(m.entry->shape.heads) + ") was " +
            misfit(shape, *m.entry);
  }
  return m;
}

// A tuned pattern is a property of the model's attention and carries over
// to another dtype (on the tiny-mdlm traces the fp32 entry gives the same
// cosine at bf16, where the defaults gave 0.863 on layer 0).
ProfileMatch Profile::match_any_dtype(const TunedShape& shape, std::string_view policy, int layer) const {
  ProfileMatch m = match(shape, policy, layer);
  if (m.entry != nullptr) return m;
  for (const DType other : {DType::fp32, DType::bf16, DType::fp16}) {
    TunedShape s = shape;
    s.dtype = dtype_name(other);
    if (s.dtype == shape.dtype) continue;
    ProfileMatch o = match(s, policy, layer);
    if (o.entry == nullptr) continue;
    o.other_dtype = true;
    return o;
  }
  if (shape.cache != "none") {  // a cached session with no entry of its mode: one tuned on full steps
    TunedShape s = shape;
    s.cache = "none";
    if (ProfileMatch o = match_any_dtype(s, policy, layer); o.entry != nullptr) return o;
  }
  return m;
}

const ProfileEntry* Profile::lookup(const TunedShape& shape, std::string_view policy, int layer) const {
  const ProfileMatch m = match(shape, policy, layer);
  return m.fits ? m.entry : nullptr;
}

ProfileEntry Profile::default_entry(const TunedShape& shape) {
  ProfileEntry e;  // the member initializers are the documented defaults
  e.shape = shape;
  return e;
}

bool Profile::matches(const MachineInfo& here) const {
  return machine.cpu_model == here.cpu_model && machine.isa == here.isa;
}

Profile Profile::load_for_machine(const std::string& path, bool strict, const MachineInfo& here) {
  Profile p = load(path);
  if (!p.matches(here)) {
    const std::string what = "profile " + in_quotes(path) + " was tuned on " + describe(p.machine) +
                             ", this machine is " + describe(here);
    if (strict) throw Error("spattn: " + what + "; refusing it (strict machine check)");
    std::cerr << "spattn: warning: " << what
              << "; using it anyway (run spattn-tune here for a profile of this machine)\n";
  }
  return p;
}

void check_profile_destination(const std::string& path, const MachineInfo& here) {
  check_writable_destination(path);
  std::string text;
  if (!read_file(path, text)) return;  // a new file
  const Profile existing = Profile::from_yaml_string(text, path);
  if (!existing.matches(here))
    fail_file(path, "was tuned on " + describe(existing.machine) + ", this machine is " + describe(here) +
                        ": refusing to merge into it (choose another --out)");
}

Profile merge_into_file(const std::string& path, const ProfileEntry& entry, const MachineInfo& machine) {
  Profile p;
  p.machine = machine;
  p.entries.push_back(entry);
  return p.save_merged(path);
}

std::string default_profile_path() {
  auto env = [](const char* name) -> std::string {
    const char* v = std::getenv(name);
    return v != nullptr ? v : "";
  };
  if (const std::string p = env("SPATTN_PROFILE"); !p.empty()) return p;
  const std::string file = "spattn/" + MachineInfo::detect().machine_id() + ".yaml";
  if (const std::string x = env("XDG_CONFIG_HOME"); !x.empty() && x.front() == '/') return x + "/" + file;
  if (const std::string h = env("HOME"); !h.empty()) return h + "/.config/" + file;
  return "";
}

std::string utc_timestamp_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace spattn
