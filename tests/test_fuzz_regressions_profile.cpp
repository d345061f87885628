// Profile inputs fuzz/fuzz_profile_yaml.cpp found mishandled, kept as
// regression tests (the YAML ones live here, in the tuner suite).
#include <gtest/gtest.h>

#include <string>

#include "spattn/error.hpp"
#include "spattn/profile.hpp"

namespace spattn {
namespace {

std::string profile_with_cpu(const std::string& cpu_model_yaml) {
  return "schema_version: 1\n"
         "machine:\n"
         "  cpu_model: " + cpu_model_yaml + "\n"
         "  isa: avx2\n  cores: 2\n  numa_nodes: 1\n  l1d_bytes: 0\n  l2_bytes: 0\n  l3_bytes: 0\n"
         "entries: []\n";
}

std::string error_of(const std::string& text) {
  try {
    (void)Profile::from_yaml_string(text, "p.yaml");
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// yaml-cpp reads invalid UTF-8 in a plain scalar as raw bytes but writes it
// back re-encoded, so the profile changed on every merge-save. Found by
// fuzz_profile_yaml's write/read round trip (crash-34b52c83...).
TEST(FuzzRegressions, ProfileStringsMustBeUtf8TextWithoutControlCharacters) {
  EXPECT_EQ(error_of(profile_with_cpu("Int\x8d\x1b\x93 Xeon")),
            "spattn: profile 'p.yaml': line 3: 'machine.cpu_model' must be valid UTF-8");
  EXPECT_EQ(error_of(profile_with_cpu("\"Xeon\\x1d CPU\"")),
            "spattn: profile 'p.yaml': line 3: 'machine.cpu_model' must not contain control characters");
  EXPECT_EQ(error_of(profile_with_cpu("\"Xeon\\u0085\"")),  // C1 control (NEL)
            "spattn: profile 'p.yaml': line 3: 'machine.cpu_model' must not contain control characters");
  EXPECT_EQ(error_of(profile_with_cpu("\"\xed\xa0\x80\"")),  // UTF-16 surrogate
            "spattn: profile 'p.yaml': line 3: 'machine.cpu_model' must be valid UTF-8");
  // Real UTF-8 is fine and survives a write/read round trip.
  const Profile p = Profile::from_yaml_string(profile_with_cpu("Xeon\xc2\xae Gr\xc3\xbc\xc3\x9f \xf0\x9f\x9a\x80"), "p.yaml");
  EXPECT_EQ(p.machine.cpu_model, "Xeon\xc2\xae Gr\xc3\xbc\xc3\x9f \xf0\x9f\x9a\x80");
  EXPECT_EQ(Profile::from_yaml_string(p.to_yaml(), "back.yaml"), p);
}

}  // namespace
}  // namespace spattn
