// Tuning profiles: YAML round trip, merge, atomic and concurrent saves,
// malformed files, schema versions, lookup rules, machine checks.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "spattn/config.h"
#include "spattn/error.hpp"
#include "spattn/isa.hpp"
#include "spattn/profile.hpp"

namespace fs = std::filesystem;
using namespace spattn;

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/spattn_profile_test_XXXXXX";
    const char* p = ::mkdtemp(tmpl);
    if (!p) throw std::runtime_error("mkdtemp failed");
    path = p;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return path + "/" + name; }
};

MachineInfo test_machine(const std::string& model = "Test CPU 9000", const std::string& isa = "avx2") {
  MachineInfo m;
  m.cpu_model = model;
  m.isa = isa;
  m.cores = 2;
  m.numa_nodes = 1;
  m.l1d_bytes = 48 * 1024;
  m.l2_bytes = 2 * 1024 * 1024;
  m.l3_bytes = 0;
  return m;
}

ProfileEntry make_entry(int64_t heads, int64_t kv_heads, int64_t seq, int64_t hd, int64_t steps = 64,
                        const std::string& policy = "sparsed") {
  ProfileEntry e;
  e.shape = {heads, kv_heads, seq, hd, steps};
  e.policy = policy;
  e.block_size = 32;
  e.topk_ratio = 1.0 / 3.0;  // needs every digit to round-trip
  e.warmup_fraction = 0.25;
  e.q_tile_rows = 128;
  e.threads = 2;
  e.dense_ms = 123.456789;
  e.sparse_ms = 61.0000001;
  e.speedup = e.dense_ms / e.sparse_ms;
  e.mean_cosine = 0.99731;
  e.min_cosine = 0.9812;
  e.mean_density = 1e-7;
  e.tuned_at = "2025-06-01T12:34:56Z";
  return e;
}

Profile make_profile(int n, const MachineInfo& m = test_machine()) {
  Profile p;
  p.machine = m;
  for (int i = 0; i < n; ++i) p.entries.push_back(make_entry(8, 2, 256 + 64 * i, 64, 16 + i));
  return p;
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// The message of the spattn::Error fn throws, or nullopt if it does not throw.
std::optional<std::string> error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return std::string(e.what());
  }
  return std::nullopt;
}

std::vector<std::string> dir_names(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& de : fs::directory_iterator(dir)) names.push_back(de.path().filename().string());
  return names;
}

// Temp files a save leaves behind for "p.yaml": "p.yaml.tmp.<pid>.<random>".
std::vector<std::string> temp_files(const std::string& dir, const std::string& base) {
  std::vector<std::string> out;
  for (const auto& n : dir_names(dir))
    if (n.rfind(base + ".tmp.", 0) == 0) out.push_back(dir + "/" + n);
  return out;
}

int wait_exit_code(pid_t pid) {
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

// A valid profile with one entry; the line numbers matter to the malformed cases.
const char* kValid =
    "schema_version: 1\n"                                                                 // 1
    "machine:\n"                                                                          // 2
    "  cpu_model: Test CPU 9000\n"                                                        // 3
    "  isa: avx2\n"                                                                       // 4
    "  cores: 2\n"                                                                        // 5
    "  numa_nodes: 1\n"                                                                   // 6
    "  l1d_bytes: 49152\n"                                                                // 7
    "  l2_bytes: 2097152\n"                                                               // 8
    "  l3_bytes: 0\n"                                                                     // 9
    "entries:\n"                                                                          // 10
    "  - shape: {heads: 8, kv_heads: 8, seq_len: 1024, head_dim: 64, steps: 16}\n"        // 11
    "    workload: synthetic\n"                                                           // 12
    "    policy: sparsed\n"                                                               // 13
    "    accuracy_bound: {min_mean_cosine: 0.99, min_step_cosine: 0.98}\n"                // 14
    "    chosen:\n"                                                                       // 15
    "      block_size: 64\n"                                                              // 16
    "      topk_ratio: 0.1\n"                                                             // 17
    "      warmup_fraction: 0.2\n"                                                        // 18
    "      q_tile_rows: 64\n"                                                             // 19
    "      threads: 0\n"                                                                  // 20
    "    measured:\n"                                                                     // 21
    "      dense_ms: 10.5\n"                                                              // 22
    "      sparse_ms: 5.25\n"                                                             // 23
    "      speedup: 2\n"                                                                  // 24
    "      mean_cosine: 0.995\n"                                                          // 25
    "      min_cosine: 0.99\n"                                                            // 26
    "      mean_density: 0.3\n"                                                           // 27
    "    tuned_at: \"2025-01-01T00:00:00Z\"\n";                                           // 28

std::string replaced(std::string text, const std::string& from, const std::string& to) {
  const size_t p = text.find(from);
  if (p == std::string::npos) throw std::runtime_error("test bug: '" + from + "' not in text");
  return text.replace(p, from.size(), to);
}

}  // namespace

// ---------------------------------------------------------------------------

TEST(ProfileRoundTrip, SaveThenLoadGivesTheSameProfile) {
  TempDir d;
  Profile p = make_profile(3);
  p.entries[1].workload = "npy:/data/llada dumps: run #1";  // needs quoting in YAML
  p.entries[2].policy = "dpad_sparsed";
  p.entries[2].tuned_at = "";
  p.machine.cpu_model = "Weird \"CPU\": 7 # not a comment";
  const std::string path = d.file("p.yaml");
  p.save(path);
  const Profile back = Profile::load(path);
  EXPECT_EQ(back, p);
  EXPECT_EQ(back.entries[0].topk_ratio, 1.0 / 3.0);
  EXPECT_EQ(back.entries[1].workload, "npy:/data/llada dumps: run #1");
  EXPECT_EQ(Profile::from_yaml_string(p.to_yaml(), "mem"), p);
  // Only the profile and its lock file are left: no temp files.
  EXPECT_TRUE(temp_files(d.path, "p.yaml").empty());
  EXPECT_TRUE(fs::exists(path + ".lock"));
}

