// Workloads: the synthetic diffusion-attention generator (determinism, the
// attention structure it must show, drift and unmasking), the .npy reader and
// writer, the trace-folder reader, and the accuracy metrics.
#include <gtest/gtest.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include "spattn/lab/workload.hpp"
#include "test_util.hpp"

namespace spattn::test {
namespace {

namespace fs = std::filesystem;
using Role = SyntheticWorkload::HeadRole;

// ---------------------------------------------------------------------------
// Synthetic workload

SyntheticConfig small_config() {
  SyntheticConfig c;
  c.heads = 8;
  c.kv_heads = 8;
  c.seq_len = 1024;
  c.head_dim = 64;
  c.steps = 32;
  c.seed = 1;
  return c;
}

struct StepData {
  AttentionShape shape;
  std::vector<float> q, k, v;
  ConstTensorView qv() const {
    return ConstTensorView::heads_major(q.data(), shape.heads, shape.q_len, shape.head_dim);
  }
  ConstTensorView kv() const {
    return ConstTensorView::heads_major(k.data(), shape.kv_heads, shape.kv_len, shape.head_dim);
  }
  ConstTensorView vv() const {
    return ConstTensorView::heads_major(v.data(), shape.kv_heads, shape.kv_len, shape.head_dim);
  }
};

StepData generate(const SyntheticWorkload& w, int64_t s) {
  StepData d;
  d.shape = w.shape();
  w.step(s, d.q, d.k, d.v);
  return d;
}

// Exact softmax row (double) of query i in head h, and its logits.
std::vector<double> softmax_row(const StepData& d, int64_t h, int64_t i,
                                std::vector<double>* logits = nullptr) {
  const AttentionShape& s = d.shape;
  const int64_t kvh = h / s.group_size();
  std::vector<double> p(static_cast<size_t>(s.kv_len));
  const float* q = d.q.data() + (h * s.q_len + i) * s.head_dim;
  double mx = -INFINITY;
  for (int64_t j = 0; j < s.kv_len; ++j) {
    const float* k = d.k.data() + (kvh * s.kv_len + j) * s.head_dim;
    double dot = 0;
    for (int64_t c = 0; c < s.head_dim; ++c) dot += double(q[c]) * k[c];
    p[j] = dot / std::sqrt(double(s.head_dim));
    mx = std::max(mx, p[j]);
  }
  if (logits) *logits = p;
  double sum = 0;
  for (double& x : p) sum += (x = std::exp(x - mx));
  for (double& x : p) x /= sum;
  return p;
}

// Query rows sampled evenly over the sequence.
std::vector<int64_t> sample_rows(int64_t n, int64_t count) {
  std::vector<int64_t> rows;
  for (int64_t r = 0; r < count; ++r) rows.push_back((2 * r + 1) * n / (2 * count));
  return rows;
}

double rel_change(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += double(a[i] - b[i]) * (a[i] - b[i]);
    den += double(a[i]) * a[i];
  }
  return std::sqrt(num / den);
}

TEST(WorkloadSynthetic, ShapeSizesAndFiniteValues) {
  SyntheticConfig c = small_config();
  c.heads = 4;
  c.kv_heads = 2;  // GQA
  c.seq_len = 256;
  SyntheticWorkload w(c);
  const AttentionShape s = w.shape();
  EXPECT_EQ(s.heads, 4);
  EXPECT_EQ(s.kv_heads, 2);
  EXPECT_EQ(s.q_len, 256);
  EXPECT_EQ(s.kv_len, 256);
  EXPECT_EQ(s.head_dim, 64);
  EXPECT_NO_THROW(s.validate());
  StepData d = generate(w, 0);
  EXPECT_EQ(d.q.size(), size_t(4 * 256 * 64));
  EXPECT_EQ(d.k.size(), size_t(2 * 256 * 64));
  EXPECT_EQ(d.v.size(), size_t(2 * 256 * 64));
  for (const auto* t : {&d.q, &d.k, &d.v})
    EXPECT_TRUE(std::all_of(t->begin(), t->end(), [](float x) { return std::isfinite(x); }));
  // The kernels accept it and give finite output.
  Tensor out(4, 256, 64);
  dense_attention(s, d.qv(), d.kv(), d.vv(), out.view);
  EXPECT_TRUE(
      std::all_of(out.data.begin(), out.data.end(), [](float x) { return std::isfinite(x); }));
}

TEST(WorkloadSynthetic, PrefillConfigIsCausalWithBackwardSlashLines) {
  const SyntheticWorkload w(prefill_synthetic_config(4, 2048));
  EXPECT_TRUE(w.shape().causal);
  EXPECT_EQ(w.shape().query_position0(), 0);
  for (int64_t h = 0; h < 4; ++h)
    for (int64_t off : w.slash_offsets(h)) EXPECT_GT(off, 0) << "head " << h;  // query i attends i - off
  for (int64_t t = 0; t < 2048; t += 97) EXPECT_FALSE(w.is_masked(t, 0));    // all prompt
  expect_error([] { prefill_synthetic_config(0, 64); }, {"heads"});
}

TEST(WorkloadSynthetic, TinyShapesWork) {
  // Fewer tokens than sinks + stripes, smallest head_dim, one step.
  SyntheticConfig c;
  c.heads = 2;
  c.kv_heads = 1;
  c.seq_len = 6;
  c.head_dim = 16;
  c.steps = 1;
  SyntheticWorkload w(c);
  EXPECT_EQ(w.stripe_positions().size(), 2u);  // 6 tokens - 4 sinks
  std::vector<float> q, k, v;
  w.step(0, q, k, v);
  EXPECT_EQ(q.size(), 2u * 6 * 16);
  EXPECT_TRUE(std::all_of(q.begin(), q.end(), [](float x) { return std::isfinite(x); }));
  EXPECT_TRUE(std::all_of(k.begin(), k.end(), [](float x) { return std::isfinite(x); }));
  c.seq_len = 1;
  SyntheticWorkload one(c);
  EXPECT_TRUE(one.stripe_positions().empty());
  EXPECT_TRUE(one.slash_offsets(0).empty());
  one.step(0, q, k, v);
  EXPECT_EQ(k.size(), 16u);
}

TEST(WorkloadSynthetic, RejectsBadConfigAndSteps) {
  auto bad = [](auto edit) {
    SyntheticConfig c = small_config();
    edit(c);
    EXPECT_THROW(SyntheticWorkload{c}, Error);
  };
  bad([](SyntheticConfig& c) { c.kv_heads = 3; });
  bad([](SyntheticConfig& c) { c.head_dim = 15; });
  bad([](SyntheticConfig& c) { c.head_dim = 8; });
  bad([](SyntheticConfig& c) { c.seq_len = 0; });
  bad([](SyntheticConfig& c) { c.steps = 0; });
  bad([](SyntheticConfig& c) { c.drift = 1.5; });
  bad([](SyntheticConfig& c) { c.unmask_per_step = 0; });
  bad([](SyntheticConfig& c) { c.diffuse_heads = 9; });
  bad([](SyntheticConfig& c) { c.band_logit = NAN; });
  bad([](SyntheticConfig& c) { c.stripes = -1; });
  bad([](SyntheticConfig& c) { c.sink_tokens = -1; });
  SyntheticWorkload w(small_config());
  std::vector<float> q, k, v;
  EXPECT_THROW(w.step(-1, q, k, v), Error);
  EXPECT_THROW(w.step(32, q, k, v), Error);
  try {
    w.step(32, q, k, v);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("steps = 32"), std::string::npos) << e.what();
  }
  EXPECT_THROW(w.head_role(8), Error);
}

