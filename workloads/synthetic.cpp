// Synthetic diffusion-LM attention workload: Q/K/V built from a rotary
// positional part (band), dedicated sink and stripe directions, per-position
// identity vectors (slash lines) and random content (background), with smooth
// drift across denoising steps and positions that unmask as steps go by.
// Every random number is a hash of (seed, stream, indices), so any step can be
// generated on its own and the result does not depend on the thread count.
#include <algorithm>
#include <array>
#include <cmath>
#include <numbers>
#include <string>
#include <vector>

#include "spattn/error.hpp"
#include "kernels/engine/parallel.hpp"
#include "spattn/attention.hpp"
#include "spattn/lab/workload.hpp"

namespace spattn {
namespace {

constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ull;

uint64_t mix64(uint64_t z) {
  z += kGolden;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Independent random streams.
enum Stream : uint64_t {
  kKeyContent = 1,
  kQueryContent,
  kValue,
  kIdentity,
  kMaskKey,
  kMaskQuery,
  kMaskValue,
  kUnmaskStep,
  kFrequency,
  kStripePos,
  kStripeFactor,
  kStripeDrift,
  kSinkFactor,
  kHeadParam,
  kHeadOrder,
  kSlashOffset,
};

uint64_t hash_key(uint64_t seed, uint64_t stream, uint64_t a, uint64_t b = 0, uint64_t c = 0) {
  uint64_t h = mix64(seed * 0x100000001b3ull ^ mix64(stream));
  h = mix64(h ^ a);
  h = mix64(h ^ (b + 0x632be59bd9b4e019ull));
  return mix64(h ^ (c * 0x2545f4914f6cdd1dull + 1));
}

double uniform01(uint64_t h) { return (static_cast<double>(h >> 11) + 0.5) * 0x1.0p-53; }

// Approximately standard normal values, cheap: Irwin-Hall sum of four 16-bit
// uniforms per 64-bit hash (unit variance, tails bounded at +-3.46).
class Normals {
 public:
  explicit Normals(uint64_t key) : state_(key) {}
  float next() {
    state_ += kGolden;
    const uint64_t z = mix64(state_);
    const double s = static_cast<double>(z & 0xffff) + static_cast<double>((z >> 16) & 0xffff) +
                     static_cast<double>((z >> 32) & 0xffff) + static_cast<double>(z >> 48);
    return static_cast<float>((s - 131070.0) / 37837.23);
  }

 private:
  uint64_t state_;
};

double normal01(uint64_t key) { return Normals(key).next(); }

// Everything about one query head that does not change across steps.
struct HeadParams {
  bool diffuse = false;
  SyntheticWorkload::HeadRole role = SyntheticWorkload::HeadRole::band;
  std::vector<float> band_weight;  // logit weight of each rotary pair (sums to the band peak)
  double sink_logit = 0, stripe_logit = 0, slash_logit = 0, content_std = 0;
  std::vector<int64_t> slash_offsets;  // query i attends key i - offset
};

void check_config(const SyntheticConfig& c) {
  const char* w = "SyntheticConfig";
  auto bad = [&](const char* arg, const std::string& v, const std::string& why) {
    throw_bad_argument(w, arg, v, why);
  };
  auto s = [](double x) { return std::to_string(x); };
  if (c.heads <= 0) bad("heads", s(c.heads), "must be positive");
  if (c.kv_heads <= 0 || c.heads % c.kv_heads != 0)
    bad("kv_heads", std::to_string(c.kv_heads),
        "must be positive and divide heads (" + std::to_string(c.heads) + ")");
  if (c.seq_len <= 0) bad("seq_len", std::to_string(c.seq_len), "must be positive");
  if (c.head_dim < 16 || c.head_dim % 2 != 0)
    bad("head_dim", std::to_string(c.head_dim), "must be even and >= 16");
  if (c.steps <= 0) bad("steps", std::to_string(c.steps), "must be positive");
  if (c.sink_tokens < 0) bad("sink_tokens", std::to_string(c.sink_tokens), "must be >= 0");
  if (c.stripes < 0) bad("stripes", std::to_string(c.stripes), "must be >= 0");
  if (c.slash_lines < 0) bad("slash_lines", std::to_string(c.slash_lines), "must be >= 0");
  if (c.max_slash_offset < 1)
    bad("max_slash_offset", std::to_string(c.max_slash_offset), "must be >= 1");
  if (!(c.band_width > 0)) bad("band_width", s(c.band_width), "must be > 0");
  if (!(c.band_reach >= c.band_width)) bad("band_reach", s(c.band_reach), "must be >= band_width");
  if (!(c.pos_fraction > 0 && c.pos_fraction < 1))
    bad("pos_fraction", s(c.pos_fraction), "must be in (0, 1)");
  for (auto [name, v] : {std::pair<const char*, double>{"band_logit", c.band_logit},
                         {"sink_logit", c.sink_logit},
                         {"stripe_logit", c.stripe_logit},
                         {"slash_logit", c.slash_logit},
                         {"content_logit_std", c.content_logit_std},
                         {"head_variation", c.head_variation},
                         {"dominant_boost", c.dominant_boost},
                         {"diffuse_scale", c.diffuse_scale},
                         {"diffuse_content_scale", c.diffuse_content_scale},
                         {"semi_diffuse_scale", c.semi_diffuse_scale}})
    if (!(v >= 0 && v < 1e3)) bad(name, s(v), "must be finite and >= 0");
  if (c.diffuse_heads < 0 || c.diffuse_heads > c.heads)
    bad("diffuse_heads", std::to_string(c.diffuse_heads), "must be in [0, heads]");
  if (c.semi_diffuse_heads < 0 || c.semi_diffuse_heads > c.heads - c.diffuse_heads)
    bad("semi_diffuse_heads", std::to_string(c.semi_diffuse_heads), "must be in [0, heads - diffuse_heads]");
  if (!(c.diffuse_drift >= 0 && c.diffuse_drift <= 1)) bad("diffuse_drift", s(c.diffuse_drift), "must be in [0, 1]");
  if (!(c.drift >= 0 && c.drift <= 1)) bad("drift", s(c.drift), "must be in [0, 1]");
  if (c.drift_period <= 0) bad("drift_period", std::to_string(c.drift_period), "must be positive");
  if (!(c.prompt_fraction >= 0 && c.prompt_fraction <= 1))
    bad("prompt_fraction", s(c.prompt_fraction), "must be in [0, 1]");
  if (!(c.unmask_per_step > 0 && c.unmask_per_step <= 1))
    bad("unmask_per_step", s(c.unmask_per_step), "must be in (0, 1]");
  if (!(c.masked_similarity >= 0 && c.masked_similarity <= 1))
    bad("masked_similarity", s(c.masked_similarity), "must be in [0, 1]");
  if (c.decode_block < 0) bad("decode_block", s(c.decode_block), "must be >= 0 (0: no block-wise decoding)");
}

}  // namespace

struct SyntheticWorkload::State {
  int64_t pos_pairs = 0;      // rotary pairs: dims [0, 2 * pos_pairs)
  int64_t sink_dim = 0;       // the dim carrying the sink direction
  int64_t stripe_dim = 0;     // the dim carrying the stripe direction
  int64_t content_begin = 0;  // content dims [content_begin, head_dim)
  int64_t content_dims = 0;
  int64_t prompt_len = 0;
  std::vector<std::vector<double>> freq;  // [kv_head][pair], radians per token
  std::vector<int64_t> stripe_pos;        // sorted
  std::vector<float> stripe_base;         // strength factor per stripe
  std::vector<float> sink_factor;         // strength factor per sink token
  std::vector<HeadParams> head;           // per query head
  double sink_k = 1, stripe_k = 1;        // k amplitude of the sink / stripe direction
};

namespace {

using State = SyntheticWorkload::State;

std::shared_ptr<const State> derive_state(const SyntheticConfig& c) {
  auto st = std::make_shared<State>();
  const int64_t d = c.head_dim, n = c.seq_len;
  const uint64_t seed = c.seed;
  st->pos_pairs = std::clamp<int64_t>(std::llround(c.pos_fraction * static_cast<double>(d) / 2.0),
                                      1, (d - 4) / 2);
  st->sink_dim = 2 * st->pos_pairs;
  st->stripe_dim = st->sink_dim + 1;
  st->content_begin = st->stripe_dim + 1;
  st->content_dims = d - st->content_begin;
  st->prompt_len =
      std::clamp<int64_t>(std::llround(c.prompt_fraction * static_cast<double>(n)), 0, n);

  // Rotary frequencies, log-spaced from 1 down to 1/(2 seq_len) radians per
  // token, jittered per kv head.
  const int64_t P = st->pos_pairs;
  const double log_hi = 0.0, log_lo = std::log(0.5 / static_cast<double>(n));
  st->freq.assign(c.kv_heads, std::vector<double>(P));
  for (int64_t g = 0; g < c.kv_heads; ++g)
    for (int64_t f = 0; f < P; ++f) {
      const double u = uniform01(hash_key(seed, kFrequency, g, f));
      st->freq[g][f] = std::exp(log_hi + (static_cast<double>(f) + u) / P * (log_lo - log_hi));
    }

  // Stripes: distinct positions past the sinks (rejection on a hash sequence).
  std::vector<char> taken(static_cast<size_t>(n), 0);
  // Short sequences get fewer sinks and stripes.
  const int64_t sinks = std::min(c.sink_tokens, n);
  const int64_t stripes = std::min(c.stripes, n - sinks);
  for (int64_t i = 0, tries = 0; i < stripes; ++tries) {
    const int64_t span = n - sinks;
    const int64_t p =
        sinks + static_cast<int64_t>(uniform01(hash_key(seed, kStripePos, tries)) * span);
    if (p >= n || taken[p]) {
      if (tries > 64 * n) break;  // cannot happen for stripes <= span, but never loop forever
      continue;
    }
    taken[p] = 1;
    st->stripe_pos.push_back(p);
    ++i;
  }
  std::sort(st->stripe_pos.begin(), st->stripe_pos.end());
  for (size_t i = 0; i < st->stripe_pos.size(); ++i)
    st->stripe_base.push_back(
        static_cast<float>(0.8 + 0.3 * uniform01(hash_key(seed, kStripeFactor, i))));
  for (int64_t i = 0; i < sinks; ++i)
    st->sink_factor.push_back(
        i == 0 ? 1.0f
               : static_cast<float>(0.75 + 0.25 * uniform01(hash_key(seed, kSinkFactor, i))));
  const double sqrt_d = std::sqrt(static_cast<double>(d));
  st->sink_k = std::sqrt(std::max(c.sink_logit, 1.0) * sqrt_d);
  st->stripe_k = std::sqrt(std::max(c.stripe_logit, 1.0) * sqrt_d);

  // Per-head mix: a seeded order of the heads; the first diffuse_heads are
  // diffuse, the others take band / sinks / stripes / slash lines as their
  // dominant term by turns.
  std::vector<int64_t> order(c.heads);
  for (int64_t h = 0; h < c.heads; ++h) order[h] = h;
  for (int64_t i = c.heads - 1; i > 0; --i)
    std::swap(order[i],
              order[static_cast<int64_t>(uniform01(hash_key(seed, kHeadOrder, i)) * (i + 1))]);
  st->head.resize(c.heads);
  for (int64_t rank = 0; rank < c.heads; ++rank) {
    const int64_t h = order[rank];
    HeadParams& hp = st->head[h];
    hp.diffuse = rank < c.diffuse_heads;
    const int64_t role = hp.diffuse ? -1 : (rank - c.diffuse_heads) % 4;
    using Role = SyntheticWorkload::HeadRole;
    hp.role = role < 0 ? Role::diffuse
                       : std::array{Role::band, Role::sink, Role::stripe, Role::slash}[role];
    // Diffuse heads keep the configured strengths exactly, so that how
    // diffuse they are does not depend on the seed.
    auto vary = [&](int which) {
      return hp.diffuse
                 ? 1.0
                 : std::exp(c.head_variation * normal01(hash_key(seed, kHeadParam, h, which)));
    };
    const bool semi = !hp.diffuse && rank < c.diffuse_heads + c.semi_diffuse_heads;
    const double structure = hp.diffuse ? c.diffuse_scale : semi ? c.semi_diffuse_scale : 1.0;
    double band = c.band_logit * vary(0) + (role == 0 ? c.dominant_boost : 0.0);
    hp.sink_logit = structure * (c.sink_logit * vary(1) + (role == 1 ? c.dominant_boost : 0.0));
    hp.stripe_logit = structure * (c.stripe_logit * vary(2) + (role == 2 ? c.dominant_boost : 0.0));
    hp.slash_logit = structure * (c.slash_logit * vary(3) + (role == 3 ? c.dominant_boost : 0.0));
    // Semi-diffuse heads take half of the diffuse heads' content boost.
    const double content_scale =
        hp.diffuse ? c.diffuse_content_scale : semi ? 1.0 + 0.5 * (c.diffuse_content_scale - 1.0) : 1.0;
    hp.content_std = c.content_logit_std * vary(4) * content_scale;
    band *= structure;
    const double width =
        c.band_width *
        (hp.diffuse ? 1.0 : std::exp(0.3 * normal01(hash_key(seed, kHeadParam, h, 5))));
    const double reach = hp.diffuse || semi ? std::max(c.band_reach, static_cast<double>(n)) : c.band_reach;
    // Pair weights: low-pass above 1/width (the plateau), high-pass below
    // 1/reach (no pull beyond reach), scaled so the peak is the band logit.
    const std::vector<double>& w = st->freq[h / (c.heads / c.kv_heads)];
    std::vector<double> wt(P);
    double sum = 0;
    for (int64_t f = 0; f < P; ++f) {
      const double lo = w[f] * width, hi = w[f] * reach;
      wt[f] = 1.0 / (1.0 + lo * lo) * (hi * hi / (1.0 + hi * hi));
      sum += wt[f];
    }
    hp.band_weight.resize(P);
    for (int64_t f = 0; f < P; ++f)
      hp.band_weight[f] = static_cast<float>(sum > 0 ? band * wt[f] / sum : 0.0);
    // Slash offsets: log-uniform magnitude in [band_width, max_slash_offset], random sign.
    const double lo_off =
        std::max(1.0, std::min(c.band_width, static_cast<double>(c.max_slash_offset)));
    const double hi_off =
        std::min(static_cast<double>(c.max_slash_offset), static_cast<double>(n - 1));
    for (int64_t l = 0; l < c.slash_lines && hi_off >= 1; ++l) {
      const double u = uniform01(hash_key(seed, kSlashOffset, h, l, 0));
      const double mag = std::exp(std::log(std::min(lo_off, hi_off)) +
                                  u * (std::log(hi_off) - std::log(std::min(lo_off, hi_off))));
      // Causal: query i attends i - offset, so offsets look back (positive).
      const bool neg = !c.causal && uniform01(hash_key(seed, kSlashOffset, h, l, 1)) < 0.5;
      const int64_t off = std::max<int64_t>(1, std::llround(mag));
      hp.slash_offsets.push_back(neg ? -off : off);
    }
  }
  return st;
}

// A content vector of m dims at step s: a fixed base plus, with weight drift,
// smooth noise moving between key frames every drift_period steps
// (cos/sin interpolation keeps unit variance).
class DriftingVector {
 public:
  DriftingVector(const SyntheticConfig& c, int64_t s) : DriftingVector(c, s, c.drift) {}
  DriftingVector(const SyntheticConfig& c, int64_t s, double drift) : seed_(c.seed) {
    const int64_t frame = s / c.drift_period;
    const double t = static_cast<double>(s % c.drift_period) / static_cast<double>(c.drift_period);
    frame_ = static_cast<uint64_t>(frame);
    base_w_ = static_cast<float>(std::sqrt(1.0 - drift * drift));
    a_w_ = static_cast<float>(drift * std::cos(std::numbers::pi / 2 * t));
    b_w_ = static_cast<float>(drift * std::sin(std::numbers::pi / 2 * t));
  }
  void fill(float* out, int64_t m, uint64_t stream, uint64_t head, uint64_t token,
            float scale) const {
    Normals base(hash_key(seed_, stream, head, token, 0));
    if (a_w_ == 0.0f && b_w_ == 0.0f) {  // no drift
      for (int64_t i = 0; i < m; ++i) out[i] = scale * base.next();
      return;
    }
    Normals a(hash_key(seed_, stream, head, token, 1 + frame_));
    Normals b(hash_key(seed_, stream, head, token, 2 + frame_));
    for (int64_t i = 0; i < m; ++i)
      out[i] = scale * (base_w_ * base.next() + a_w_ * a.next() + b_w_ * b.next());
  }
  float scalar(uint64_t stream, uint64_t head, uint64_t token) const {
    float x;
    fill(&x, 1, stream, head, token, 1.0f);
    return x;
  }