TEST(ProfileRoundTrip, EmptyEntriesAndSchemaVersionAreWritten) {
  TempDir d;
  Profile p = make_profile(0);
  const std::string path = d.file("sub/dir/p.yaml");  // parent folders are created
  p.save(path);
  const Profile back = Profile::load(path);
  EXPECT_EQ(back, p);
  EXPECT_TRUE(back.entries.empty());
  EXPECT_NE(p.to_yaml().find("schema_version: " + std::to_string(kProfileSchemaVersion)), std::string::npos);
  EXPECT_NE(p.to_yaml().find("id: " + p.machine.machine_id()), std::string::npos);
}

TEST(ProfileRoundTrip, SaveRefusesAProfileItCouldNotLoad) {
  TempDir d;
  Profile p = make_profile(1);
  p.entries[0].topk_ratio = 1.5;
  const std::string path = d.file("p.yaml");
  auto msg = error_of([&] { p.save(path); });
  ASSERT_TRUE(msg);
  EXPECT_NE(msg->find("topk_ratio"), std::string::npos) << *msg;
  EXPECT_FALSE(fs::exists(path));
}

TEST(ProfileMerge, ReplacesTheSameKeyAndKeepsOthers) {
  Profile p = make_profile(2);
  ProfileEntry same = p.entries[1];
  same.topk_ratio = 0.05;
  p.merge(same);
  ASSERT_EQ(p.entries.size(), 2u);
  EXPECT_EQ(p.entries[1].topk_ratio, 0.05);
  EXPECT_EQ(p.entries[0], make_profile(2).entries[0]);

  ProfileEntry other_policy = same;
  other_policy.policy = "unisparse";
  p.merge(other_policy);
  ProfileEntry other_workload = same;
  other_workload.workload = "npy:/x";
  p.merge(other_workload);
  EXPECT_EQ(p.entries.size(), 4u);
  EXPECT_NE(p.find(same.shape, "synthetic", "unisparse"), nullptr);
  EXPECT_NE(p.find(same.shape, "npy:/x", "sparsed"), nullptr);
  EXPECT_EQ(p.find(same.shape, "npy:/y", "sparsed"), nullptr);
}

TEST(ProfileMerge, SaveMergedKeepsOtherShapesOnDisk) {
  TempDir d;
  const std::string path = d.file("p.yaml");
  Profile first = make_profile(2);  // shapes A, B
  first.save(path);

  Profile second = make_profile(0);
  ProfileEntry b2 = first.entries[1];
  b2.speedup = 9.5;
  ProfileEntry c = make_entry(32, 8, 4096, 128);
  second.entries = {b2, c};
  const Profile written = second.save_merged(path);

  const Profile back = Profile::load(path);
  EXPECT_EQ(back, written);
  ASSERT_EQ(back.entries.size(), 3u);
  EXPECT_EQ(back.entries[0], first.entries[0]);
  EXPECT_EQ(back.entries[1].speedup, 9.5);
  EXPECT_EQ(back.entries[2], c);

  // merge_into_file into a missing file creates it.
  const std::string fresh = d.file("fresh.yaml");
  merge_into_file(fresh, c, test_machine());
  EXPECT_EQ(Profile::load(fresh).entries, std::vector<ProfileEntry>{c});
}

TEST(ProfileMerge, RefusesToMixMachinesAndKeepsTheFile) {
  TempDir d;
  const std::string path = d.file("p.yaml");
  const Profile other = make_profile(1, test_machine("Other CPU"));
  other.save(path);
  auto msg = error_of([&] { merge_into_file(path, make_entry(4, 4, 512, 64), test_machine()); });
  ASSERT_TRUE(msg);
  EXPECT_NE(msg->find("Other CPU"), std::string::npos) << *msg;
  EXPECT_NE(msg->find(path), std::string::npos) << *msg;
  EXPECT_EQ(Profile::load(path), other);
}

TEST(ProfileMerge, DoesNotOverwriteAMalformedFile) {
  TempDir d;
  const std::string path = d.file("p.yaml");
  write_text(path, replaced(kValid, "topk_ratio: 0.1", "topk_ratio: 7"));
  auto msg = error_of([&] { merge_into_file(path, make_entry(4, 4, 512, 64), test_machine()); });
  ASSERT_TRUE(msg);
  EXPECT_NE(msg->find("line 17"), std::string::npos) << *msg;
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_NE(ss.str().find("topk_ratio: 7"), std::string::npos);
}

// ---------------------------------------------------------------------------

TEST(ProfileAtomic, WriterKilledMidSaveLeavesTheOldProfile) {
  TempDir d;
  const std::string path = d.file("p.yaml");
  const Profile old = make_profile(2);
  old.save(path);
  const Profile big = make_profile(2000);
  const size_t big_size = big.to_yaml().size();

  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Pauses 30 s after writing half of the temp file: killed there.
    ::setenv("SPATTN_PROFILE_TEST_SAVE_PAUSE_MS", "30000", 1);
    try {
      big.save(path);
    } catch (...) {
    }
    ::_exit(3);
  }
  std::string tmp;
  for (int i = 0; i < 2000 && tmp.empty(); ++i) {
    for (const auto& t : temp_files(d.path, "p.yaml")) {
      std::error_code ec;
      if (fs::file_size(t, ec) > 0 && !ec) tmp = t;
    }
    if (tmp.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ::kill(pid, SIGKILL);
  EXPECT_EQ(wait_exit_code(pid), 128 + SIGKILL);
  ASSERT_FALSE(tmp.empty()) << "the writer never started its temp file";

  // The writer died mid-write: its temp file is partial, the profile intact.
  EXPECT_LT(fs::file_size(tmp), big_size);
  EXPECT_EQ(Profile::load(path), old);

  // The next save removes the stale temp file.
  old.save_merged(path);
  EXPECT_FALSE(fs::exists(tmp));
  EXPECT_EQ(Profile::load(path), old);
}

TEST(ProfileAtomic, WriterKilledDuringASaveLoopNeverLeavesABrokenFile) {
  TempDir d;
  const std::string path = d.file("p.yaml");
  const Profile a = make_profile(1);
  const Profile b = make_profile(400);
  a.save(path);
  for (int round = 0; round < 6; ++round) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      // Most of each save is spent with a half-written temp file.
      ::setenv("SPATTN_PROFILE_TEST_SAVE_PAUSE_MS", "3", 1);
      for (int i = 0;; ++i) {
        try {
          (i % 2 ? b : a).save(path);
        } catch (...) {
          ::_exit(1);
        }
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(15 + 23 * round));
    ::kill(pid, SIGKILL);
    EXPECT_EQ(wait_exit_code(pid), 128 + SIGKILL);
    Profile got;
    const auto msg = error_of([&] { got = Profile::load(path); });
    ASSERT_FALSE(msg) << "round " << round << ": " << *msg;
    EXPECT_TRUE(got == a || got == b) << "round " << round << ": " << got.entries.size() << " entries";
  }
}

