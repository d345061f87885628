// The profile's YAML schema: strict reading (every value range-checked,
// errors name the file and line) and writing.
#include <yaml-cpp/yaml.h>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <set>
#include <string>

#include "spattn/attention.hpp"
#include "spattn/config.h"
#include "spattn/error.hpp"
#include "spattn/isa.hpp"
#include "spattn/profile.hpp"
#include "tuner/profile_file.hpp"

namespace spattn {
namespace {

using detail::fail_file;
using detail::in_quotes;
using detail::read_file;

// ---------------------------------------------------------------------------
// Reading: every value goes through a checker that knows its dotted name
// ("entries[2].chosen.topk_ratio") and reports the line it came from.

class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  [[noreturn]] void fail_at_line(int line, const std::string& why) const {
    fail_file(file_, "line " + std::to_string(line) + ": " + why);
  }
  [[noreturn]] void fail(const YAML::Node& n, const std::string& why) const {
    fail_at_line(line_of(n), why);
  }
  static int line_of(const YAML::Node& n) {
    const YAML::Mark m = n.Mark();
    return m.line >= 0 ? m.line + 1 : 1;
  }

  std::string scalar(const YAML::Node& n, const std::string& name, const char* kind) const {
    if (!n.IsScalar()) fail(n, in_quotes(name) + " must be " + kind + ", got " + node_kind(n));
    return n.Scalar();
  }
  // Profile strings are one line of UTF-8 text: yaml-cpp passes invalid UTF-8
  // and control bytes through on reading but re-encodes them on writing, so
  // such a value would change on every merge-save (found by fuzz_profile_yaml).
  std::string string(const YAML::Node& n, const std::string& name) const {
    std::string s = scalar(n, name, "a string");
    if (const char* why = not_text(s)) fail(n, in_quotes(name) + " " + why);
    return s;
  }
  static const char* not_text(const std::string& s) {
    for (size_t i = 0; i < s.size();) {
      const auto c = static_cast<unsigned char>(s[i]);
      if (c < 0x20 || c == 0x7f) return "must not contain control characters";
      size_t len = 1;
      uint32_t cp = c;
      if (c >= 0x80) {
        if (c >= 0xc2 && c <= 0xdf) len = 2, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef) len = 3, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4) len = 4, cp = c & 0x07;
        else return "must be valid UTF-8";
        if (i + len > s.size()) return "must be valid UTF-8";
        for (size_t j = 1; j < len; ++j) {
          const auto cc = static_cast<unsigned char>(s[i + j]);
          if ((cc & 0xc0) != 0x80) return "must be valid UTF-8";
          cp = (cp << 6) | (cc & 0x3f);
        }
        // Overlong forms, UTF-16 surrogates, past U+10FFFF; C1 controls.
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
          return "must be valid UTF-8";
        if (cp >= 0x80 && cp <= 0x9f) return "must not contain control characters";
      }
      i += len;
    }
    return nullptr;
  }
  int64_t integer(const YAML::Node& n, const std::string& name, int64_t min,
                  int64_t max = std::numeric_limits<int64_t>::max()) const {
    const std::string s = scalar(n, name, "an integer");
    int64_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size())
      fail(n, in_quotes(name) + " must be an integer, got " + in_quotes(s));
    if (v < min || v > max) {
      std::string range = max == std::numeric_limits<int64_t>::max()
                              ? ">= " + std::to_string(min)
                              : "in [" + std::to_string(min) + ", " + std::to_string(max) + "]";
      fail(n, in_quotes(name) + " = " + s + " is out of range: must be " + range);
    }
    return v;
  }
  bool boolean(const YAML::Node& n, const std::string& name) const {
    const std::string s = scalar(n, name, "true or false");
    if (s != "true" && s != "false") fail(n, in_quotes(name) + " must be true or false, got " + in_quotes(s));
    return s == "true";
  }
  // A finite number; lo/hi bounds with open or closed ends.
  double number(const YAML::Node& n, const std::string& name, double lo, bool lo_open, double hi,
                bool hi_open) const {
    const std::string s = scalar(n, name, "a number");
    double v = 0.0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size() || !std::isfinite(v))
      fail(n, in_quotes(name) + " must be a finite number, got " + in_quotes(s));
    const bool below = lo_open ? !(v > lo) : !(v >= lo);
    const bool above = hi_open ? !(v < hi) : !(v <= hi);
    if (below || above) {
      std::string range = std::string(lo_open ? "(" : "[") + fmt(lo) + ", " +
                          (std::isinf(hi) ? "inf" : fmt(hi)) + (hi_open ? ")" : "]");
      fail(n, in_quotes(name) + " = " + s + " is out of range: must be in " + range);
    }
    return v;
  }

  static std::string node_kind(const YAML::Node& n) {
    if (n.IsNull()) return "an empty value";
    if (n.IsMap()) return "a map";
    if (n.IsSequence()) return "a list";
    return "a scalar";
  }
  static std::string fmt(double x) {
    char buf[64];
    auto r = std::to_chars(buf, buf + sizeof buf, x);
    return std::string(buf, r.ptr);
  }

  const std::string& file() const { return file_; }

 private:
  std::string file_;
};

