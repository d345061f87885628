#pragma once
// Strict command-line parsing for the spattn tools: a bad flag or value exits
// with status 2 and a message on stderr naming it.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>

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
};

}  // namespace spattn::cli