TEST(ProfileConcurrency, TwoWritersMergingIntoOneFileKeepBothEntries) {
  TempDir d;
  const std::string path = d.file("p.yaml");
  const ProfileEntry seed = make_entry(16, 16, 8192, 128);
  merge_into_file(path, seed, test_machine());

  const ProfileEntry mine[2] = {make_entry(8, 2, 1024, 64), make_entry(8, 2, 2048, 64)};
  pid_t pids[2];
  for (int w = 0; w < 2; ++w) {
    pids[w] = ::fork();
    ASSERT_GE(pids[w], 0);
    if (pids[w] == 0) {
      try {
        for (int i = 0; i < 20; ++i) {
          ProfileEntry e = mine[w];
          e.speedup = 1.0 + i;
          merge_into_file(path, e, test_machine());
        }
      } catch (...) {
        ::_exit(1);
      }
      ::_exit(0);
    }
  }
  EXPECT_EQ(wait_exit_code(pids[0]), 0);
  EXPECT_EQ(wait_exit_code(pids[1]), 0);

  const Profile p = Profile::load(path);
  EXPECT_EQ(p.entries.size(), 3u);
  EXPECT_NE(p.find(seed.shape, "synthetic", "sparsed"), nullptr);
  for (const ProfileEntry& e : mine) {
    const ProfileEntry* got = p.find(e.shape, "synthetic", "sparsed");
    ASSERT_NE(got, nullptr);
    EXPECT_EQ(got->speedup, 20.0);  // the last merge of that writer
  }
  EXPECT_TRUE(temp_files(d.path, "p.yaml").empty());
}

// ---------------------------------------------------------------------------

struct MalformedCase {
  const char* name;
  std::string text;
  int line;
  const char* mentions;  // a word the message must contain
};

TEST(ProfileMalformed, ValidBaseLoads) {
  const Profile p = Profile::from_yaml_string(kValid, "valid.yaml");
  ASSERT_EQ(p.entries.size(), 1u);
  EXPECT_EQ(p.entries[0].shape, (TunedShape{8, 8, 1024, 64, 16}));
  EXPECT_EQ(p.entries[0].topk_ratio, 0.1);
  EXPECT_EQ(p.machine.cpu_model, "Test CPU 9000");
}

TEST(ProfileMalformed, ErrorsNameTheFileAndTheLine) {
  const std::string v = kValid;
  const std::string entry = v.substr(v.find("  - shape:"));
  const std::vector<MalformedCase> cases = {
      // yaml-cpp reports an unclosed flow where it notices: the next line.
      {"bad_yaml", replaced(v, "  cores: 2", "  cores: [2"), 6, "YAML"},
      {"unclosed_flow", replaced(v, "    policy: sparsed", "    policy: [sparsed, {"), 15, "YAML"},
      {"bad_indent", replaced(v, "  isa: avx2", "    isa: avx2"), 4, "YAML"},
      {"missing_cpu_model", replaced(v, "  cpu_model: Test CPU 9000\n", ""), 3, "cpu_model"},
      {"missing_tuned_at", replaced(v, "    tuned_at: \"2025-01-01T00:00:00Z\"\n", ""), 11, "tuned_at"},
      {"missing_machine", v.substr(0, v.find("machine:")) + v.substr(v.find("entries:")), 1, "machine"},
      {"wrong_type_heads", replaced(v, "{heads: 8", "{heads: eight"), 11, "heads"},
      {"wrong_type_cores", replaced(v, "cores: 2", "cores: [2, 3]"), 5, "cores"},
      {"entries_not_list", v.substr(0, v.find("entries:")) + "entries: 5\n", 10, "entries"},
      {"zero_heads", replaced(v, "{heads: 8", "{heads: 0"), 11, "heads"},
      {"negative_seq", replaced(v, "seq_len: 1024", "seq_len: -1024"), 11, "seq_len"},
      {"kv_not_dividing", replaced(v, "kv_heads: 8", "kv_heads: 3"), 11, "kv_heads"},
      {"zero_block", replaced(v, "block_size: 64", "block_size: 0"), 16, "block_size"},
      {"odd_block", replaced(v, "block_size: 64", "block_size: 48"), 16, "block_size"},
      {"negative_tile", replaced(v, "q_tile_rows: 64", "q_tile_rows: -64"), 19, "q_tile_rows"},
      {"topk_above_1", replaced(v, "topk_ratio: 0.1", "topk_ratio: 1.5"), 17, "topk_ratio"},
      {"topk_zero", replaced(v, "topk_ratio: 0.1", "topk_ratio: 0"), 17, "topk_ratio"},
      {"warmup_one", replaced(v, "warmup_fraction: 0.2", "warmup_fraction: 1.0"), 18, "warmup_fraction"},
      {"warmup_negative", replaced(v, "warmup_fraction: 0.2", "warmup_fraction: -0.1"), 18, "warmup"},
      {"nan_time", replaced(v, "dense_ms: 10.5", "dense_ms: .nan"), 22, "dense_ms"},
      {"density_above_1", replaced(v, "mean_density: 0.3", "mean_density: 1.5"), 27, "mean_density"},
      {"negative_cache", replaced(v, "l3_bytes: 0", "l3_bytes: -1"), 9, "l3_bytes"},
      {"unknown_isa", replaced(v, "isa: avx2", "isa: sse9"), 4, "isa"},
      {"bad_workload", replaced(v, "workload: synthetic", "workload: random"), 12, "workload"},
      {"unknown_key", replaced(v, "    policy: sparsed\n", "    policy: sparsed\n    topk: 0.1\n"), 14, "topk"},
      {"duplicate_entry", v + entry, 29, "repeats"},
      {"schema_zero", replaced(v, "schema_version: 1", "schema_version: 0"), 1, "schema_version"},
      {"top_level_list", "- 1\n- 2\n", 1, "map"},
      {"empty_file", "", 1, "empty"},
  };
  TempDir d;
  for (const MalformedCase& c : cases) {
    const std::string path = d.file(std::string(c.name) + ".yaml");
    write_text(path, c.text);
    auto msg = error_of([&] { (void)Profile::load(path); });
    ASSERT_TRUE(msg) << c.name << " was accepted";
    EXPECT_NE(msg->find(path), std::string::npos) << c.name << ": " << *msg;
    EXPECT_NE(msg->find("line " + std::to_string(c.line) + ":"), std::string::npos)
        << c.name << ": " << *msg;
    EXPECT_NE(msg->find(c.mentions), std::string::npos) << c.name << ": " << *msg;
    if (std::getenv("SPATTN_TEST_VERBOSE")) std::printf("%s\n", msg->c_str());
  }
}

