// Tuning profiles: YAML read (strictly validated, errors name file and line),
// YAML write, atomic and lock-protected save / merge-save, and lookup.
#include "spattn/profile.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <limits>
#include <random>
#include <set>
#include <thread>

#include "spattn/attention.hpp"
#include "spattn/error.hpp"
#include "spattn/isa.hpp"

namespace spattn {
namespace {

namespace fs = std::filesystem;

std::string in_quotes(const std::string& s) { return "'" + s + "'"; }

[[noreturn]] void fail_file(const std::string& file, const std::string& why) {
  throw Error("spattn: profile " + in_quotes(file) + ": " + why);
}

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

ProfileEntry read_entry(const Reader& r, const YAML::Node& n, const std::string& name) {
  MapReader m(r, n, name);
  m.check_keys({"shape", "workload", "policy", "accuracy_bound", "chosen", "measured", "tuned_at"});
  ProfileEntry e;

  const YAML::Node shape_node = m.required("shape");
  MapReader s(r, shape_node, m.child("shape"));
  s.check_keys({"heads", "kv_heads", "seq_len", "head_dim", "steps"});
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

  MapReader a(r, m.required("accuracy_bound"), m.child("accuracy_bound"));
  a.check_keys({"min_mean_cosine", "min_step_cosine"});
  e.min_mean_cosine = r.number(a.required("min_mean_cosine"), a.child("min_mean_cosine"), -1, false, 1, false);
  e.min_step_cosine = r.number(a.required("min_step_cosine"), a.child("min_step_cosine"), -1, false, 1, false);

  MapReader c(r, m.required("chosen"), m.child("chosen"));
  c.check_keys({"block_size", "topk_ratio", "warmup_fraction", "q_tile_rows", "threads", "pooled_budget"});
  const YAML::Node bs = c.required("block_size");
  e.block_size = r.integer(bs, c.child("block_size"), 1);
  if (!is_supported_block_size(e.block_size))
    r.fail(bs, in_quotes(c.child("block_size")) + " = " + std::to_string(e.block_size) +
                   " is not a supported block size (16, 32, 64 or 128)");
  e.topk_ratio = r.number(c.required("topk_ratio"), c.child("topk_ratio"), 0, true, 1, false);
  e.warmup_fraction = r.number(c.required("warmup_fraction"), c.child("warmup_fraction"), 0, false, 1, true);
  // Kernel fields get the kernels' own ranges here, so that a bad value fails
  // at load with file and line, not later in a session without either.
  const YAML::Node qt = c.required("q_tile_rows");
  e.q_tile_rows = r.integer(qt, c.child("q_tile_rows"), 1);
  if (!is_supported_block_size(e.q_tile_rows))
    r.fail(qt, in_quotes(c.child("q_tile_rows")) + " = " + std::to_string(e.q_tile_rows) +
                   " is not a supported query tile (16, 32, 64 or 128)");
  e.threads = static_cast<int>(r.integer(c.required("threads"), c.child("threads"), 0, kMaxThreads));
  // Schema 2; absent in schema 1 files (per-head budget, SparseD's own rule).
  if (const YAML::Node pb = c.optional("pooled_budget"); pb.IsDefined())
    e.pooled_budget = r.boolean(pb, c.child("pooled_budget"));

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

  e.tuned_at = r.string(m.required("tuned_at"), m.child("tuned_at"));
  return e;
}

// ---------------------------------------------------------------------------
// Files.

// Profiles are small (about 1 KiB an entry): a larger file is not one.
constexpr int64_t kMaxProfileBytes = 16 << 20;

// Reads a whole file; false if it does not exist, Error on any other failure.
bool read_file(const std::string& path, std::string& text) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT) return false;
    fail_file(path, std::string("cannot open: ") + std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail_file(path, "not a regular file (a profile is a YAML file; devices, FIFOs and folders are refused)");
  }
  if (st.st_size > kMaxProfileBytes) {
    ::close(fd);
    fail_file(path, "is " + std::to_string(st.st_size) + " bytes; a profile is at most " +
                        std::to_string(kMaxProfileBytes) + " bytes");
  }
  text.clear();
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      fail_file(path, std::string("cannot read: ") + std::strerror(err));
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return true;
}

void write_all(int fd, const char* p, size_t n, const std::string& tmp) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) fail_file(tmp, std::string("cannot write: ") + std::strerror(errno));
    p += w;
    n -= static_cast<size_t>(w);
  }
}

fs::path parent_dir(const std::string& path) {
  fs::path dir = fs::path(path).parent_path();
  return dir.empty() ? fs::path(".") : dir;
}

// Refuses, before anything is written, a destination that is not a regular
// file or that this user may not write (a rename would replace a read-only
// file silently), and a folder it cannot create files in.
void check_writable_destination(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (!S_ISREG(st.st_mode)) fail_file(path, "not a regular file: refusing to replace it");
    // No write bit at all: the owner made it read-only (root's access() would
    // say yes anyway).
    if ((st.st_mode & 0222) == 0 || ::access(path.c_str(), W_OK) != 0)
      fail_file(path, "is read-only for this user: refusing to replace it (choose another --out, or make it writable)");
  }
  const fs::path dir = parent_dir(path);
  if (::stat(dir.c_str(), &st) == 0 && (!S_ISDIR(st.st_mode) || ::access(dir.c_str(), W_OK | X_OK) != 0))
    fail_file(path, "its folder " + in_quotes(dir.string()) + " is not a folder this user can write in");
}