// A YAML map with a fixed set of keys: refuses unknown and duplicate keys, and
// reports a missing key at the line of the map itself.
class MapReader {
 public:
  MapReader(const Reader& r, const YAML::Node& map, std::string name)
      : r_(r), map_(map), name_(std::move(name)) {
    if (!map_.IsMap()) r_.fail(map_, in_quotes(name_) + " must be a map, got " + Reader::node_kind(map_));
  }
  // Undefined when absent.
  YAML::Node optional(const char* key) const { return map_[key]; }
  YAML::Node required(const char* key) const {
    const YAML::Node n = map_[key];
    if (!n.IsDefined()) r_.fail(map_, "missing key " + in_quotes(key) + " in " + in_quotes(name_));
    return n;
  }
  // Unknown or repeated keys; allowed lists every key this map may have.
  void check_keys(std::initializer_list<const char*> allowed) const {
    std::set<std::string> seen;
    for (const auto& kv : map_) {
      const YAML::Node k = kv.first;
      if (!k.IsScalar()) r_.fail(k, "keys of " + in_quotes(name_) + " must be strings");
      const std::string key = k.Scalar();
      bool ok = false;
      for (const char* a : allowed) ok = ok || key == a;
      if (!ok) {
        std::string list;
        for (const char* a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
        r_.fail(k, "unknown key " + in_quotes(key) + " in " + in_quotes(name_) + " (expected: " + list + ")");
      }
      if (!seen.insert(key).second) r_.fail(k, "key " + in_quotes(key) + " repeated in " + in_quotes(name_));
    }
  }
  std::string child(const char* key) const { return name_ + "." + key; }

 private:
  const Reader& r_;
  YAML::Node map_;
  std::string name_;
};

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kCosSlack = 1e-6;  // cosines computed in floating point may exceed 1 by rounding

MachineInfo read_machine(const Reader& r, const YAML::Node& n) {
  MapReader m(r, n, "machine");
  m.check_keys({"id", "cpu_model", "isa", "cores", "numa_nodes", "l1d_bytes", "l2_bytes", "l3_bytes"});
  MachineInfo info;
  info.cpu_model = r.string(m.required("cpu_model"), "machine.cpu_model");
  if (info.cpu_model.empty()) r.fail(m.required("cpu_model"), "'machine.cpu_model' must not be empty");
  const YAML::Node isa = m.required("isa");
  info.isa = r.string(isa, "machine.isa");
  try {
    (void)parse_isa(info.isa);
  } catch (const Error&) {
    r.fail(isa, "'machine.isa' = " + in_quotes(info.isa) + " is not one of scalar, avx2, avx512, neon");
  }
  info.cores = static_cast<int>(r.integer(m.required("cores"), "machine.cores", 1, 1 << 20));
  info.numa_nodes = static_cast<int>(r.integer(m.required("numa_nodes"), "machine.numa_nodes", 1, 1 << 16));
  info.l1d_bytes = r.integer(m.required("l1d_bytes"), "machine.l1d_bytes", 0);
  info.l2_bytes = r.integer(m.required("l2_bytes"), "machine.l2_bytes", 0);
  info.l3_bytes = r.integer(m.required("l3_bytes"), "machine.l3_bytes", 0);
  if (const YAML::Node id = n["id"]) (void)r.string(id, "machine.id");  // informational only
  return info;
}

bool valid_policy_name(const std::string& p) {
  if (p.empty()) return false;
  for (char c : p)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '+'))
      return false;
  return true;
}