TEST(ProfileMalformed, MissingFileIsAnErrorNamingIt) {
  TempDir d;
  const std::string path = d.file("nope.yaml");
  auto msg = error_of([&] { (void)Profile::load(path); });
  ASSERT_TRUE(msg);
  EXPECT_NE(msg->find(path), std::string::npos) << *msg;
  auto dir_msg = error_of([&] { (void)Profile::load(d.path); });  // a folder, not a file
  ASSERT_TRUE(dir_msg);
  EXPECT_NE(dir_msg->find(d.path), std::string::npos) << *dir_msg;
}

TEST(ProfileSchema, NewerSchemaIsRefusedClearly) {
  // A newer file may have keys this build does not know: the version is
  // reported, not the unknown key.
  const std::string newer = std::to_string(kProfileSchemaVersion + 1);
  const std::string text = replaced(replaced(kValid, "schema_version: 1", "schema_version: " + newer),
                                    "    policy: sparsed\n", "    policy: sparsed\n    new_key: 1\n");
  auto msg = error_of([&] { (void)Profile::from_yaml_string(text, "future.yaml"); });
  ASSERT_TRUE(msg);
  EXPECT_NE(msg->find("future.yaml"), std::string::npos) << *msg;
  EXPECT_NE(msg->find("schema_version " + newer + " is newer"), std::string::npos) << *msg;
  EXPECT_NE(msg->find("line 1:"), std::string::npos) << *msg;
  // Older schema versions still load.
  EXPECT_EQ(Profile::from_yaml_string(kValid, "ok.yaml").schema_version, 1);
}

TEST(ProfileSchema, Version2PooledBudgetRoundTripsAndDefaultsToFalse) {
  Profile v1 = Profile::from_yaml_string(kValid, "v1.yaml");
  ASSERT_FALSE(v1.entries.empty());
  EXPECT_FALSE(v1.entries[0].pooled_budget);  // absent in schema 1: SparseD's per-head rule
  v1.entries[0].pooled_budget = true;
  v1.schema_version = kProfileSchemaVersion;
  const Profile back = Profile::from_yaml_string(v1.to_yaml(), "v2.yaml");
  EXPECT_EQ(back, v1);
  const std::string bad = replaced(v1.to_yaml(), "pooled_budget: true", "pooled_budget: maybe");
  auto msg = error_of([&] { (void)Profile::from_yaml_string(bad, "bad.yaml"); });
  ASSERT_TRUE(msg);
  EXPECT_NE(msg->find("pooled_budget"), std::string::npos) << *msg;
  EXPECT_NE(msg->find("true or false"), std::string::npos) << *msg;
}

// ---------------------------------------------------------------------------

TEST(ProfileLookup, NearestSeqLenWithTheSameHeadDim) {
  Profile p = make_profile(0);
  p.entries = {make_entry(32, 8, 1024, 128), make_entry(32, 8, 4096, 128),
               make_entry(32, 8, 16384, 128), make_entry(32, 8, 3000, 64)};
  const ProfileEntry* e = p.lookup({32, 8, 3000, 128, 64});
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->shape.seq_len, 4096);  // |log(4096/3000)| < |log(3000/1024)|
  e = p.lookup({32, 8, 2000, 128, 64});
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->shape.seq_len, 1024);  // ratio 1.95 vs 2.05
  e = p.lookup({32, 8, 2048, 128, 64});  // exact tie between 1024 and 4096: the larger
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->shape.seq_len, 4096);
  e = p.lookup({32, 8, 6000, 64, 64});
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->shape.head_dim, 64);
}

