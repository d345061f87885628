#pragma once
// Workloads and accuracy metrics: a synthetic generator of diffusion-LM
// attention inputs, a NumPy .npy reader/writer for captured Q/K/V traces, and
// the error measures every sparse method is judged by (relative L2 error,
// cosine similarity; mask_recall is declared in patterns.hpp).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "spattn/shape.hpp"

namespace spattn {

// ---------------------------------------------------------------------------
// Synthetic diffusion-attention workload
//
// Q/K/V whose softmax shows the structure that learned attention of a
// diffusion LM shows: attention sinks, a local band around the diagonal,
// vertical stripes of globally attended tokens, slash (diagonal offset) lines,
// a different mix per head (most sharp, a few diffuse), and slow drift across
// denoising steps, with positions that get unmasked changing their embeddings.
// Bidirectional (no causal structure), like a masked-diffusion LM.
//
// How each head_dim vector is built (logits are q.k / sqrt(head_dim)):
//  - dims [0, 2P), P = round(pos_fraction * head_dim / 2): rotary pairs, k at
//    angle w_f * j, q at w_f * i with per-head weights, so the logit is
//    sum_f weight_f cos(w_f (i - j)): a peak at i = j that decays about
//    logarithmically with |i - j| (mass ~ |i - j|^-alpha) from band_width out
//    to band_reach, plus the quasi-random ripple of finitely many frequencies
//    (w_f log-spaced from 1 to 1/(2 seq_len), jittered per kv head).
//  - one dim for the sink direction, one for the stripe direction: set on the
//    sink / stripe keys and, with the head's strength, on every query.
//  - the rest is content: each key carries its own random content (mostly a
//    shared mask embedding while masked) plus an identity vector of its
//    position; a query carries its own content plus, per slash line, the
//    identity vector of key i - offset (a peak of slash_logit exactly there).
//
// Calibration (default config, N = 8192, 64x64 blocks, oracle top-k of key
// blocks per query block): at 10% of the blocks the diffuse head keeps about
// 0.78-0.80 of the softmax mass and the others 0.93-1.00 (most >= 0.98); the
// top-10% block sets of steps s and s + 8 overlap 0.95-0.99. Captured traces of
// a small real diffusion LM (4096 tokens) keep 0.89-0.98 on local heads and
// 0.76 on a diffuse one. Max logit minus mean logit per row: 9-19.
//
// "Logit" below is a term of the softmax input for a head of average strength.
struct SyntheticConfig {
  int64_t heads = 8;       // query heads
  int64_t kv_heads = 8;    // key/value heads (GQA when fewer; must divide heads)
  int64_t seq_len = 8192;  // tokens (q_len == kv_len)
  int64_t head_dim = 128;  // even, >= 16
  int64_t steps = 64;      // denoising steps; step(s) accepts s in [0, steps)
  uint64_t seed = 1;       // everything is a pure function of (config, step)

  // Share of head_dim used by the rotary (positional) part; after it come the
  // sink dim, the stripe dim and the content dims.
  double pos_fraction = 0.5;
  // Local band: peak logit at distance 0. Flat out to about band_width
  // tokens, then falling about logarithmically until band_reach tokens, past
  // which the band adds nothing but ripple (diffuse heads reach seq_len).
  double band_logit = 11.0;
  double band_width = 24.0;
  double band_reach = 1024.0;
  // Attention sinks: keys [0, sink_tokens) get sink_logit (token 0 in full,
  // the others 0.75-1 of it). Sinks and stripes are capped by seq_len.
  int64_t sink_tokens = 4;
  double sink_logit = 7.0;
  // Vertical stripes: this many key tokens (seeded positions past the sinks,
  // the same for all heads) get stripe_logit (0.8-1.1 of it each) from every
  // query.
  int64_t stripes = 4;
  double stripe_logit = 5.0;
  // Slash lines: per query head, slash_lines diagonal offsets with magnitude
  // log-uniform in [band_width, max_slash_offset] and a random sign; query i
  // gets slash_logit on key i - offset (one token wide). Each line also adds
  // logit noise of about 0.18 * slash_logit to the head.
  int64_t slash_lines = 2;
  int64_t max_slash_offset = 1024;
  double slash_logit = 3.0;
  // Content: standard deviation of the random content logits (background
  // scattered over all keys).
  double content_logit_std = 1.0;