// The entry's shape map.
void read_shape(const Reader& r, const MapReader& m, ProfileEntry& e) {
  const YAML::Node shape_node = m.required("shape");
  MapReader s(r, shape_node, m.child("shape"));
  s.check_keys({"heads", "kv_heads", "seq_len", "head_dim", "steps", "dtype", "cache"});
  e.shape.heads = r.integer(s.required("heads"), s.child("heads"), 1);
  const YAML::Node kvh = s.required("kv_heads");
  e.shape.kv_heads = r.integer(kvh, s.child("kv_heads"), 1);
  if (e.shape.heads % e.shape.kv_heads != 0)
    r.fail(kvh, in_quotes(s.child("kv_heads")) + " = " + std::to_string(e.shape.kv_heads) +
                    " must divide heads = " + std::to_string(e.shape.heads));
  e.shape.seq_len = r.integer(s.required("seq_len"), s.child("seq_len"), 1);
  const YAML::Node hd = s.required("head_dim");
  e.shape.head_dim = r.integer(hd, s.child("head_dim"), 1, kMaxHeadDim);
  if (e.shape.head_dim % kHeadDimMultiple != 0)
    r.fail(hd, in_quotes(s.child("head_dim")) + " = " + std::to_string(e.shape.head_dim) +
                   " is not a multiple of 16 (what the kernels run)");
  e.shape.steps = r.integer(s.required("steps"), s.child("steps"), 1);
  if (const YAML::Node dt = shape_node["dtype"]) {  // schema 4; older entries are fp32
    const std::string name = r.string(dt, s.child("dtype"));
    try {
      e.shape.dtype = dtype_name(parse_dtype(name));  // one spelling: fp32, bf16 or fp16
    } catch (const Error&) {
      r.fail(dt, in_quotes(s.child("dtype")) + " = '" + name + "': expected fp32, bf16 or fp16");
    }
  }
  if (const YAML::Node cm = shape_node["cache"]) {  // schema 5; older entries are "none"
    const std::string name = r.string(cm, s.child("cache"));
    try {
      e.shape.cache = cache_mode_name(parse_cache_mode(name));
    } catch (const Error&) {
      r.fail(cm, in_quotes(s.child("cache")) + " = '" + name + "': expected none, block, dual or rows");
    }
  }
}

// The chosen parameters; kernel fields get the kernels' own ranges.
void read_chosen(const Reader& r, const MapReader& m, ProfileEntry& e) {
  MapReader c(r, m.required("chosen"), m.child("chosen"));
  c.check_keys({"block_size", "topk_ratio", "warmup_fraction", "q_tile_rows", "threads", "pooled_budget", "mass_tau",
                "max_block_share", "dense_head_share", "drift_check_every", "drift_min_recall"});
  const YAML::Node bs = c.required("block_size");
  e.block_size = r.integer(bs, c.child("block_size"), 1);
  if (!is_supported_block_size(e.block_size))
    r.fail(bs, in_quotes(c.child("block_size")) + " = " + std::to_string(e.block_size) +
                   " is not a supported block size: " + kBlockSizeRule);
  e.topk_ratio = r.number(c.required("topk_ratio"), c.child("topk_ratio"), 0, true, 1, false);
  e.warmup_fraction = r.number(c.required("warmup_fraction"), c.child("warmup_fraction"), 0, false, 1, true);
  // Kernel fields get the kernels' own ranges here, so that a bad value fails
  // at load with file and line, not later in a session without either.
  const YAML::Node qt = c.required("q_tile_rows");
  e.q_tile_rows = r.integer(qt, c.child("q_tile_rows"), 1);
  if (!is_supported_block_size(e.q_tile_rows))
    r.fail(qt, in_quotes(c.child("q_tile_rows")) + " = " + std::to_string(e.q_tile_rows) +
                   " is not a supported query tile: " + kBlockSizeRule);
  e.threads = static_cast<int>(r.integer(c.required("threads"), c.child("threads"), 0, kMaxThreads));
  // Schema 2; absent in schema 1 files (per-head budget, SparseD's own rule).
  if (const YAML::Node pb = c.optional("pooled_budget"); pb.IsDefined())
    e.pooled_budget = r.boolean(pb, c.child("pooled_budget"));
  // Schema 3; absent before (the fixed top-k budget).
  if (const YAML::Node n = c.optional("mass_tau"); n.IsDefined())
    e.mass_tau = r.number(n, c.child("mass_tau"), 0, false, 1, false);
  if (const YAML::Node n = c.optional("max_block_share"); n.IsDefined())
    e.max_block_share = r.number(n, c.child("max_block_share"), 0, true, 1, false);
  if (const YAML::Node n = c.optional("dense_head_share"); n.IsDefined())
    e.dense_head_share = r.number(n, c.child("dense_head_share"), 0, true, 1, false);
  // Schema 4; absent before (no drift check).
  if (const YAML::Node n = c.optional("drift_check_every"); n.IsDefined())
    e.drift_check_every = r.integer(n, c.child("drift_check_every"), 0, 1 << 30);
  if (const YAML::Node n = c.optional("drift_min_recall"); n.IsDefined())
    e.drift_min_recall = r.number(n, c.child("drift_min_recall"), 0, false, 1, false);
}