TEST(WorkloadSynthetic, DeterministicPerSeedAndStepAndIndependentOfHistory) {
  const SyntheticConfig c = small_config();
  SyntheticWorkload a(c), b(c);
  // a generates earlier steps first, b jumps straight to step 7.
  for (int64_t s : {0, 6}) generate(a, s);
  const StepData a7 = generate(a, 7), b7 = generate(b, 7);
  EXPECT_EQ(a7.q, b7.q);
  EXPECT_EQ(a7.k, b7.k);
  EXPECT_EQ(a7.v, b7.v);
  // Another step and another seed give other data.
  const StepData a8 = generate(a, 8);
  EXPECT_NE(a7.q, a8.q);
  EXPECT_NE(a7.v, a8.v);
  SyntheticConfig c2 = c;
  c2.seed = 2;
  const StepData o7 = generate(SyntheticWorkload(c2), 7);
  EXPECT_GT(rel_change(a7.k, o7.k), 0.5);
}

TEST(WorkloadSynthetic, ResultDoesNotDependOnThreadCount) {
  SyntheticWorkload w(small_config());
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const StepData one = generate(w, 5);
  omp_set_num_threads(3);
  const StepData three = generate(w, 5);
  omp_set_num_threads(saved);
  EXPECT_EQ(one.q, three.q);
  EXPECT_EQ(one.k, three.k);
  EXPECT_EQ(one.v, three.v);
}

TEST(WorkloadSynthetic, HeadMixHasEveryRoleAndOneDiffuseHead) {
  SyntheticWorkload w(small_config());
  std::vector<int> count(5, 0);
  for (int64_t h = 0; h < 8; ++h) ++count[static_cast<int>(w.head_role(h))];
  EXPECT_EQ(count[static_cast<int>(Role::diffuse)], 1);
  for (Role r : {Role::band, Role::sink, Role::stripe, Role::slash})
    EXPECT_GE(count[static_cast<int>(r)], 1) << static_cast<int>(r);
  EXPECT_EQ(w.stripe_positions().size(), 4u);
  for (int64_t p : w.stripe_positions()) {
    EXPECT_GE(p, 4);
    EXPECT_LT(p, 1024);
  }
}

// Mass that sampled rows put on the sinks, the stripes, the band, and per token elsewhere.
struct HeadMass {
  double sinks = 0, stripes = 0, band = 0, per_token_rest = 0;
  double slash = 0;            // mass on the keys at i - offset, summed over the head's lines
  double slash_logit_gap = 0;  // their logit minus that of keys 2-3 tokens aside
  double max_minus_mean_logit = 0, entropy = 0;
};

HeadMass head_mass(const SyntheticWorkload& w, const StepData& d, int64_t h) {
  const int64_t n = d.shape.kv_len;
  const std::vector<int64_t> stripes = w.stripe_positions();
  const std::vector<int64_t> offsets = w.slash_offsets(h);
  const std::vector<int64_t> rows = sample_rows(n, 48);
  HeadMass m;
  int64_t slash_n = 0, gap_n = 0;
  for (int64_t i : rows) {
    std::vector<double> logits;
    const std::vector<double> p = softmax_row(d, h, i, &logits);
    std::vector<char> special(static_cast<size_t>(n), 0);
    for (int64_t j = 0; j < 4; ++j) m.sinks += p[j], special[j] = 1;
    for (int64_t j : stripes) m.stripes += p[j], special[j] = 1;
    for (int64_t j = std::max<int64_t>(0, i - 64); j <= std::min(n - 1, i + 64); ++j)
      m.band += p[j], special[j] = 1;
    double rest = 0;
    int64_t rest_n = 0;
    for (int64_t j = 0; j < n; ++j)
      if (!special[j]) rest += p[j], ++rest_n;
    m.per_token_rest += rest / static_cast<double>(rest_n);
    for (int64_t off : offsets) {
      const int64_t j = i - off;
      if (j < 3 || j >= n - 3) continue;
      m.slash += p[j];
      ++slash_n;
      // Logit gap to the neighbours (sinks and stripes left out).
      double nb = 0;
      int nb_n = 0;
      for (int64_t x : {j - 3, j - 2, j + 2, j + 3})
        if (x >= 4 && std::find(stripes.begin(), stripes.end(), x) == stripes.end())
          nb += logits[x], ++nb_n;
      if (nb_n > 0) m.slash_logit_gap += logits[j] - nb / nb_n, ++gap_n;
    }
    const double mean = std::accumulate(logits.begin(), logits.end(), 0.0) / static_cast<double>(n);
    m.max_minus_mean_logit += *std::max_element(logits.begin(), logits.end()) - mean;
    for (double x : p)
      if (x > 0) m.entropy -= x * std::log(x);
  }
  const double r = static_cast<double>(rows.size());
  for (double* x :
       {&m.sinks, &m.stripes, &m.band, &m.per_token_rest, &m.max_minus_mean_logit, &m.entropy})
    *x /= r;
  m.slash /=
      std::max<double>(1, static_cast<double>(slash_n)) / static_cast<double>(offsets.size());
  m.slash_logit_gap /= std::max<double>(1, static_cast<double>(gap_n));
  return m;
}