// Advisory lock on "<path>.lock" (flock; released when closed or the process dies).
class FileLock {
 public:
  explicit FileLock(const std::string& path) {
    std::error_code ec;
    fs::create_directories(parent_dir(path), ec);
    const std::string lock = path + ".lock";
    fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) fail_file(path, "cannot open lock file " + in_quotes(lock) + ": " + std::strerror(errno));
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd_);
      fail_file(path, "cannot lock " + in_quotes(lock) + ": " + std::strerror(err));
    }
  }
  ~FileLock() { ::close(fd_); }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};

std::string temp_prefix(const std::string& path) { return fs::path(path).filename().string() + ".tmp."; }

// Temp files of writers that died mid-save. Every writer creates its temp
// file only while holding the lock, so under the lock any left over is stale.
void remove_stale_temps(const std::string& path) {
  const std::string prefix = temp_prefix(path);
  std::error_code ec;
  for (const auto& de : fs::directory_iterator(parent_dir(path), ec)) {
    const std::string name = de.path().filename().string();
    if (name.rfind(prefix, 0) == 0) {
      std::error_code rm;
      fs::remove(de.path(), rm);
    }
  }
}

// Test hook: SPATTN_PROFILE_TEST_SAVE_PAUSE_MS=N makes a save sleep N ms after
// writing half of its temp file (tests kill the writer there).
int test_pause_ms() {
  const char* v = std::getenv("SPATTN_PROFILE_TEST_SAVE_PAUSE_MS");
  return v ? std::atoi(v) : 0;
}

// Call with the lock held: temp file in the same directory, fsync, rename
// over path, fsync the directory.
void write_atomically(const std::string& path, const std::string& text) {
  check_writable_destination(path);
  remove_stale_temps(path);
  // A file being replaced keeps its permission bits; a new one gets 0644.
  mode_t mode = 0644;
  if (struct stat st {}; ::stat(path.c_str(), &st) == 0) mode = st.st_mode & 07777;
  std::random_device rd;
  char rnd[17];
  std::snprintf(rnd, sizeof rnd, "%08x%08x", rd(), rd());
  const std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + rnd;
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) fail_file(path, "cannot create temp file " + in_quotes(tmp) + ": " + std::strerror(errno));
  try {
    const size_t half = text.size() / 2;
    write_all(fd, text.data(), half, tmp);
    if (const int ms = test_pause_ms(); ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    write_all(fd, text.data() + half, text.size() - half, tmp);
    if (::fchmod(fd, mode) != 0) fail_file(tmp, std::string("cannot set its mode: ") + std::strerror(errno));
    if (::fsync(fd) != 0) fail_file(tmp, std::string("cannot fsync: ") + std::strerror(errno));
    if (::close(fd) != 0) fail_file(tmp, std::string("cannot close: ") + std::strerror(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    fail_file(path, "cannot rename " + in_quotes(tmp) + " over it: " + std::strerror(err));
  }
  const int dfd = ::open(parent_dir(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);  // durability of the rename; best effort
    ::close(dfd);
  }
}

// The text to write for p, checked by reading it back: a profile that could
// not be loaded is never written.
std::string checked_yaml(const Profile& p, const std::string& path) {
  std::string text = p.to_yaml();
  (void)Profile::from_yaml_string(text, path + " (refused before writing)");
  return text;
}

std::string describe(const MachineInfo& m) { return in_quotes(m.cpu_model) + " (isa " + m.isa + ")"; }

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

double log_distance(int64_t a, int64_t b) {
  if (a <= 0 || b <= 0) return std::numeric_limits<double>::infinity();
  return std::fabs(std::log(static_cast<double>(a) / static_cast<double>(b)));
}

}  // namespace

// ---------------------------------------------------------------------------

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
  top.check_keys({"schema_version", "machine", "entries"});

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
    out << YAML::EndMap;
    out << YAML::Key << "workload" << YAML::Value << e.workload;
    out << YAML::Key << "policy" << YAML::Value << e.policy;
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

const ProfileEntry* Profile::lookup(const TunedShape& shape, std::string_view policy) const {
  const ProfileEntry* best = nullptr;
  bool best_heads = false;
  double best_seq = 0.0, best_steps = 0.0;
  for (const ProfileEntry& e : entries) {
    if (e.shape.head_dim != shape.head_dim) continue;
    if (!policy.empty() && e.policy != policy) continue;
    const bool heads = e.shape.heads == shape.heads && e.shape.kv_heads == shape.kv_heads;
    const double seq = shape.seq_len > 0 ? log_distance(shape.seq_len, e.shape.seq_len) : 0.0;
    const double steps = shape.steps > 0 ? log_distance(shape.steps, e.shape.steps) : 0.0;
    bool better;
    if (!best) {
      better = true;
    } else if (heads != best_heads) {
      better = heads;
    } else if (std::fabs(seq - best_seq) > 1e-12) {
      better = seq < best_seq;
    } else if (e.shape.seq_len != best->shape.seq_len) {
      better = e.shape.seq_len > best->shape.seq_len;
    } else {
      better = steps < best_steps - 1e-12;
    }
    if (better) {
      best = &e;
      best_heads = heads;
      best_seq = seq;
      best_steps = steps;
    }
  }
  return best;
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
  if (const char* env = std::getenv("SPATTN_PROFILE"); env && *env) return env;
  return "tuning/" + MachineInfo::detect().machine_id() + ".yaml";
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