// What was measured with them.
void read_measured(const Reader& r, const MapReader& m, ProfileEntry& e) {
  MapReader ms(r, m.required("measured"), m.child("measured"));
  ms.check_keys({"dense_ms", "sparse_ms", "speedup", "mean_cosine", "min_cosine", "mean_density"});
  e.dense_ms = r.number(ms.required("dense_ms"), ms.child("dense_ms"), 0, false, kInf, true);
  e.sparse_ms = r.number(ms.required("sparse_ms"), ms.child("sparse_ms"), 0, false, kInf, true);
  e.speedup = r.number(ms.required("speedup"), ms.child("speedup"), 0, false, kInf, true);
  e.mean_cosine = r.number(ms.required("mean_cosine"), ms.child("mean_cosine"), -1 - kCosSlack, false,
                           1 + kCosSlack, false);
  e.min_cosine = r.number(ms.required("min_cosine"), ms.child("min_cosine"), -1 - kCosSlack, false,
                          1 + kCosSlack, false);
  e.mean_density = r.number(ms.required("mean_density"), ms.child("mean_density"), 0, false, 1, false);
}

ProfileEntry read_entry(const Reader& r, const YAML::Node& n, const std::string& name) {
  MapReader m(r, n, name);
  m.check_keys({"shape", "workload", "policy", "layer", "accuracy_bound", "chosen", "measured", "tuned_at"});
  ProfileEntry e;

  read_shape(r, m, e);

  const YAML::Node wl = m.required("workload");
  e.workload = r.string(wl, m.child("workload"));
  if (e.workload != "synthetic" && !(e.workload.rfind("npy:", 0) == 0 && e.workload.size() > 4))
    r.fail(wl, in_quotes(m.child("workload")) + " = " + in_quotes(e.workload) +
                   " must be 'synthetic' or 'npy:<dir>'");
  const YAML::Node pol = m.required("policy");
  e.policy = r.string(pol, m.child("policy"));
  if (!valid_policy_name(e.policy))
    r.fail(pol, in_quotes(m.child("policy")) + " = " + in_quotes(e.policy) +
                    " must be a policy name such as 'sparsed' ([a-z0-9_+-], not empty)");

  // Schema 3; absent before (an entry for any layer).
  if (const YAML::Node ly = m.optional("layer"); ly.IsDefined())
    e.layer = static_cast<int>(r.integer(ly, m.child("layer"), -1, 1 << 20));
  MapReader a(r, m.required("accuracy_bound"), m.child("accuracy_bound"));
  a.check_keys({"min_mean_cosine", "min_step_cosine"});
  e.min_mean_cosine = r.number(a.required("min_mean_cosine"), a.child("min_mean_cosine"), -1, false, 1, false);
  e.min_step_cosine = r.number(a.required("min_step_cosine"), a.child("min_step_cosine"), -1, false, 1, false);

  read_chosen(r, m, e);
  read_measured(r, m, e);
  e.tuned_at = r.string(m.required("tuned_at"), m.child("tuned_at"));
  return e;
}