TEST(WorkloadSynthetic, SinksStripesBandAndSlashLinesCarryMass) {
  SyntheticWorkload w(small_config());
  const StepData d = generate(w, 10);
  std::vector<HeadMass> mass;
  for (int64_t h = 0; h < 8; ++h) mass.push_back(head_mass(w, d, h));
  auto top_head = [&](double HeadMass::*field) {
    return std::max_element(
               mass.begin(), mass.end(),
               [&](const HeadMass& a, const HeadMass& b) { return a.*field < b.*field; }) -
           mass.begin();
  };
  for (int64_t h = 0; h < 8; ++h) {
    const HeadMass& m = mass[h];
    const Role role = w.head_role(h);
    SCOPED_TRACE("head " + std::to_string(h) + " role " + std::to_string(static_cast<int>(role)));
    // Every head: each sink and stripe token gets far more than an ordinary token.
    EXPECT_GT(m.sinks / 4, 30 * m.per_token_rest);
    EXPECT_GT(m.stripes / 4, 30 * m.per_token_rest);
    // Logits of realistic magnitude.
    EXPECT_GT(m.max_minus_mean_logit, 5.0);
    EXPECT_LT(m.max_minus_mean_logit, 25.0);
    if (role == Role::diffuse) continue;
    // The band (|i - j| <= 64, 13% of the keys) holds a large share.
    EXPECT_GT(m.band, 0.3);
    // Slash lines: the key at i - offset stands out of its neighbourhood.
    EXPECT_GT(m.slash_logit_gap, 1.5);
    // The dominant term shows.
    if (role == Role::band) {
      EXPECT_GT(m.band, 0.9);
    }
    if (role == Role::sink) {
      EXPECT_GT(m.sinks, 0.09);
    }
    if (role == Role::stripe) {
      EXPECT_GT(m.stripes, 0.3);
    }
    if (role == Role::slash) {
      EXPECT_GT(m.slash, 0.2);
      EXPECT_GT(m.slash_logit_gap, 5.0);
    }
  }
  EXPECT_EQ(w.head_role(top_head(&HeadMass::sinks)), Role::sink);
  EXPECT_EQ(w.head_role(top_head(&HeadMass::stripes)), Role::stripe);
  EXPECT_EQ(w.head_role(top_head(&HeadMass::slash)), Role::slash);
  EXPECT_EQ(w.head_role(top_head(&HeadMass::entropy)), Role::diffuse);
}

// Exact block mass of a step (16x16 blocks).
BlockMass block_mass(const StepData& d) {
  return block_attention_mass(d.shape, d.qv(), d.kv(), 16, 16);
}

// small_config at 512 tokens: block-mass tests stay fast in debug builds.
SyntheticConfig block_config() {
  SyntheticConfig c = small_config();
  c.seq_len = 512;
  return c;
}

// Oracle top-k recall of every head at ratio r.
std::vector<double> topk_recall(const BlockMass& mass, double r) {
  const BlockMask mask = sparsed_select(mass, r);
  std::vector<double> out;
  for (int64_t h = 0; h < mass.heads; ++h) {
    double kept = 0;
    for (int64_t qb = 0; qb < mass.q_blocks(); ++qb)
      for (int32_t kb : mask.row(h, qb)) kept += mass.row(h, qb)[kb];
    out.push_back(kept / static_cast<double>(mass.q_blocks()));
  }
  return out;
}

TEST(WorkloadSynthetic, HeadsDifferAndTheDiffuseHeadIsDiffuse) {
  SyntheticWorkload w(block_config());
  const StepData d = generate(w, 10);
  const BlockMass mass = block_mass(d);
  const std::vector<double> recall5 = topk_recall(mass, 0.05), recall10 = topk_recall(mass, 0.1);
  int64_t diffuse = -1;
  std::vector<double> entropy;
  for (int64_t h = 0; h < 8; ++h) {
    if (w.is_diffuse_head(h)) diffuse = h;
    entropy.push_back(head_mass(w, d, h).entropy);
  }
  ASSERT_GE(diffuse, 0);
  for (int64_t h = 0; h < 8; ++h) {
    if (h == diffuse) continue;
    EXPECT_LT(recall5[diffuse] + 0.08, recall5[h]) << "head " << h;
    EXPECT_LT(recall10[diffuse], recall10[h]) << "head " << h;
    EXPECT_GT(entropy[diffuse], entropy[h] + 0.5) << "head " << h;
  }
  // The sharp heads are sharp, and not all alike.
  std::vector<double> sorted = recall10;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_GT(sorted[4], 0.9);  // median of the 8 heads at 10% of the blocks
  EXPECT_GT(sorted[7] - sorted[1], 0.02);
  // Without diffuse heads that head is as sharp as the others.
  SyntheticConfig c = block_config();
  c.diffuse_heads = 0;
  const std::vector<double> none =
      topk_recall(block_mass(generate(SyntheticWorkload(c), 10)), 0.05);
  EXPECT_GT(none[diffuse], recall5[diffuse] + 0.08);
  EXPECT_GT(*std::min_element(none.begin(), none.end()), recall5[diffuse] + 0.08);
}