// Item 8 of the accuracy issue: a setting tuned more than 2x away in seq_len
// or steps is refused by lookup; match() still names it and says why.
TEST(ProfileLookup, EntriesMoreThanTwiceAwayAreRefused) {
  Profile p = make_profile(0);
  p.entries = {make_entry(32, 8, 4096, 128, 64)};
  EXPECT_NE(p.lookup({32, 8, 8192, 128, 64}), nullptr);  // exactly 2x fits
  EXPECT_NE(p.lookup({32, 8, 2048, 128, 128}), nullptr);
  EXPECT_EQ(p.lookup({32, 8, 8193, 128, 64}), nullptr);
  EXPECT_EQ(p.lookup({32, 8, 2047, 128, 64}), nullptr);
  EXPECT_EQ(p.lookup({32, 8, 4096, 128, 129}), nullptr);
  EXPECT_EQ(p.lookup({32, 8, 4096, 128, 31}), nullptr);
  ProfileMatch m = p.match({32, 8, 100000, 128, 200});
  ASSERT_NE(m.entry, nullptr);
  EXPECT_FALSE(m.fits);
  EXPECT_NE(m.why.find("seq_len 4096, more than 2x from 100000"), std::string::npos) << m.why;
  EXPECT_NE(m.why.find("64 steps, more than 2x from 200"), std::string::npos) << m.why;
  // match(): dtype and policy must be equal; nothing is then "nearest".
  TunedShape bf16{32, 8, 4096, 128, 64};
  bf16.dtype = "bf16";
  m = p.match(bf16);
  EXPECT_EQ(m.entry, nullptr);
  EXPECT_NE(m.why.find("dtype bf16"), std::string::npos) << m.why;
  EXPECT_EQ(p.match({32, 8, 4096, 128, 64}, "unisparse").entry, nullptr);
  // A session from the profile: strict gives the defaults, lenient the entry (both say so on stderr).
  SessionConfig base;
  base.total_steps = 64;
  const AttentionShape far{32, 8, 20000, 20000, 128};
  EXPECT_EQ(session_config_from_profile(p, far, base).block_size, 64);
  EXPECT_EQ(session_config_from_profile(p, far, base, ProfileFit::lenient).block_size, 32);
  EXPECT_EQ(session_config_from_profile(p, AttentionShape{32, 8, 5000, 5000, 128}, base).block_size, 32);
}

// A session at a dtype the profile has no entry for takes the entry of
// another dtype for its pattern (block, top-k, warmup, budget), keeping its
// own query tiles; an entry at its own dtype always wins, and match() itself
// stays exact.
TEST(ProfileLookup, SessionsAtAnotherDtypeTakeThePatternNotTheTiles) {
  Profile p = make_profile(0);
  p.entries = {make_entry(32, 8, 4096, 128, 64)};  // fp32: block 32, q_tile_rows 128
  TunedShape bf16{32, 8, 4096, 128, 64};
  bf16.dtype = "bf16";
  EXPECT_EQ(p.match(bf16).entry, nullptr);
  ProfileMatch m = p.match_any_dtype(bf16);
  ASSERT_NE(m.entry, nullptr);
  EXPECT_TRUE(m.fits);
  EXPECT_TRUE(m.other_dtype);
  EXPECT_EQ(m.entry->shape.dtype, "fp32");
  EXPECT_FALSE(p.match_any_dtype({32, 8, 4096, 128, 64}).other_dtype);
  const AttentionShape shape{32, 8, 4096, 4096, 128};
  SessionConfig base;
  base.total_steps = 64;
  base.kernel.q_tile_rows = 0;
  testing::internal::CaptureStderr();
  const SessionConfig at_bf16 = session_config_from_profile(p, shape, base, ProfileFit::strict, DType::bf16);
  const std::string said = testing::internal::GetCapturedStderr();
  EXPECT_EQ(at_bf16.block_size, 32);
  EXPECT_DOUBLE_EQ(at_bf16.topk_ratio, 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(at_bf16.warmup_fraction, 0.25);
  EXPECT_EQ(at_bf16.kernel.q_tile_rows, 0);  // bf16's own (preferred) tiles
  EXPECT_NE(said.find("no entry for dtype bf16; using the fp32 entry's pattern"), std::string::npos) << said;
  const SessionConfig at_fp32 = session_config_from_profile(p, shape, base, ProfileFit::strict, DType::fp32);
  EXPECT_EQ(at_fp32.kernel.q_tile_rows, 128);
  // Per layer the same, and an entry at the session's dtype wins over one
  // that comes first in the file.
  ProfileEntry l0 = make_entry(32, 8, 4096, 128, 64);
  l0.layer = 0;
  ProfileEntry l0_bf16 = l0;
  l0_bf16.shape.dtype = "bf16";
  l0_bf16.block_size = 128;
  p.entries = {l0, l0_bf16};
  EXPECT_EQ(session_config_for_layer(p, shape, 0, base, ProfileFit::strict, DType::bf16).block_size, 128);
  EXPECT_EQ(session_config_for_layer(p, shape, 0, base, ProfileFit::strict, DType::fp16).block_size, 32);
  // Without any entry for the shape: the documented defaults, base's tiles.
  testing::internal::CaptureStderr();
  const SessionConfig none =
      session_config_from_profile(p, AttentionShape{32, 8, 4096, 4096, 64}, base, ProfileFit::strict, DType::bf16);
  testing::internal::GetCapturedStderr();
  EXPECT_EQ(none.block_size, 64);
  EXPECT_EQ(none.kernel.q_tile_rows, 0);
}

TEST(ProfileLookup, HeadDimMustMatchElseDefaults) {
  Profile p = make_profile(0);
  p.entries = {make_entry(32, 8, 4096, 128)};
  EXPECT_EQ(p.lookup({32, 8, 4096, 96, 64}), nullptr);
  EXPECT_EQ(Profile{}.lookup({32, 8, 4096, 128, 64}), nullptr);
  const TunedShape s{32, 8, 4096, 96, 64};
  const ProfileEntry def = Profile::default_entry(s);
  EXPECT_EQ(def.shape, s);
  EXPECT_EQ(def.block_size, 64);
  EXPECT_EQ(def.topk_ratio, 0.1);
  EXPECT_EQ(def.warmup_fraction, 0.2);
  EXPECT_EQ(def.q_tile_rows, 64);
  EXPECT_EQ(def.threads, 0);
  EXPECT_EQ(def.policy, "sparsed");
  EXPECT_EQ(def.workload, "synthetic");
}

TEST(ProfileLookup, FittingFirstThenSameHeadsThenNearerSeqLen) {
  Profile p = make_profile(0);
  p.entries = {make_entry(32, 8, 16384, 128), make_entry(16, 16, 4096, 128), make_entry(16, 16, 20000, 128)};
  const ProfileEntry* e = p.lookup({16, 16, 32768, 128, 64});
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->shape.heads, 16);  // both fit: the same heads win over the nearer seq_len
  EXPECT_EQ(e->shape.seq_len, 20000);
  e = p.lookup({64, 8, 32768, 128, 64});  // no heads match: nearest seq_len
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->shape.seq_len, 20000);
  // The same heads 8x away lose to other heads that fit.
  p.entries = {make_entry(32, 8, 16384, 128), make_entry(16, 16, 4096, 128)};
  e = p.lookup({16, 16, 32768, 128, 64});
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->shape.seq_len, 16384);
}

