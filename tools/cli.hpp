#pragma once
// What every spattn tool shares on the command line: strict flag parsing
// (a bad flag or value exits 2 with a message naming it), --help and
// --version, and run_tool, which turns any failure into one line on stderr
// and exit status 1 (a bad environment variable included, reported at start).
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <new>
#include <sstream>
#include <string>
#include <vector>

#include "spattn/attention.hpp"
#include "spattn/config.h"
#include "spattn/error.hpp"
#include "spattn/session.hpp"
#include "spattn/isa.hpp"

namespace spattn::cli {

[[noreturn]] inline void usage_error(const char* tool, const std::string& msg) {
  std::fprintf(stderr, "%s: %s (see --help)\n", tool, msg.c_str());
  std::exit(2);
}

struct Args {
  const char* tool;
  int argc;
  char** argv;
  int i = 1;
  bool done() const { return i >= argc; }
  std::string flag() { return argv[i++]; }
  std::string value(const std::string& f) {
    if (i >= argc) usage_error(tool, f + " needs a value");
    return argv[i++];
  }
  long long integer(const std::string& f, long long lo, long long hi) {
    const std::string v = value(f);
    char* end = nullptr;
    errno = 0;
    const long long x = std::strtoll(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || errno != 0 || x < lo || x > hi)
      usage_error(tool, f + ": '" + v + "' is not an integer in [" + std::to_string(lo) + ", " +
                            std::to_string(hi) + "]");
    return x;
  }
  double real(const std::string& f, double lo, double hi, bool lo_open = false) {
    const std::string v = value(f);
    char* end = nullptr;
    errno = 0;
    const double x = std::strtod(v.c_str(), &end);
    if (v.empty() || *end != '\0' || errno != 0 || !(x >= lo && x <= hi) || (lo_open && x == lo))
      usage_error(tool, f + ": '" + v + "' is not a number in " + (lo_open ? "(" : "[") +
                            std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return x;
  }
  // --threads: one cap for every tool, the library's (kMaxThreads).
  int threads(const std::string& f) { return static_cast<int>(integer(f, 0, kMaxThreads)); }
  // --dtype: fp32, bf16 or fp16 (parse_dtype's names and message).
  DType dtype(const std::string& f) {
    const std::string v = value(f);
    try {
      return parse_dtype(v);
    } catch (const Error& e) {
      usage_error(tool, f + ": " + e.what());
    }
  }
  // --cache: none, block, dual or rows (parse_cache_mode's names and message).
  CacheMode cache_mode(const std::string& f) {
    const std::string v = value(f);
    try {
      return parse_cache_mode(v);
    } catch (const Error& e) {
      usage_error(tool, f + ": " + e.what());
    }
  }
  // --cache-refresh: block (false) or first (true: only the first step refreshes).
  bool cache_refresh_first(const std::string& f) {
    const std::string v = value(f);
    if (v != "block" && v != "first") usage_error(tool, f + ": block or first, not '" + v + "'");
    return v == "first";
  }
  // --help / -h (prints usage, exit 0) and --version (exit 0); false for any
  // other flag.
  bool common(const std::string& f, const char* usage) const {
    if (f == "--help" || f == "-h") {
      std::fputs(usage, stdout);
      std::exit(0);
    }
    if (f == "--version") {
      std::printf("%s %s\n", tool, SPATTN_VERSION_STRING);
      std::exit(0);
    }
    return false;
  }
};

// A comma-separated list of positive integers with optional K / M suffixes
// (4K = 4096), each in [lo, hi]; a bad one exits 2 naming the flag.
inline std::vector<int64_t> int_list(Args& a, const std::string& f, int64_t lo, int64_t hi) {
  const std::string v = a.value(f);
  std::vector<int64_t> out;
  std::stringstream ss(v);
  std::string item;
  while (std::getline(ss, item, ',')) {
    int64_t mult = 1;
    if (!item.empty() && (item.back() == 'K' || item.back() == 'k')) mult = 1024, item.pop_back();
    else if (!item.empty() && (item.back() == 'M' || item.back() == 'm')) mult = 1 << 20, item.pop_back();
    char* end = nullptr;
    errno = 0;
    const long long x = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || errno != 0 || x < 1 || x * mult < lo || x * mult > hi)
      usage_error(a.tool, f + ": '" + v + "' is not a list of integers in [" + std::to_string(lo) + ", " +
                                   std::to_string(hi) + "]");
    out.push_back(x * mult);
  }
  if (out.empty() || v.back() == ',') usage_error(a.tool, f + ": '" + v + "' is not a list");
  return out;
}

// Runs a tool's main: the environment the library reads (SPATTN_ISA,
// SPATTN_NUM_THREADS) is checked first, then any exception that escapes
// becomes "tool: message" and exit 1; usage errors have exited 2 already.
inline int run_tool(const char* tool, int argc, char** argv, int (*tool_main)(int, char**)) {
  try {
    (void)active_isa();                // SPATTN_ISA: a name this CPU supports
    (void)resolve_threads(KernelOptions{});  // SPATTN_NUM_THREADS: an integer in range
    return tool_main(argc, argv);
  } catch (const Error& e) {
    std::fprintf(stderr, "%s: %s\n", tool, e.what());
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "%s: out of memory (the shapes asked for need more than this machine gives)\n", tool);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", tool, e.what());
  }
  return 1;
}

}  // namespace spattn::cli