TEST(WorkloadSynthetic, DriftIsSmallButNonZeroAndPatternsPersist) {
  SyntheticWorkload w(block_config());
  const StepData s8 = generate(w, 8), s9 = generate(w, 9), s16 = generate(w, 16),
                 s30 = generate(w, 30);
  // Prompt keys (never masked) drift: a little per step, more over many.
  auto prompt_k = [](const StepData& d) {
    std::vector<float> out;
    for (int64_t h = 0; h < d.shape.kv_heads; ++h)
      out.insert(out.end(), d.k.begin() + h * 512 * 64, d.k.begin() + (h * 512 + 256) * 64);
    return out;
  };
  const double step1 = rel_change(prompt_k(s8), prompt_k(s9));
  const double step22 = rel_change(prompt_k(s8), prompt_k(s30));
  EXPECT_GT(step1, 1e-3);
  EXPECT_LT(step1, 0.1);
  EXPECT_GT(step22, 2 * step1);
  // The top-10% block pattern of s and s + 8 overlaps heavily.
  const BlockMask ma = sparsed_select(block_mass(s8), 0.1),
                  mb = sparsed_select(block_mass(s16), 0.1);
  double overlap = 0;
  for (int64_t r = 0; r < ma.rows(); ++r) {
    const auto ra = ma.row(r / ma.q_blocks(), r % ma.q_blocks()),
               rb = mb.row(r / mb.q_blocks(), r % mb.q_blocks());
    std::vector<int32_t> both;
    std::set_intersection(ra.begin(), ra.end(), rb.begin(), rb.end(), std::back_inserter(both));
    overlap += static_cast<double>(both.size()) / static_cast<double>(ra.size());
  }
  overlap /= static_cast<double>(ma.rows());
  EXPECT_GT(overlap, 0.8);
  EXPECT_LT(overlap, 1.0);  // but not frozen
  // With drift 0, prompt keys do not move at all.
  SyntheticConfig c = block_config();
  c.drift = 0;
  SyntheticWorkload still(c);
  EXPECT_EQ(prompt_k(generate(still, 3)), prompt_k(generate(still, 20)));
}

TEST(WorkloadSynthetic, UnmaskingChangesTheEmbeddingsOfUnmaskedTokens) {
  SyntheticConfig c = small_config();
  c.drift = 0;  // isolate unmasking
  c.unmask_per_step = 1.0 / 32;
  SyntheticWorkload w(c);
  auto masked_count = [&](int64_t s) {
    int64_t n = 0;
    for (int64_t t = 0; t < 1024; ++t) n += w.is_masked(t, s);
    return n;
  };
  EXPECT_EQ(masked_count(0), 512);  // the whole non-prompt half
  for (int64_t t = 0; t < 512; ++t) ASSERT_FALSE(w.is_masked(t, 0));
  for (int64_t s = 1; s < 32; ++s) EXPECT_LE(masked_count(s), masked_count(s - 1));
  EXPECT_LT(masked_count(16), 512 * 0.65);
  EXPECT_GT(masked_count(16), 512 * 0.35);
  EXPECT_LT(masked_count(31), 512 * 0.1);
  // Between steps 10 and 11: tokens that unmask change their v rows; no others do.
  const StepData a = generate(w, 10), b = generate(w, 11);  // (1024 tokens)
  int changed = 0, unmasked = 0;
  for (int64_t t = 0; t < 1024; ++t) {
    const bool unmasks = w.is_masked(t, 10) && !w.is_masked(t, 11);
    unmasked += unmasks;
    const bool differs =
        !std::equal(a.v.begin() + t * 64, a.v.begin() + (t + 1) * 64, b.v.begin() + t * 64);
    changed += differs;
    EXPECT_EQ(differs, unmasks) << "token " << t;
  }
  EXPECT_GT(unmasked, 0);
  EXPECT_EQ(changed, unmasked);
}

// ---------------------------------------------------------------------------
// .npy files

class NpyFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("spattn_npy_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // A .npy file from its parts: version, header dict text, raw data bytes.
  std::string write_raw(const std::string& name, int major, const std::string& dict,
                        const std::string& data, const char* magic = "\x93NUMPY") const {
    std::string header = dict;
    const size_t pre = major == 1 ? 10 : 12;
    while ((pre + header.size() + 1) % 64 != 0) header.push_back(' ');
    header.push_back('\n');
    std::string bytes(magic, 6);
    bytes.push_back(static_cast<char>(major));
    bytes.push_back(0);
    const size_t len = header.size();
    for (size_t b = 0; b < (major == 1 ? 2u : 4u); ++b)
      bytes.push_back(static_cast<char>((len >> (8 * b)) & 0xff));
    bytes += header + data;
    std::ofstream(path(name), std::ios::binary)
        .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return path(name);
  }
  static std::string f32_bytes(const std::vector<float>& v) {
    std::string s(v.size() * 4, '\0');
    std::memcpy(s.data(), v.data(), s.size());
    return s;
  }
  static std::string error_of(const std::string& p) {
    try {
      load_npy(p);
    } catch (const Error& e) {
      return e.what();
    }
    return "(no error)";
  }

  fs::path dir_;
};