// A profile nests 4 levels deep. yaml-cpp's parser recurses per level and
// reports a very deep document only as "bad file": refuse it here, naming the
// line, before parsing. Counts flow brackets and block indentation (with
// "- " sequence markers); quoted strings are skipped.
void check_nesting(const Reader& r, const std::string& text) {
  constexpr int kMaxDepth = 64;
  int flow = 0, line = 1;
  size_t i = 0;
  while (i < text.size()) {
    int block = 0;  // leading spaces and sequence markers of this line
    while (i < text.size() && (text[i] == ' ' || (text[i] == '-' && i + 1 < text.size() && text[i + 1] == ' '))) {
      block += text[i] == '-' ? 2 : 1;
      i += text[i] == '-' ? 2 : 1;
    }
    char quote = 0;
    for (; i < text.size() && text[i] != '\n'; ++i) {
      const char c = text[i];
      if (quote != 0) {
        if (c == quote) quote = 0;
      } else if (c == '\'' || c == '"') {
        quote = c;
      } else if (c == '#') {
        while (i + 1 < text.size() && text[i + 1] != '\n') ++i;
      } else if (c == '[' || c == '{') {
        ++flow;
      } else if (c == ']' || c == '}') {
        flow = flow > 0 ? flow - 1 : 0;
      }
      if (flow > kMaxDepth || block / 2 > kMaxDepth)
        r.fail_at_line(line, "nesting deeper than " + std::to_string(kMaxDepth) +
                                 " levels: not a profile (a profile nests 4 levels)");
    }
    ++i;
    ++line;
  }
}

}  // namespace

Profile Profile::from_yaml_string(const std::string& text, const std::string& source_name) {
  const Reader r(source_name);
  check_nesting(r, text);
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    r.fail_at_line(e.mark.line >= 0 ? e.mark.line + 1 : 1, "invalid YAML: " + e.msg);
  }
  if (!root.IsDefined() || root.IsNull())
    r.fail_at_line(1, "empty profile (expected a map with schema_version, machine and entries)");
  MapReader top(r, root, "profile");

  Profile p;
  const YAML::Node sv = top.required("schema_version");
  const int64_t version = r.integer(sv, "schema_version", 1);
  if (version > kProfileSchemaVersion)
    r.fail(sv, "schema_version " + std::to_string(version) +
                   " is newer than this build of spattn supports (up to " +
                   std::to_string(kProfileSchemaVersion) +
                   "): update spattn, or re-run spattn-tune to write a profile it reads");
  p.schema_version = static_cast<int>(version);
  top.check_keys({"schema_version", "written_by", "machine", "entries"});
  if (const YAML::Node wb = top.optional("written_by"); wb.IsDefined())
    (void)r.string(wb, "written_by");  // informational: the spattn version that wrote the file

  p.machine = read_machine(r, top.required("machine"));

  const YAML::Node entries = top.required("entries");
  if (!entries.IsSequence())
    r.fail(entries, "'entries' must be a list, got " + Reader::node_kind(entries));
  for (size_t i = 0; i < entries.size(); ++i) {
    const YAML::Node en = entries[i];
    const std::string name = "entries[" + std::to_string(i) + "]";
    ProfileEntry e = read_entry(r, en, name);
    for (size_t j = 0; j < p.entries.size(); ++j)
      if (p.entries[j].same_key(e))
        r.fail(en, in_quotes(name) + " repeats the shape, workload and policy of entries[" +
                       std::to_string(j) + "]");
    p.entries.push_back(std::move(e));
  }
  return p;
}

Profile Profile::load(const std::string& path) {
  std::string text;
  if (!read_file(path, text)) fail_file(path, "no such file");
  return from_yaml_string(text, path);
}

