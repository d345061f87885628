// Fuzzes the .npy parser (parse_npy, what load_npy runs on a file's bytes).
// A spattn::Error is the expected answer to bad input; any other exception,
// a sanitizer report or a huge allocation (libFuzzer's -rss_limit_mb /
// -malloc_limit_mb) is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <span>

#include "spattn/error.hpp"
#include "spattn/lab/workload.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const spattn::NpyArray a =
        spattn::parse_npy(std::as_bytes(std::span<const uint8_t>(data, size)), "fuzz.npy");
    // An accepted array holds exactly product(shape) values.
    size_t count = 1;
    for (int64_t n : a.shape) count *= static_cast<size_t>(n);
    if (a.data.size() != count) {
      std::fprintf(stderr, "parse_npy: %zu values for a shape of %zu\n", a.data.size(), count);
      std::abort();
    }
  } catch (const spattn::Error&) {
  }
  return 0;
}