TEST_F(NpyFiles, Float32RoundTripThroughSave) {
  std::vector<float> data(2 * 3 * 5);
  for (size_t i = 0; i < data.size(); ++i) data[i] = 0.25f * static_cast<float>(i) - 3.0f;
  data[7] = -0.0f;
  data[8] = 1e-40f;  // subnormal
  save_npy(path("a.npy"), {2, 3, 5}, data.data());
  const NpyArray a = load_npy(path("a.npy"));
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3, 5}));
  ASSERT_EQ(a.data.size(), data.size());
  for (size_t i = 0; i < data.size(); ++i) EXPECT_EQ(std::memcmp(&a.data[i], &data[i], 4), 0) << i;
  // The data starts 64-byte aligned, with a NumPy-style header.
  EXPECT_EQ(fs::file_size(path("a.npy")), 128u + data.size() * 4);
  std::ifstream f(path("a.npy"), std::ios::binary);
  std::string head(128, '\0');
  f.read(head.data(), 128);
  EXPECT_NE(head.find("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 5), }"),
            std::string::npos);
  EXPECT_EQ(head[127], '\n');
  // One-dimensional and scalar shapes.
  const float x[3] = {1.5f, -2.0f, 4.0f};
  save_npy(path("b.npy"), {3}, x);
  EXPECT_EQ(load_npy(path("b.npy")).shape, (std::vector<int64_t>{3}));
  EXPECT_EQ(load_npy(path("b.npy")).data, (std::vector<float>{1.5f, -2.0f, 4.0f}));
  save_npy(path("c.npy"), {}, x);
  EXPECT_TRUE(load_npy(path("c.npy")).shape.empty());
  EXPECT_EQ(load_npy(path("c.npy")).data, (std::vector<float>{1.5f}));
  EXPECT_THROW(save_npy((dir_ / "no" / "such" / "dir.npy").string(), {3}, x), Error);
}

TEST_F(NpyFiles, Float16ConvertsExactlyIncludingSubnormalsInfAndNan) {
  const std::vector<uint16_t> half = {0x0000, 0x8000, 0x3c00, 0xc000, 0x7bff, 0x0001,
                                      0x03ff, 0x0400, 0x7c00, 0xfc00, 0x7e00, 0x3555};
  std::string data(half.size() * 2, '\0');
  for (size_t i = 0; i < half.size(); ++i) {
    data[2 * i] = static_cast<char>(half[i] & 0xff);
    data[2 * i + 1] = static_cast<char>(half[i] >> 8);
  }
  const std::string p =
      write_raw("h.npy", 1, "{'descr': '<f2', 'fortran_order': False, 'shape': (3, 4), }", data);
  const NpyArray a = load_npy(p);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{3, 4}));
  ASSERT_EQ(a.data.size(), 12u);
  EXPECT_EQ(a.data[0], 0.0f);
  EXPECT_FALSE(std::signbit(a.data[0]));
  EXPECT_EQ(a.data[1], 0.0f);
  EXPECT_TRUE(std::signbit(a.data[1]));
  EXPECT_EQ(a.data[2], 1.0f);
  EXPECT_EQ(a.data[3], -2.0f);
  EXPECT_EQ(a.data[4], 65504.0f);                  // largest half
  EXPECT_EQ(a.data[5], std::ldexp(1.0f, -24));     // smallest subnormal
  EXPECT_EQ(a.data[6], std::ldexp(1023.0f, -24));  // largest subnormal
  EXPECT_EQ(a.data[7], std::ldexp(1.0f, -14));     // smallest normal
  EXPECT_EQ(a.data[8], INFINITY);
  EXPECT_EQ(a.data[9], -INFINITY);
  EXPECT_TRUE(std::isnan(a.data[10]));
  EXPECT_EQ(a.data[11], 0.333251953125f);  // 0x3555 = 1365/4096
}

TEST_F(NpyFiles, Bfloat16AsNumpyWritesItThroughMlDtypes) {
  // np.save of an ml_dtypes.bfloat16 array records '<V2'; the header
  // workaround records 'bfloat16'. Both read as bfloat16, exactly.
  const std::vector<uint16_t> bf = {0x0000, 0x8000, 0x3f80, 0xc000, 0x7f7f, 0x0001, 0x7f80, 0xff80, 0x7fc0, 0x3eab};
  std::string data(bf.size() * 2, '\0');
  for (size_t i = 0; i < bf.size(); ++i) {
    data[2 * i] = static_cast<char>(bf[i] & 0xff);
    data[2 * i + 1] = static_cast<char>(bf[i] >> 8);
  }
  for (const char* descr : {"<V2", "|V2", "bfloat16"}) {
    SCOPED_TRACE(descr);
    const std::string p = write_raw("bf.npy", 1,
                                    std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (10,), }", data);
    const NpyArray a = load_npy(p);
    ASSERT_EQ(a.data.size(), 10u);
    EXPECT_EQ(a.data[0], 0.0f);
    EXPECT_TRUE(std::signbit(a.data[1]));
    EXPECT_EQ(a.data[2], 1.0f);
    EXPECT_EQ(a.data[3], -2.0f);
    EXPECT_EQ(a.data[4], std::ldexp(255.0f, 120));  // largest bf16: 0x7f7f = (1 + 127/128) * 2^127
    EXPECT_EQ(a.data[5], std::ldexp(1.0f, -133));   // smallest subnormal
    EXPECT_EQ(a.data[6], INFINITY);
    EXPECT_EQ(a.data[7], -INFINITY);
    EXPECT_TRUE(std::isnan(a.data[8]));
    EXPECT_EQ(a.data[9], 0.333984375f);  // 0x3eab = (1 + 43/128) / 4
  }
  // Other void widths stay errors, naming what is supported.
  const std::string v4 = write_raw("v4.npy", 1, "{'descr': '|V4', 'fortran_order': False, 'shape': (5,), }", data);
  try {
    load_npy(v4);
    ADD_FAILURE() << "a 4-byte void array was read";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bfloat16"), std::string::npos) << e.what();
  }
}