std::string Profile::to_yaml() const {
  auto num = [](double x) { return Reader::fmt(x); };
  YAML::Emitter out;
  out << YAML::Comment("spattn tuning profile; schema and merge rules: tuning/README.md");
  out << YAML::BeginMap;
  out << YAML::Key << "schema_version" << YAML::Value << schema_version;
  out << YAML::Key << "written_by" << YAML::Value << std::string("spattn ") + SPATTN_VERSION_STRING;
  out << YAML::Key << "machine" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "id" << YAML::Value << machine.machine_id();
  out << YAML::Key << "cpu_model" << YAML::Value << machine.cpu_model;
  out << YAML::Key << "isa" << YAML::Value << machine.isa;
  out << YAML::Key << "cores" << YAML::Value << machine.cores;
  out << YAML::Key << "numa_nodes" << YAML::Value << machine.numa_nodes;
  out << YAML::Key << "l1d_bytes" << YAML::Value << machine.l1d_bytes;
  out << YAML::Key << "l2_bytes" << YAML::Value << machine.l2_bytes;
  out << YAML::Key << "l3_bytes" << YAML::Value << machine.l3_bytes;
  out << YAML::EndMap;
  out << YAML::Key << "entries" << YAML::Value << YAML::BeginSeq;
  for (const ProfileEntry& e : entries) {
    out << YAML::BeginMap;
    out << YAML::Key << "shape" << YAML::Value << YAML::Flow << YAML::BeginMap;
    out << YAML::Key << "heads" << YAML::Value << e.shape.heads;
    out << YAML::Key << "kv_heads" << YAML::Value << e.shape.kv_heads;
    out << YAML::Key << "seq_len" << YAML::Value << e.shape.seq_len;
    out << YAML::Key << "head_dim" << YAML::Value << e.shape.head_dim;
    out << YAML::Key << "steps" << YAML::Value << e.shape.steps;
    out << YAML::Key << "dtype" << YAML::Value << e.shape.dtype;
    if (e.shape.cache != "none") out << YAML::Key << "cache" << YAML::Value << e.shape.cache;
    out << YAML::EndMap;
    out << YAML::Key << "workload" << YAML::Value << e.workload;
    out << YAML::Key << "policy" << YAML::Value << e.policy;
    if (e.layer >= 0) out << YAML::Key << "layer" << YAML::Value << e.layer;
    out << YAML::Key << "accuracy_bound" << YAML::Value << YAML::Flow << YAML::BeginMap;
    out << YAML::Key << "min_mean_cosine" << YAML::Value << num(e.min_mean_cosine);
    out << YAML::Key << "min_step_cosine" << YAML::Value << num(e.min_step_cosine);
    out << YAML::EndMap;
    out << YAML::Key << "chosen" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "block_size" << YAML::Value << e.block_size;
    out << YAML::Key << "topk_ratio" << YAML::Value << num(e.topk_ratio);
    out << YAML::Key << "warmup_fraction" << YAML::Value << num(e.warmup_fraction);
    out << YAML::Key << "q_tile_rows" << YAML::Value << e.q_tile_rows;
    out << YAML::Key << "threads" << YAML::Value << e.threads;
    out << YAML::Key << "pooled_budget" << YAML::Value << e.pooled_budget;
    if (e.mass_tau > 0) {
      out << YAML::Key << "mass_tau" << YAML::Value << num(e.mass_tau);
      out << YAML::Key << "max_block_share" << YAML::Value << num(e.max_block_share);
      out << YAML::Key << "dense_head_share" << YAML::Value << num(e.dense_head_share);
    }
    if (e.drift_check_every > 0) {
      out << YAML::Key << "drift_check_every" << YAML::Value << e.drift_check_every;
      out << YAML::Key << "drift_min_recall" << YAML::Value << num(e.drift_min_recall);
    }
    out << YAML::EndMap;
    out << YAML::Key << "measured" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "dense_ms" << YAML::Value << num(e.dense_ms);
    out << YAML::Key << "sparse_ms" << YAML::Value << num(e.sparse_ms);
    out << YAML::Key << "speedup" << YAML::Value << num(e.speedup);
    out << YAML::Key << "mean_cosine" << YAML::Value << num(e.mean_cosine);
    out << YAML::Key << "min_cosine" << YAML::Value << num(e.min_cosine);
    out << YAML::Key << "mean_density" << YAML::Value << num(e.mean_density);
    out << YAML::EndMap;
    out << YAML::Key << "tuned_at" << YAML::Value << YAML::DoubleQuoted << e.tuned_at;
    out << YAML::EndMap;
  }
  out << YAML::EndSeq;
  out << YAML::EndMap;
  if (!out.good()) throw Error("spattn: profile: YAML emitter failed: " + out.GetLastError());
  return std::string(out.c_str()) + "\n";
}

}  // namespace spattn
