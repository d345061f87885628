// Fuzzes the profile reader (Profile::from_yaml_string). Any spattn::Error is
// the expected answer to bad input; any other exception (yaml-cpp's own
// included) escapes and libFuzzer reports it as a crash. A profile that loads
// must also survive to_yaml() and load back equal: the tuner writes what it
// read when it merges.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "spattn/error.hpp"
#include "spattn/profile.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  spattn::Profile p;
  try {
    p = spattn::Profile::from_yaml_string(text, "fuzz");
  } catch (const spattn::Error&) {
    return 0;
  }
  const std::string yaml = p.to_yaml();
  const spattn::Profile back = spattn::Profile::from_yaml_string(yaml, "fuzz (written back)");
  if (!(back == p)) {
    std::fprintf(stderr, "profile changed on a write/read round trip:\n%s\n", yaml.c_str());
    std::abort();
  }
  return 0;
}