TEST(ProfileLookup, StepsBreakTiesAndPolicyFilters) {
  Profile p = make_profile(0);
  p.entries = {make_entry(8, 8, 1024, 64, 16), make_entry(8, 8, 1024, 64, 256),
               make_entry(8, 8, 1024, 64, 64, "unisparse")};
  const ProfileEntry* e = p.lookup({8, 8, 1024, 64, 200}, "sparsed");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->shape.steps, 256);
  e = p.lookup({8, 8, 1024, 64, 100}, "unisparse");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->policy, "unisparse");
  EXPECT_EQ(p.lookup({8, 8, 1024, 64, 200}, "unisparse"), nullptr);  // 64 steps: more than 2x from 200
  EXPECT_EQ(p.lookup({8, 8, 1024, 64, 200}, "dpad"), nullptr);
  e = p.lookup({8, 8, 1024, 64, 64});  // any policy: the exact steps match
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->shape.steps, 64);
}

// ---------------------------------------------------------------------------

TEST(ProfileMachine, MatchesComparesCpuModelAndIsa) {
  Profile p = make_profile(0, test_machine("A", "avx512"));
  MachineInfo here = test_machine("A", "avx512");
  here.cores = 64;  // cores and caches do not matter
  here.l3_bytes = 1 << 30;
  EXPECT_TRUE(p.matches(here));
  EXPECT_FALSE(p.matches(test_machine("A", "avx2")));
  EXPECT_FALSE(p.matches(test_machine("B", "avx512")));
}

TEST(ProfileMachine, OtherCpuWarnsOrIsRefusedWhenStrict) {
  TempDir d;
  const std::string path = d.file("p.yaml");
  const Profile other = make_profile(2, test_machine("Other CPU"));
  other.save(path);

  testing::internal::CaptureStderr();
  const Profile got = Profile::load_for_machine(path, false, test_machine());
  const std::string warning = testing::internal::GetCapturedStderr();
  EXPECT_EQ(got, other);
  EXPECT_NE(warning.find("warning"), std::string::npos) << warning;
  EXPECT_NE(warning.find(path), std::string::npos) << warning;
  EXPECT_NE(warning.find("Other CPU"), std::string::npos) << warning;

  auto msg = error_of([&] { (void)Profile::load_for_machine(path, true, test_machine()); });
  ASSERT_TRUE(msg);
  EXPECT_NE(msg->find("Other CPU"), std::string::npos) << *msg;
  EXPECT_NE(msg->find("Test CPU 9000"), std::string::npos) << *msg;

  testing::internal::CaptureStderr();
  EXPECT_EQ(Profile::load_for_machine(path, true, test_machine("Other CPU")), other);
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
}