  // Per-head mix. Each non-diffuse head multiplies band, sink, stripe, slash
  // and content strengths by exp(head_variation * N(0,1)) (and band_width by
  // exp(0.3 * N(0,1))), and adds dominant_boost logits to one term: by turns
  // (in a seeded head order) band, sinks, stripes, slash lines.
  double head_variation = 0.15;
  double dominant_boost = 4.0;
  // diffuse_heads heads (the first of the seeded order) are diffuse: no
  // variation, every structural logit times diffuse_scale, content times
  // diffuse_content_scale, band reaching the whole sequence.
  int64_t diffuse_heads = 1;
  double diffuse_scale = 0.65;
  double diffuse_content_scale = 1.4;
  // The next semi_diffuse_heads heads of the seeded order keep their role but
  // scale every structural logit by semi_diffuse_scale and content by
  // 1 + (diffuse_content_scale - 1) / 2, with the band reaching the whole sequence.
  int64_t semi_diffuse_heads = 0;
  double semi_diffuse_scale = 1.0;
  // Diffuse heads' query content drifts with this weight instead of drift
  // (their pattern is mostly content, so it moves across decoding blocks as
  // real diffuse layers do). 0: the common drift.
  double diffuse_drift = 0.0;

  // Drift across steps: every content, identity and value vector is
  // sqrt(1 - drift^2) of a fixed part plus drift of smooth noise that moves
  // from one random key frame to the next every drift_period steps
  // (cos/sin interpolation, unit variance throughout); stripe strengths
  // wobble by exp(drift/2 * noise). 0 freezes all but unmasking.
  double drift = 0.2;
  int64_t drift_period = 16;

  // Unmasking: tokens [0, round(prompt_fraction * seq_len)) are the prompt,
  // never masked. Every other token is masked at step 0 and unmasks from a
  // seeded step on, about unmask_per_step of them per step (in random order;
  // 1/steps unmasks all by the end). While masked, a token's k content, q
  // content and v are masked_similarity parts (of variance) a shared mask
  // embedding and the rest its own, so unmasking changes its embeddings.
  double prompt_fraction = 0.5;
  double unmask_per_step = 1.0 / 64;
  double masked_similarity = 0.8;
  // Block-wise (semi-autoregressive) decoding, as LLaDA-style samplers and
  // DPad assume: with decode_block > 0 the generated region is decoded in
  // blocks of decode_block tokens, in order, each over an equal share of the
  // steps (tokens of the current block unmask in random order within it;
  // later blocks stay masked; unmask_per_step is then unused). 0: every
  // generated token unmasks at a random step, anywhere.
  int64_t decode_block = 0;

  // Causal LLM prefill instead of diffusion: shape() is causal (query i sees
  // keys <= i), slash lines look back only (offsets > 0), and the same
  // structure (sinks, local band, stripes, slash lines, head mix) shows under
  // the causal mask. Pair it with prompt_fraction 1 (nothing masked) and one
  // step, as prefill_synthetic_config does.
  bool causal = false;
};

// The default workload of the tools (spattn-tune, spattn-eval,
// spattn-compare): the generator above calibrated against captured attention
// of a real masked-diffusion LM (4 layers x 4 heads, N 4096; tuning/README.md
// "The default workload"): 8 heads of which 2 diffuse and drifting, 2
// semi-diffuse and 4 sharp, N 4096, 64 steps decoded block-wise in blocks of
// 512 tokens after a 2048-token prompt. With another head count the mix
// keeps its proportions: heads / 4 diffuse and heads / 4 semi-diffuse heads
// (rounded down), the rest sharp.
SyntheticConfig calibrated_synthetic_config(int64_t heads = 8);

// The prefill workload of spattn-compare --workload prefill: the generator's
// default mix (1 diffuse head in 8, the rest sharp: sinks, band, stripes,
// slash lines) under a causal mask, seq_len tokens all prompt, one step, no
// drift. Not calibrated against a real LLM (no LLM traces are at hand).
SyntheticConfig prefill_synthetic_config(int64_t heads, int64_t seq_len);

// Sets one field of c by its name in SyntheticConfig ("diffuse_heads",
// "content_logit_std", ...) from value (integers must be whole); throws
// spattn::Error naming an unknown key. The tools' --synthetic KEY=VALUE.
void set_synthetic_param(SyntheticConfig& c, const std::string& key, double value);

class SyntheticWorkload {
 public:
  // Throws spattn::Error naming the first bad field.
  explicit SyntheticWorkload(SyntheticConfig config);

  const SyntheticConfig& config() const { return config_; }
  // heads, kv_heads, seq_len, seq_len, head_dim; scale 0 (1/sqrt(head_dim)).
  AttentionShape shape() const;

  // Q/K/V of denoising step s (0 <= s < steps), heads-major:
  // q [heads][seq_len][head_dim], k and v [kv_heads][seq_len][head_dim], fp32.
  // Resizes the vectors. Any s can be generated directly: the result depends
  // only on (config, s), never on earlier calls. Threaded with OpenMP; the
  // result does not depend on the thread count.
  void step(int64_t s, std::vector<float>& q, std::vector<float>& k, std::vector<float>& v) const;