 private:
  uint64_t seed_, frame_ = 0;
  float base_w_ = 1, a_w_ = 0, b_w_ = 0;
};

}  // namespace

SyntheticConfig calibrated_synthetic_config(int64_t heads) {
  if (heads < 1) throw_bad_argument("calibrated_synthetic_config", "heads", std::to_string(heads), "must be >= 1");
  SyntheticConfig c;
  c.heads = c.kv_heads = heads;
  c.seq_len = 4096;
  c.steps = 64;
  c.decode_block = 512;
  // Calibrated (2026-11-24) against the 16 heads of the captured traces at
  // N 4096, 64x64 blocks, pattern recorded at the first step and reused:
  //   share of mass in the top 10% of key blocks, last step, per head:
  //     traces: 4 heads 0.21-0.25, 3 heads 0.53-0.75, 9 heads 0.89-0.98
  //     here:   2 heads 0.15-0.16, 2 heads 0.60-0.80, 4 heads 0.96-1.00
  //   the blocks holding 95% of a diffuse head's mass when recorded keep,
  //   later on: traces 0.61-0.91, here 0.60-0.69 (output cosine of those
  //   heads: traces 0.52-0.99, here 0.69-0.79).
  c.diffuse_heads = heads / 4;
  c.diffuse_scale = 0.2;
  c.diffuse_content_scale = 2.2;
  c.diffuse_drift = 0.95;
  c.semi_diffuse_heads = heads / 4;
  c.semi_diffuse_scale = 0.45;
  c.content_logit_std = 2.0;
  return c;
}

SyntheticConfig prefill_synthetic_config(int64_t heads, int64_t seq_len) {
  if (heads < 1) throw_bad_argument("prefill_synthetic_config", "heads", std::to_string(heads), "must be >= 1");
  SyntheticConfig c;
  c.heads = c.kv_heads = heads;
  c.seq_len = seq_len;
  c.steps = 1;
  c.prompt_fraction = 1.0;
  c.drift = 0.0;
  c.causal = true;
  return c;
}

void set_synthetic_param(SyntheticConfig& c, const std::string& key, double value) {
  const std::pair<const char*, double*> reals[] = {
      {"pos_fraction", &c.pos_fraction}, {"band_logit", &c.band_logit}, {"band_width", &c.band_width},
      {"band_reach", &c.band_reach}, {"sink_logit", &c.sink_logit}, {"stripe_logit", &c.stripe_logit},
      {"slash_logit", &c.slash_logit}, {"content_logit_std", &c.content_logit_std},
      {"head_variation", &c.head_variation}, {"dominant_boost", &c.dominant_boost},
      {"diffuse_scale", &c.diffuse_scale}, {"diffuse_content_scale", &c.diffuse_content_scale},
      {"semi_diffuse_scale", &c.semi_diffuse_scale}, {"diffuse_drift", &c.diffuse_drift}, {"drift", &c.drift},
      {"prompt_fraction", &c.prompt_fraction}, {"unmask_per_step", &c.unmask_per_step},
      {"masked_similarity", &c.masked_similarity}};
  const std::pair<const char*, int64_t*> ints[] = {
      {"sink_tokens", &c.sink_tokens}, {"stripes", &c.stripes}, {"slash_lines", &c.slash_lines},
      {"max_slash_offset", &c.max_slash_offset}, {"diffuse_heads", &c.diffuse_heads},
      {"semi_diffuse_heads", &c.semi_diffuse_heads}, {"drift_period", &c.drift_period},
      {"decode_block", &c.decode_block}};
  for (const auto& [name, field] : reals)
    if (key == name) {
      *field = value;
      return;
    }
  for (const auto& [name, field] : ints)
    if (key == name) {
      if (value != std::floor(value) || std::fabs(value) > 1e15)
        throw_bad_argument("set_synthetic_param", key.c_str(), std::to_string(value), "must be a whole number");
      *field = static_cast<int64_t>(value);
      return;
    }
  throw_bad_argument("set_synthetic_param", "key", key, "not a SyntheticConfig field (see workload.hpp)");
}

SyntheticWorkload::SyntheticWorkload(SyntheticConfig config) : config_(config) {
  check_config(config_);
  state_ = derive_state(config_);
}

AttentionShape SyntheticWorkload::shape() const {
  AttentionShape s{config_.heads, config_.kv_heads, config_.seq_len, config_.seq_len, config_.head_dim, 0.0f};
  s.causal = config_.causal;
  return s;
}

std::pair<int64_t, int64_t> SyntheticWorkload::decoding_block(int64_t s) const {
  const int64_t B = config_.decode_block, P = state_->prompt_len, n = config_.seq_len;
  if (B <= 0 || P >= n) return {0, 0};
  const int64_t blocks = (n - P + B - 1) / B;
  const int64_t per_block = std::max<int64_t>(1, config_.steps / blocks);
  const int64_t b = std::min(blocks - 1, std::max<int64_t>(s, 0) / per_block);
  return {P + b * B, std::min(n, P + (b + 1) * B)};
}

bool SyntheticWorkload::is_masked(int64_t t, int64_t s) const {
  if (t < state_->prompt_len) return false;
  const double u = uniform01(hash_key(config_.seed, kUnmaskStep, static_cast<uint64_t>(t)));
  if (config_.decode_block > 0) {
    const auto [start, end] = decoding_block(s);
    if (t < start) return false;  // an earlier block: decoded
    if (t >= end) return true;    // a later block: still masked
    const int64_t blocks = (config_.seq_len - state_->prompt_len + config_.decode_block - 1) / config_.decode_block;
    const int64_t per_block = std::max<int64_t>(1, config_.steps / blocks);
    const int64_t first = (start - state_->prompt_len) / config_.decode_block * per_block;
    // The block's tokens unmask in random order over its steps.
    return static_cast<double>(s - first) <= std::floor(u * static_cast<double>(per_block));
  }
  const double unmask_step =
      std::floor(u / config_.unmask_per_step);  // unmasked from the next step on
  return static_cast<double>(s) <= unmask_step;
}

SyntheticWorkload::HeadRole SyntheticWorkload::head_role(int64_t h) const {
  if (h < 0 || h >= config_.heads)
    throw_bad_argument("SyntheticWorkload::head_role", "h", std::to_string(h),
                       "must be in [0, heads = " + std::to_string(config_.heads) + ")");
  return state_->head[h].role;
}

std::vector<int64_t> SyntheticWorkload::stripe_positions() const { return state_->stripe_pos; }

std::vector<int64_t> SyntheticWorkload::slash_offsets(int64_t h) const {
  if (h < 0 || h >= config_.heads)
    throw_bad_argument("SyntheticWorkload::slash_offsets", "h", std::to_string(h),
                       "must be in [0, heads = " + std::to_string(config_.heads) + ")");
  return state_->head[h].slash_offsets;
}

void SyntheticWorkload::step(int64_t s, std::vector<float>& q, std::vector<float>& k,
                             std::vector<float>& v) const {
  const SyntheticConfig& c = config_;
  if (s < 0 || s >= c.steps)
    throw_bad_argument("SyntheticWorkload::step", "s", std::to_string(s),
                       "must be in [0, steps = " + std::to_string(c.steps) + ")");
  const State& st = *state_;
  const int64_t d = c.head_dim, n = c.seq_len, P = st.pos_pairs, m = st.content_dims;
  const int64_t cb = st.content_begin, group = c.heads / c.kv_heads;
  const float sqrt_d = std::sqrt(static_cast<float>(d));
  const DriftingVector drift(c, s);
  const DriftingVector diffuse_drift(c, s, c.diffuse_drift > 0 ? c.diffuse_drift : c.drift);
  const float rho = static_cast<float>(std::sqrt(c.masked_similarity));
  const float own = static_cast<float>(std::sqrt(1.0 - c.masked_similarity));
  q.assign(static_cast<size_t>(c.heads * n * d), 0.0f);
  k.assign(static_cast<size_t>(c.kv_heads * n * d), 0.0f);
  v.assign(static_cast<size_t>(c.kv_heads * n * d), 0.0f);
  std::vector<char> masked(static_cast<size_t>(n));
  for (int64_t t = 0; t < n; ++t) masked[t] = is_masked(t, s) ? 1 : 0;
  std::vector<int64_t> stripe_of(static_cast<size_t>(n), -1);
  for (size_t i = 0; i < st.stripe_pos.size(); ++i)
    stripe_of[st.stripe_pos[i]] = static_cast<int64_t>(i);

  // Shared mask-token embeddings (fixed across steps).
  std::vector<float> mask_k(static_cast<size_t>(c.kv_heads * m)),
      mask_v(static_cast<size_t>(c.kv_heads * d)), mask_q(static_cast<size_t>(c.heads * m));
  for (int64_t g = 0; g < c.kv_heads; ++g) {
    Normals a(hash_key(c.seed, kMaskKey, g)), b(hash_key(c.seed, kMaskValue, g));
    for (int64_t i = 0; i < m; ++i) mask_k[g * m + i] = a.next();
    for (int64_t i = 0; i < d; ++i) mask_v[g * d + i] = b.next();
  }
  for (int64_t h = 0; h < c.heads; ++h) {
    Normals a(hash_key(c.seed, kMaskQuery, h));
    for (int64_t i = 0; i < m; ++i) mask_q[h * m + i] = a.next();
  }

  // Keys and values. k content = own content (or mostly the mask embedding)
  // plus the position's identity vector, both unit variance per dim.
  detail::parallel_for(resolve_threads(KernelOptions{}), c.kv_heads * n, [&](int64_t begin, int64_t end) {
    std::vector<float> id(static_cast<size_t>(m));
    for (int64_t item = begin; item < end; ++item) {
      const int64_t g = item / n, j = item % n;
      float* kr = k.data() + item * d;
      const std::vector<double>& w = st.freq[g];
      for (int64_t f = 0; f < P; ++f) {
        const double a = w[f] * static_cast<double>(j);
        kr[2 * f] = static_cast<float>(std::cos(a));
        kr[2 * f + 1] = static_cast<float>(std::sin(a));
      }
      if (j < static_cast<int64_t>(st.sink_factor.size()))
        kr[st.sink_dim] = static_cast<float>(st.sink_k) * st.sink_factor[j];
      if (stripe_of[j] >= 0) {
        const float wobble =
            std::exp(0.5f * static_cast<float>(c.drift) *
                     drift.scalar(kStripeDrift, g, static_cast<uint64_t>(stripe_of[j])));
        kr[st.stripe_dim] = static_cast<float>(st.stripe_k) * st.stripe_base[stripe_of[j]] * wobble;
      }
      float* kc = kr + cb;
      drift.fill(kc, m, kKeyContent, g, j, 1.0f);
      if (masked[j])
        for (int64_t i = 0; i < m; ++i) kc[i] = rho * mask_k[g * m + i] + own * kc[i];
      drift.fill(id.data(), m, kIdentity, g, j, 1.0f);
      for (int64_t i = 0; i < m; ++i) kc[i] += id[i];
      float* vr = v.data() + item * d;
      drift.fill(vr, d, kValue, g, j, 1.0f);
      if (masked[j])
        for (int64_t i = 0; i < d; ++i) vr[i] = rho * mask_v[g * d + i] + own * vr[i];
    }
  });

  // Queries.
  detail::parallel_for(resolve_threads(KernelOptions{}), c.heads * n, [&](int64_t begin, int64_t end) {
    std::vector<float> id(static_cast<size_t>(m));
    for (int64_t item = begin; item < end; ++item) {
      const int64_t h = item / n, i = item % n, g = h / group;
      const HeadParams& hp = st.head[h];
      float* qr = q.data() + item * d;
      const std::vector<double>& w = st.freq[g];
      for (int64_t f = 0; f < P; ++f) {  // sum_f weight_f cos(w_f (i - j)) in logits
        const double a = w[f] * static_cast<double>(i);
        const float amp = hp.band_weight[f] * sqrt_d;
        qr[2 * f] = amp * static_cast<float>(std::cos(a));
        qr[2 * f + 1] = amp * static_cast<float>(std::sin(a));
      }
      qr[st.sink_dim] = static_cast<float>(hp.sink_logit * sqrt_d / st.sink_k);
      qr[st.stripe_dim] = static_cast<float>(hp.stripe_logit * sqrt_d / st.stripe_k);
      float* qc = qr + cb;
      // Content: logit std content_std against k content + identity (2m unit dims).
      const float cscale =
          static_cast<float>(hp.content_std * sqrt_d / std::sqrt(2.0 * static_cast<double>(m)));
      (hp.diffuse ? diffuse_drift : drift).fill(qc, m, kQueryContent, h, i, cscale);
      if (masked[i])
        for (int64_t x = 0; x < m; ++x) qc[x] = rho * cscale * mask_q[h * m + x] + own * qc[x];
      // Slash lines: the identity vector of key i - offset, |id|^2 ~ m.
      for (int64_t off : hp.slash_offsets) {
        const int64_t j = i - off;
        if (j < 0 || j >= n) continue;
        drift.fill(id.data(), m, kIdentity, g, j,
                   static_cast<float>(hp.slash_logit * sqrt_d / static_cast<double>(m)));
        for (int64_t x = 0; x < m; ++x) qc[x] += id[x];
      }
    }
  });
}

}  // namespace spattn