TEST_F(NpyFiles, ReadsVersions2And3) {
  const std::vector<float> v = {1, 2, 3, 4, 5, 6};
  for (int major : {2, 3}) {
    std::string name = "v";  // (GCC 12 warns falsely on "v" + std::string)
    name += std::to_string(major);
    name += ".npy";
    const std::string p =
        write_raw(name, major, "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2,3)}",
                  f32_bytes(v));
    const NpyArray a = load_npy(p);
    EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3})) << major;
    EXPECT_EQ(a.data, v) << major;
  }
}

TEST_F(NpyFiles, BrokenFilesGiveClearErrors) {
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  const std::vector<float> six = {1, 2, 3, 4, 5, 6};
  auto expect_error = [&](const std::string& p, std::vector<std::string> parts) {
    const std::string msg = error_of(p);
    EXPECT_NE(msg.find(p), std::string::npos) << msg;  // names the file
    for (const std::string& part : parts)
      EXPECT_NE(msg.find(part), std::string::npos) << "want '" << part << "' in: " << msg;
  };
  expect_error(path("missing.npy"), {"cannot open"});
  expect_error(write_raw("magic.npy", 1, dict, f32_bytes(six), "\x93NUMPX"), {"bad magic"});
  expect_error(write_raw("f8.npy", 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }",
                         std::string(48, '\0')),
               {"unsupported dtype", "'<f8'"});
  expect_error(write_raw("be.npy", 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }",
                         f32_bytes(six)),
               {"unsupported dtype", "'>f4'"});
  expect_error(
      write_raw("fortran.npy", 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }",
                f32_bytes(six)),
      {"fortran_order"});
  expect_error(write_raw("short.npy", 1, dict, f32_bytes(six).substr(0, 20)),
               {"truncated", "24 bytes", "found 20"});
  expect_error(write_raw("noshape.npy", 1, "{'descr': '<f4', 'fortran_order': False, }", ""),
               {"malformed header", "shape"});
  expect_error(
      write_raw("garbage.npy", 1, "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2, 3), }",
                f32_bytes(six)),
      {"malformed header"});
  expect_error(
      write_raw("badshape.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, x), }",
                f32_bytes(six)),
      {"malformed header"});
  expect_error(write_raw("v9.npy", 9, dict, f32_bytes(six)), {"unsupported format version 9.0"});
  // A header length that runs past the end of the file.
  {
    std::string bytes = "\x93NUMPY\x01";
    bytes += std::string("\0\xff\x00", 3);
    std::ofstream(path("len.npy"), std::ios::binary)
        .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    expect_error(path("len.npy"), {"malformed header"});
  }
  // Empty file.
  std::ofstream(path("empty.npy")).close();
  expect_error(path("empty.npy"), {"bad magic"});
}

// A trace folder: step folders with q/k/v, flat or in layer subfolders.
class NpyStepFolders : public NpyFiles {
 protected:
  void write_qkv(const fs::path& folder, int64_t heads, int64_t kv_heads, int64_t tokens, int64_t d,
                 float base) {
    fs::create_directories(folder);
    auto fill = [&](int64_t h, float off) {
      std::vector<float> x(static_cast<size_t>(h * tokens * d));
      for (size_t i = 0; i < x.size(); ++i) x[i] = base + off + 0.001f * static_cast<float>(i);
      return x;
    };
    save_npy((folder / "q.npy").string(), {heads, tokens, d}, fill(heads, 0).data());
    save_npy((folder / "k.npy").string(), {kv_heads, tokens, d}, fill(kv_heads, 100).data());
    save_npy((folder / "v.npy").string(), {kv_heads, tokens, d}, fill(kv_heads, 200).data());
  }
};

TEST_F(NpyStepFolders, ListsStepsNaturallyAndLoadsFlatOrLayered) {
  write_qkv(dir_ / "flat" / "step10", 4, 2, 8, 16, 1);
  write_qkv(dir_ / "flat" / "step2", 4, 2, 8, 16, 2);
  fs::create_directories(dir_ / "flat" / "step3_empty");
  std::ofstream((dir_ / "flat" / "notes.txt").string()) << "x";
  const std::vector<std::string> flat = list_npy_steps((dir_ / "flat").string());
  ASSERT_EQ(flat.size(), 2u);
  EXPECT_EQ(fs::path(flat[0]).filename(), "step2");
  EXPECT_EQ(fs::path(flat[1]).filename(), "step10");
  const NpyStep s2 = load_npy_step(flat[0]);
  EXPECT_EQ(s2.shape.heads, 4);
  EXPECT_EQ(s2.shape.kv_heads, 2);
  EXPECT_EQ(s2.shape.q_len, 8);
  EXPECT_EQ(s2.shape.kv_len, 8);
  EXPECT_EQ(s2.shape.head_dim, 16);
  EXPECT_EQ(s2.q.size(), size_t(4 * 8 * 16));
  EXPECT_EQ(s2.k.size(), size_t(2 * 8 * 16));
  EXPECT_FLOAT_EQ(s2.q[0], 2.0f);
  EXPECT_FLOAT_EQ(s2.k[0], 102.0f);
  EXPECT_FLOAT_EQ(s2.v[1], 202.001f);
  EXPECT_THROW(load_npy_step(flat[0], 1), Error);  // no layer folders there

  write_qkv(dir_ / "layered" / "step0000" / "layer3", 2, 2, 4, 16, 30);
  write_qkv(dir_ / "layered" / "step0000" / "layer1", 2, 2, 4, 16, 10);
  write_qkv(dir_ / "layered" / "step0012" / "layer1", 2, 2, 4, 16, 11);
  const std::vector<std::string> layered = list_npy_steps((dir_ / "layered").string());
  ASSERT_EQ(layered.size(), 2u);
  EXPECT_EQ(fs::path(layered[1]).filename(), "step0012");
  EXPECT_FLOAT_EQ(load_npy_step(layered[0]).q[0], 10.0f);  // first layer folder
  EXPECT_FLOAT_EQ(load_npy_step(layered[0], 3).q[0], 30.0f);
  try {
    load_npy_step(layered[0], 5);
    ADD_FAILURE() << "layer 5 does not exist";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer1, layer3"), std::string::npos) << e.what();
  }
  EXPECT_THROW(list_npy_steps((dir_ / "nothing").string()), Error);
  EXPECT_THROW(load_npy_step((dir_ / "flat" / "step3_empty").string()), Error);
}