  // Whether token t is still masked at step s (prompt tokens never are).
  bool is_masked(int64_t t, int64_t s) const;
  // With decode_block > 0: the block [first, second) being decoded at step s
  // (everything before it is prompt or decoded); {0, 0} otherwise.
  std::pair<int64_t, int64_t> decoding_block(int64_t s) const;
  // The term query head h is dominated by (see SyntheticConfig's per-head mix).
  enum class HeadRole { diffuse, band, sink, stripe, slash };
  HeadRole head_role(int64_t h) const;
  bool is_diffuse_head(int64_t h) const { return head_role(h) == HeadRole::diffuse; }
  // Key positions of the vertical stripes (sorted, past the sinks; the same
  // for every head, each head attends them with its own strength).
  std::vector<int64_t> stripe_positions() const;
  // Diagonal offsets of query head h's slash lines (query i attends i - offset).
  std::vector<int64_t> slash_offsets(int64_t h) const;

  struct State;  // what the constructor derives from the config (frequencies, per-head mix)

 private:
  SyntheticConfig config_;
  std::shared_ptr<const State> state_;
};

// ---------------------------------------------------------------------------
// NumPy .npy files

// An array read from a .npy file, converted to fp32, C order.
struct NpyArray {
  std::vector<int64_t> shape;  // () for a scalar
  std::vector<float> data;     // product(shape) values
};

// Reads format versions 1.0, 2.0 and 3.0, dtype '<f4' or '<f2' (float16 is
// converted exactly, subnormals, infinities and NaN included), C order.
// Throws spattn::Error naming the file and the problem: missing or unreadable
// file, bad magic, unsupported version, malformed header, unsupported dtype
// (named), fortran_order True, or truncated data (expected vs found bytes).
NpyArray load_npy(const std::string& path);
// The same from the file's bytes in memory; name stands for the file in error
// messages. load_npy reads the file and calls this. A header whose shape
// needs more bytes than are present is refused before anything is allocated.
NpyArray parse_npy(std::span<const std::byte> bytes, const std::string& name);

// Writes a float32 ('<f4'), C-order .npy file (version 1.0, or 2.0 when the
// header needs it). Throws spattn::Error if the file cannot be written.
void save_npy(const std::string& path, const std::vector<int64_t>& shape, const float* data);

// One step of a captured trace: q [heads][tokens][head_dim], k and v
// [kv_heads][tokens][head_dim], heads-major contiguous.
struct NpyStep {
  AttentionShape shape;  // scale 0 (1/sqrt(head_dim))
  std::vector<float> q, k, v;
};

// The step folders of a trace directory, sorted naturally by name (step2
// before step10), as paths dir/NAME. A step folder holds q.npy, k.npy and v.npy
// either itself or in layer subfolders (dir/stepXXXX/layerL/{q,k,v}.npy).
// Throws spattn::Error if dir is not a directory; no step folders give {}.
std::vector<std::string> list_npy_steps(const std::string& dir);
// The layer numbers of dir's first step folder (layerL subfolders), ascending;
// empty when the step folder holds q/k/v itself.
std::vector<int> list_npy_layers(const std::string& dir);

// Loads one step folder. With layer folders, layer -1 takes the first one (in
// natural order) and layer L the folder whose name ends in the number L
// ("layer3", "layer03"). Throws spattn::Error for missing files or layer,
// arrays that are not rank 3, or q/k/v shapes that disagree.
NpyStep load_npy_step(const std::string& step_dir, int layer = -1);

// ---------------------------------------------------------------------------
// Accuracy against the double-precision reference
//
// ref is [out.heads][out.tokens][out.head_dim] contiguous, as
// reference_attention writes it; its size must match (else spattn::Error).
// NaN in out propagates to the result.

// ||out - ref||_2 / ||ref||_2 over the whole tensor. If ref is all zeros,
// returns ||out||_2 (the absolute error).
double relative_l2_error(ConstTensorView out, const std::vector<double>& ref);

// Mean over (head, query row) of the cosine between the output row and the
// reference row. A zero row against a zero row counts as 1 (both say
// "nothing attended"), a zero row against a non-zero row as 0.
double cosine_similarity(ConstTensorView out, const std::vector<double>& ref);

// Cosine between the whole output and the whole reference, as flat vectors
// (same zero conventions). Dominated by large rows, unlike cosine_similarity.
double global_cosine_similarity(ConstTensorView out, const std::vector<double>& ref);

}  // namespace spattn