TEST(MachineInfo, DetectGivesSaneValues) {
  const MachineInfo m = MachineInfo::detect();
  EXPECT_GE(m.cores, 1);
  if (std::thread::hardware_concurrency() > 0) {
    EXPECT_EQ(m.cores, static_cast<int>(std::thread::hardware_concurrency()));
  }
  EXPECT_GE(m.numa_nodes, 1);
  EXPECT_FALSE(m.cpu_model.empty());
  EXPECT_EQ(m.isa, isa_name(active_isa()));
  EXPECT_GE(m.l1d_bytes, 0);
  EXPECT_GE(m.l2_bytes, 0);
  EXPECT_GE(m.l3_bytes, 0);
  const std::string id = m.machine_id();
  ASSERT_FALSE(id.empty());
  EXPECT_LE(id.size(), 96u);
  for (char c : id) EXPECT_TRUE((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-') << id;
  EXPECT_NE(id.front(), '-');
  const std::string suffix = "-" + std::to_string(m.cores) + "c";
  EXPECT_EQ(id.substr(id.size() - suffix.size()), suffix);
  // Detected machines round-trip through a profile.
  Profile p;
  p.machine = m;
  EXPECT_EQ(Profile::from_yaml_string(p.to_yaml(), "detected").machine, m);
}

TEST(MachineInfo, IdIsAStableFilesystemSafeSlug) {
  auto id = [](const std::string& model, int cores) {
    MachineInfo m;
    m.cpu_model = model;
    m.cores = cores;
    return m.machine_id();
  };
  EXPECT_EQ(id("Intel(R) Xeon(R) Processor", 2), "intel-xeon-processor-2c");
  EXPECT_EQ(id("AMD EPYC 9654 96-Core Processor", 192), "amd-epyc-9654-96-core-processor-192c");
  EXPECT_EQ(id("Intel(R) Core(TM) i9-13900K CPU @ 3.00GHz", 32), "intel-core-i9-13900k-cpu-3-00ghz-32c");
  EXPECT_EQ(id("  ../weird/CPU@3GHz!!  ", 4), "weird-cpu-3ghz-4c");
  EXPECT_EQ(id("", 1), "unknown-1c");
  const std::string long_id = id(std::string(300, 'x'), 8);
  EXPECT_LE(long_id.size(), 96u);
  EXPECT_EQ(long_id.substr(long_id.size() - 3), "-8c");
  EXPECT_EQ(id("Intel(R) Xeon(R) Processor", 2), id("Intel(R) Xeon(R) Processor", 2));
}

TEST(ProfileDefaults, DefaultPathFollowsSpattnProfile) {
  const char* old = std::getenv("SPATTN_PROFILE");
  const std::string saved = old ? old : "";
  ::setenv("SPATTN_PROFILE", "/somewhere/mine.yaml", 1);
  EXPECT_EQ(default_profile_path(), "/somewhere/mine.yaml");
  ::unsetenv("SPATTN_PROFILE");
  // Then a per-user location, never the working directory.
  const std::string file = "spattn/" + MachineInfo::detect().machine_id() + ".yaml";
  const char* xdg = std::getenv("XDG_CONFIG_HOME");
  const char* home = std::getenv("HOME");
  const std::string saved_xdg = xdg ? xdg : "", saved_home = home ? home : "";
  ::setenv("XDG_CONFIG_HOME", "/cfg", 1);
  EXPECT_EQ(default_profile_path(), "/cfg/" + file);
  ::setenv("XDG_CONFIG_HOME", "relative", 1);  // not absolute: ignored, as the XDG spec says
  ::setenv("HOME", "/home/u", 1);
  EXPECT_EQ(default_profile_path(), "/home/u/.config/" + file);
  ::unsetenv("XDG_CONFIG_HOME");
  ::unsetenv("HOME");
  EXPECT_EQ(default_profile_path(), "");
  EXPECT_FALSE(load_default_profile().has_value());
  if (xdg) ::setenv("XDG_CONFIG_HOME", saved_xdg.c_str(), 1);
  if (home) ::setenv("HOME", saved_home.c_str(), 1);
  if (old) ::setenv("SPATTN_PROFILE", saved.c_str(), 1);
  const std::string ts = utc_timestamp_now();
  ASSERT_EQ(ts.size(), 20u) << ts;
  EXPECT_EQ(ts[10], 'T');
  EXPECT_EQ(ts.back(), 'Z');
}

TEST(ProfileReadme, SchemaExampleInTuningReadmeLoads) {
  const fs::path readme = fs::path(__FILE__).parent_path().parent_path() / "tuning" / "README.md";
  std::ifstream in(readme);
  ASSERT_TRUE(in) << readme;
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  const size_t begin = text.find("```yaml\n");
  ASSERT_NE(begin, std::string::npos);
  const size_t end = text.find("```", begin + 8);
  ASSERT_NE(end, std::string::npos);
  const Profile p = Profile::from_yaml_string(text.substr(begin + 8, end - begin - 8), readme.string());
  EXPECT_GE(p.entries.size(), 1u);
  EXPECT_EQ(Profile::from_yaml_string(p.to_yaml(), "again"), p);
}

// ---------------------------------------------------------------------------
// Hostile inputs (the reliability issue): each failed before its fix.

// Item 2/3: kernel fields are range-checked at load, with file and line.
TEST(ProfileHostile, KernelFieldsAreRangeCheckedAtLoadWithLine) {
  TempDir d;
  const std::string path = d.file("p.yaml");
  const struct {
    const char *from, *to, *field;
    int line;
  } cases[] = {
      {"q_tile_rows: 64", "q_tile_rows: 7", "q_tile_rows", 19},
      {"threads: 0", "threads: 1000000", "threads", 20},
      {"head_dim: 64", "head_dim: 65", "head_dim", 11},
      {"head_dim: 64", "head_dim: 512", "head_dim", 11},
  };
  for (const auto& c : cases) {
    write_text(path, replaced(kValid, c.from, c.to));
    const auto msg = error_of([&] { Profile::load(path); });
    ASSERT_TRUE(msg.has_value()) << c.to;
    EXPECT_NE(msg->find(path), std::string::npos) << *msg;
    EXPECT_NE(msg->find("line " + std::to_string(c.line)), std::string::npos) << *msg;
    EXPECT_NE(msg->find(c.field), std::string::npos) << *msg;
  }
}

// Item 13: a FIFO (or a device) as a profile path is refused, not waited on.
TEST(ProfileHostile, NonRegularFilesAreRefusedWithoutBlocking) {
  TempDir d;
  const std::string fifo = d.file("fifo.yaml");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  for (const std::string& p : {fifo, std::string("/dev/zero"), d.path}) {
    const auto msg = error_of([&] { Profile::load(p); });
    ASSERT_TRUE(msg.has_value()) << p;
    EXPECT_NE(msg->find("not a regular file"), std::string::npos) << *msg;
  }
}

// Item 15: a very deep document names what is wrong.
TEST(ProfileHostile, DeepNestingIsNamed) {
  for (const std::string& text : {std::string(100000, '['), std::string("a:\n") + std::string(20000, ' ') + "- x\n"}) {
    const auto msg = error_of([&] { Profile::from_yaml_string(text, "deep.yaml"); });
    ASSERT_TRUE(msg.has_value());
    EXPECT_NE(msg->find("nesting deeper than"), std::string::npos) << *msg;
  }
}

// Item 12: a read-only profile is refused, left as it was; a writable one
// keeps its mode when replaced.
TEST(ProfileHostile, ReadOnlyProfileIsRefusedAndModesAreKept) {
  TempDir d;
  const std::string ro = d.file("ro.yaml"), rw = d.file("rw.yaml");
  make_profile(1).save(ro);
  make_profile(1).save(rw);
  ASSERT_EQ(::chmod(ro.c_str(), 0444), 0);
  ASSERT_EQ(::chmod(rw.c_str(), 0600), 0);
  const auto msg = error_of([&] { merge_into_file(ro, make_entry(4, 4, 999, 64), test_machine()); });
  ASSERT_TRUE(msg.has_value());
  EXPECT_NE(msg->find("read-only"), std::string::npos) << *msg;
  EXPECT_EQ(Profile::load(ro).entries.size(), 1u) << "the refused file is unchanged";
  EXPECT_TRUE(error_of([&] { check_profile_destination(ro, test_machine()); }).has_value());
  merge_into_file(rw, make_entry(4, 4, 999, 64), test_machine());
  struct stat st {};
  ASSERT_EQ(::stat(rw.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(Profile::load(rw).entries.size(), 2u);
}

// Item 17: the destination is checked before a search, not after it.
TEST(ProfileHostile, DestinationIsCheckedUpFront) {
  TempDir d;
  EXPECT_FALSE(error_of([&] { check_profile_destination(d.file("new.yaml"), test_machine()); }).has_value());
  const std::string bad = d.file("bad.yaml");
  write_text(bad, replaced(kValid, "topk_ratio: 0.1", "topk_ratio: 7"));
  EXPECT_TRUE(error_of([&] { check_profile_destination(bad, test_machine()); }).has_value());
  const std::string other = d.file("other.yaml");
  make_profile(1, test_machine("Another CPU")).save(other);
  const auto msg = error_of([&] { check_profile_destination(other, test_machine()); });
  ASSERT_TRUE(msg.has_value());
  EXPECT_NE(msg->find("Another CPU"), std::string::npos) << *msg;
  EXPECT_TRUE(error_of([&] { check_profile_destination(d.path, test_machine()); }).has_value()) << "a folder";
}

// Item 7: an explicitly named SPATTN_PROFILE that cannot be read is an error,
// not "no profile".
TEST(ProfileHostile, UnreadableSpattnProfileIsAnError) {
  TempDir d;
  const std::string loop = d.file("loop.yaml");
  ASSERT_EQ(::symlink(loop.c_str(), loop.c_str()), 0);
  for (const std::string& p : {loop, d.file("missing.yaml"), d.path}) {
    ::setenv("SPATTN_PROFILE", p.c_str(), 1);
    const auto msg = error_of([] { (void)load_default_profile(); });
    ::unsetenv("SPATTN_PROFILE");
    ASSERT_TRUE(msg.has_value()) << p;
    EXPECT_NE(msg->find(p), std::string::npos) << *msg;
  }
}

// Schema 3: per-layer entries (a layer may run dense) and the adaptive
// budget round-trip; a schema-2 file still reads with the old defaults.
TEST(ProfileSchema3, LayersAndMassBudgetRoundTripAndDriveSessions) {
  TempDir d;
  Profile p = make_profile(0);
  ProfileEntry sparse = make_entry(4, 4, 4096, 128, 3);
  sparse.layer = 1;
  sparse.mass_tau = 0.95;
  sparse.max_block_share = 0.5;
  sparse.dense_head_share = 0.6;
  ProfileEntry dense = make_entry(4, 4, 4096, 128, 3, "dense");
  dense.layer = 0;
  p.entries = {sparse, dense};
  const std::string path = d.file("layers.yaml");
  p.save(path);
  const Profile back = Profile::load(path);
  EXPECT_EQ(back, p);
  const AttentionShape s{4, 4, 4096, 4096, 128};
  SessionConfig base;
  base.total_steps = 3;
  const SessionConfig l1 = session_config_for_layer(back, s, 1, base);
  EXPECT_EQ(l1.policy, Policy::sparsed);
  ASSERT_TRUE(l1.mass_budget.has_value());
  EXPECT_DOUBLE_EQ(l1.mass_budget->tau, 0.95);
  EXPECT_DOUBLE_EQ(l1.mass_budget->max_share, 0.5);
  EXPECT_DOUBLE_EQ(l1.mass_budget->dense_head_share, 0.6);
  EXPECT_EQ(session_config_for_layer(back, s, 0, base).policy, Policy::dense);
  // Layer 2 has no entry and no layer-free entry exists: the documented defaults.
  const SessionConfig l2 = session_config_for_layer(back, s, 2, base);
  EXPECT_FALSE(l2.mass_budget.has_value());
  EXPECT_EQ(l2.block_size, Profile::default_entry({}).block_size);
  // A layer-free lookup does not pick a layer's entry.
  EXPECT_EQ(back.lookup({4, 4, 4096, 128, 3}, "sparsed"), nullptr);
  const Profile old = Profile::from_yaml_string(kValid, "v1.yaml");  // kValid is schema 1
  EXPECT_EQ(old.entries[0].layer, -1);
  EXPECT_EQ(old.entries[0].mass_tau, 0.0);
  write_text(path, replaced(kValid, "      threads: 0\n", "      threads: 0\n      mass_tau: 1.5\n"));
  const auto msg = error_of([&] { Profile::load(path); });
  ASSERT_TRUE(msg.has_value());
  EXPECT_NE(msg->find("mass_tau"), std::string::npos) << *msg;
}

namespace spattn::test {
namespace {

// Schema 4: each entry's shape names its dtype; older files read as fp32,
// other spellings of a dtype read as its one name, and an unknown dtype is
// refused naming the line.
TEST(ProfileSchema4, DtypeIsWrittenReadAndChecked) {
  Profile p = make_profile(0);
  ProfileEntry e;
  e.shape = {8, 8, 4096, 128, 64};
  p.entries = {e};
  const std::string yaml = p.to_yaml();
  ASSERT_NE(yaml.find("dtype: fp32"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find(std::string("written_by: spattn ") + SPATTN_VERSION_STRING), std::string::npos) << yaml;
  EXPECT_EQ(Profile::from_yaml_string(yaml, "p.yaml").entries.at(0).shape.dtype, "fp32");
  std::string old = yaml;
  old.erase(old.find("dtype: fp32"), std::string("dtype: fp32").size());
  EXPECT_EQ(Profile::from_yaml_string(old, "old.yaml").entries.at(0).shape.dtype, "fp32");
  std::string bf16 = yaml;
  bf16.replace(bf16.find("dtype: fp32"), std::string("dtype: fp32").size(), "dtype: bfloat16");
  const Profile pb = Profile::from_yaml_string(bf16, "bf16.yaml");
  EXPECT_EQ(pb.entries.at(0).shape.dtype, "bf16");
  TunedShape want = e.shape;
  EXPECT_EQ(pb.lookup(want, "sparsed"), nullptr) << "an fp32 request must not take a bf16 entry";
  want.dtype = "bf16";
  EXPECT_NE(pb.lookup(want, "sparsed"), nullptr);
  std::string int8 = yaml;
  int8.replace(int8.find("dtype: fp32"), std::string("dtype: fp32").size(), "dtype: int8");
  try {
    Profile::from_yaml_string(int8, "int8.yaml");
    ADD_FAILURE() << "int8 entry accepted";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("dtype"), std::string::npos) << err.what();
    EXPECT_NE(std::string(err.what()).find("line"), std::string::npos) << err.what();
  }
}

}  // namespace
}  // namespace spattn::test