TEST_F(NpyStepFolders, RejectsWrongRankAndMismatchedShapes) {
  auto message = [](const fs::path& p) {
    try {
      load_npy_step(p.string());
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  const std::vector<float> buf(4096, 0.5f);
  write_qkv(dir_ / "rank", 2, 2, 4, 16, 0);
  save_npy((dir_ / "rank" / "q.npy").string(), {2, 64}, buf.data());
  EXPECT_NE(message(dir_ / "rank").find("rank 3"), std::string::npos) << message(dir_ / "rank");
  write_qkv(dir_ / "kv", 2, 2, 4, 16, 0);
  save_npy((dir_ / "kv" / "v.npy").string(), {2, 5, 16}, buf.data());
  EXPECT_NE(message(dir_ / "kv").find("differ"), std::string::npos) << message(dir_ / "kv");
  write_qkv(dir_ / "dim", 2, 2, 4, 16, 0);
  save_npy((dir_ / "dim" / "q.npy").string(), {2, 4, 32}, buf.data());
  EXPECT_NE(message(dir_ / "dim").find("head_dim"), std::string::npos) << message(dir_ / "dim");
  write_qkv(dir_ / "heads", 3, 2, 4, 16, 0);
  EXPECT_NE(message(dir_ / "heads").find("divide"), std::string::npos) << message(dir_ / "heads");
}

TEST_F(NpyStepFolders, SyntheticStepRoundTripsThroughNpy) {
  SyntheticConfig c = small_config();
  c.seq_len = 256;
  c.heads = 4;
  c.kv_heads = 2;
  SyntheticWorkload w(c);
  const StepData d = generate(w, 3);
  const fs::path folder = dir_ / "trace" / "step0003";
  fs::create_directories(folder);
  save_npy((folder / "q.npy").string(), {4, 256, 64}, d.q.data());
  save_npy((folder / "k.npy").string(), {2, 256, 64}, d.k.data());
  save_npy((folder / "v.npy").string(), {2, 256, 64}, d.v.data());
  const NpyStep s = load_npy_step(list_npy_steps((dir_ / "trace").string()).at(0));
  EXPECT_EQ(s.shape.heads, 4);
  EXPECT_EQ(s.shape.kv_heads, 2);
  EXPECT_EQ(s.q, d.q);
  EXPECT_EQ(s.k, d.k);
  EXPECT_EQ(s.v, d.v);
}

// ---------------------------------------------------------------------------
// Metrics

struct Pair {
  Tensor out;
  std::vector<double> ref;
  Pair(int64_t h, int64_t t, int64_t d, bool tokens_major = false)
      : out(h, t, d, tokens_major), ref(h * t * d) {}
};

Pair random_pair(uint64_t seed, bool tokens_major = false) {
  Pair p(3, 7, 16, tokens_major);
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> n(0, 1);
  for (double& x : p.ref) x = n(rng);
  for (int64_t h = 0; h < 3; ++h)
    for (int64_t t = 0; t < 7; ++t)
      for (int64_t c = 0; c < 16; ++c)
        p.out.view.row(h, t)[c] = static_cast<float>(p.ref[(h * 7 + t) * 16 + c]);
  return p;
}

TEST(MetricsAccuracy, IdenticalScaledAndOrthogonal) {
  Pair p = random_pair(1);
  EXPECT_NEAR(relative_l2_error(p.out, p.ref), 0.0, 1e-7);
  EXPECT_NEAR(cosine_similarity(p.out, p.ref), 1.0, 1e-7);
  EXPECT_NEAR(global_cosine_similarity(p.out, p.ref), 1.0, 1e-7);
  // A scaled copy: same direction, error |s - 1|.
  for (float& x : p.out.data) x *= 2.0f;
  EXPECT_NEAR(relative_l2_error(p.out, p.ref), 1.0, 1e-6);
  EXPECT_NEAR(cosine_similarity(p.out, p.ref), 1.0, 1e-6);
  for (float& x : p.out.data) x *= -0.25f;  // -0.5 x ref
  EXPECT_NEAR(relative_l2_error(p.out, p.ref), 1.5, 1e-6);
  EXPECT_NEAR(cosine_similarity(p.out, p.ref), -1.0, 1e-6);
  // Orthogonal rows: ref rows e0, out rows e1 (3 x |ref|).
  Pair o(2, 3, 4);
  for (int64_t r = 0; r < 6; ++r) {
    o.ref[r * 4 + 0] = 1.0;
    o.out.data[r * 4 + 1] = 3.0f;
  }
  EXPECT_NEAR(cosine_similarity(o.out, o.ref), 0.0, 1e-12);
  EXPECT_NEAR(global_cosine_similarity(o.out, o.ref), 0.0, 1e-12);
  EXPECT_NEAR(relative_l2_error(o.out, o.ref), std::sqrt(10.0), 1e-9);
}

TEST(MetricsAccuracy, RowMeanAndGlobalCosineDiffer) {
  // Row 0 large and exact, row 1 small and opposite.
  Pair p(1, 2, 2);
  p.ref = {10, 0, 1, 0};
  p.out.data = {10, 0, -1, 0};
  EXPECT_NEAR(cosine_similarity(p.out, p.ref), 0.0, 1e-12);  // (1 + -1) / 2
  EXPECT_NEAR(global_cosine_similarity(p.out, p.ref), 99.0 / 101.0, 1e-12);
  EXPECT_NEAR(relative_l2_error(p.out, p.ref), 2.0 / std::sqrt(101.0), 1e-9);
}

TEST(MetricsAccuracy, ZeroRowConventionsAndNan) {
  Pair p(1, 2, 3);
  // Row 0: zero vs zero (1); row 1: zero out vs non-zero ref (0).
  p.ref = {0, 0, 0, 1, 2, 3};
  EXPECT_NEAR(cosine_similarity(p.out, p.ref), 0.5, 1e-12);
  // All-zero reference: relative error falls back to ||out||.
  Pair z(1, 2, 3);
  EXPECT_EQ(relative_l2_error(z.out, z.ref), 0.0);
  EXPECT_EQ(cosine_similarity(z.out, z.ref), 1.0);
  z.out.data[4] = 3.0f;
  z.out.data[5] = 4.0f;
  EXPECT_NEAR(relative_l2_error(z.out, z.ref), 5.0, 1e-12);
  EXPECT_EQ(cosine_similarity(z.out, z.ref), 0.5);
  // NaN output does not pass unnoticed.
  Pair n = random_pair(3);
  n.out.data[5] = NAN;
  EXPECT_TRUE(std::isnan(relative_l2_error(n.out, n.ref)));
  EXPECT_TRUE(std::isnan(cosine_similarity(n.out, n.ref)));
}

TEST(MetricsAccuracy, StridedViewsAndSizeChecks) {
  Pair a = random_pair(5, /*tokens_major=*/false), b = random_pair(5, /*tokens_major=*/true);
  for (float& x : a.out.data) x += 0.01f;
  for (float& x : b.out.data) x += 0.01f;
  EXPECT_GT(relative_l2_error(a.out, a.ref), 1e-3);
  EXPECT_NEAR(relative_l2_error(a.out, a.ref), relative_l2_error(b.out, b.ref), 1e-12);
  EXPECT_NEAR(cosine_similarity(a.out, a.ref), cosine_similarity(b.out, b.ref), 1e-12);
  a.ref.pop_back();
  EXPECT_THROW(relative_l2_error(a.out, a.ref), Error);
  EXPECT_THROW(cosine_similarity(a.out, a.ref), Error);
  EXPECT_THROW(global_cosine_similarity(a.out, a.ref), Error);
}

TEST(MetricsAccuracy, AgainstReferenceAttention) {
  AttentionShape s{2, 2, 100, 100, 32};
  Qkv x(s, 4);
  const std::vector<double> ref = reference(x);
  Tensor out(2, 100, 32);
  dense_attention(s, x.q, x.k, x.v, out.view);
  EXPECT_LT(relative_l2_error(out.view, ref), 1e-5);
  EXPECT_GT(cosine_similarity(out.view, ref), 1 - 1e-9);
  // Dropping half the keys costs accuracy, and the metrics see it.
  const BlockMask half = BlockMask::from_rows(
      2, 100, 100, 32, 32, std::vector<std::vector<int32_t>>(8, std::vector<int32_t>{0, 1}));
  block_sparse_attention(s, x.q, x.k, x.v, half, out.view);
  EXPECT_GT(relative_l2_error(out.view, ref), 0.05);
  EXPECT_LT(cosine_similarity(out.view, ref), 0.999);
}

BlockMass hand_mass() {
  // 2 heads, 2 query blocks, 3 key blocks of 32 (kv_len 70: last block short).
  BlockMass m{2, 64, 70, 32, 32, {}};
  m.mass = {0.5f, 0.3f, 0.2f, 0.1f, 0.1f, 0.8f,   // head 0
            1.0f, 0.0f, 0.0f, 0.2f, 0.4f, 0.4f};  // head 1
  return m;
}

TEST(MetricsMaskRecall, KnownMassAndMask) {
  const BlockMass m = hand_mass();
  const BlockMask mask = BlockMask::from_rows(2, 64, 70, 32, 32, {{0}, {2, 0}, {1}, {}});
  // Rows keep 0.5, 0.9, 0.0, 0.0 -> mean 0.35.
  EXPECT_NEAR(mask_recall(m, mask), 0.35, 1e-7);
  EXPECT_NEAR(mask_recall(m, BlockMask::dense(2, 64, 70, 32, 32)), 1.0, 1e-7);
  // Disagreeing masks are refused.
  EXPECT_THROW(mask_recall(m, BlockMask::dense(1, 64, 70, 32, 32)), Error);
  EXPECT_THROW(mask_recall(m, BlockMask::dense(2, 65, 70, 32, 32)), Error);
  EXPECT_THROW(mask_recall(m, BlockMask::dense(2, 64, 71, 32, 32)), Error);
  EXPECT_THROW(mask_recall(m, BlockMask::dense(2, 64, 70, 16, 32)), Error);
  EXPECT_THROW(mask_recall(m, BlockMask::dense(2, 64, 70, 32, 64)), Error);
  BlockMass short_mass = m;
  short_mass.mass.pop_back();
  EXPECT_THROW(mask_recall(short_mass, mask), Error);
}

TEST(MetricsMaskRecall, GrowsWithTheKeptShareOnASyntheticStep) {
  SyntheticConfig c = small_config();
  c.seq_len = 512;
  c.heads = 4;
  c.kv_heads = 4;
  const StepData d = generate(SyntheticWorkload(c), 2);
  const BlockMass mass = block_attention_mass(d.shape, d.qv(), d.kv(), 32, 32);
  double previous = 0;
  for (double r : {0.05, 0.1, 0.25, 0.5, 1.0}) {
    const double recall = mask_recall(mass, sparsed_select(mass, r));
    EXPECT_GE(recall, previous - 1e-9) << r;
    previous = recall;
  }
  EXPECT_NEAR(previous, 1.0, 1e-5);
  EXPECT_GT(mask_recall(mass, sparsed_select(mass, 0.1)), 0.7);
  EXPECT_LT(mask_recall(mass, sparsed_select(mass, 0.05)), 0.999);
}

}  // namespace
}  // namespace spattn::test
