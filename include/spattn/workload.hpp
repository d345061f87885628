#pragma once
// Workloads and accuracy metrics: a synthetic generator of diffusion-LM
// attention inputs, a NumPy .npy reader/writer for captured Q/K/V traces, and
// the error measures every sparse method is judged by (relative L2 error,
// cosine similarity; mask_recall is declared in patterns.hpp).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "spattn/shape.hpp"

namespace spattn {

// ---------------------------------------------------------------------------
// Synthetic diffusion-attention workload
//
// Q/K/V whose softmax shows the structure learned attention of a diffusion LM
// shows: attention sinks, a local band around the diagonal, vertical stripes
// of globally attended tokens, slash (diagonal offset) lines, a different mix
// per head (most sharp, a few diffuse), and slow drift across denoising steps,
// with positions that get unmasked changing their embeddings.
//
// How: each head_dim vector is split into a positional part (the first
// pos_fraction of the dims, as rotated 2-D pairs, like RoPE) and a content
// part (the rest). The positional part gives logits that depend on i - j only:
// a peak at distance 0 (the band) and, rotated by an offset, peaks at
// i - j = offset (slash lines). In the content part, sink and stripe keys carry
// a shared direction that every query of the head also carries, and every
// token adds its own random content (the background). A still-masked token's
// content is mostly the shared mask-token embedding.
//
// "Logit" below means a term of q.k / sqrt(head_dim), the softmax input, for
// a head of average strength; each query head scales every term by its own
// random factor (head_variation) and one term is made its dominant one.
struct SyntheticConfig {
  int64_t heads = 8;       // query heads
  int64_t kv_heads = 8;    // key/value heads (GQA when fewer; must divide heads)
  int64_t seq_len = 8192;  // tokens (q_len == kv_len)
  int64_t head_dim = 128;  // even, >= 16
  int64_t steps = 64;      // denoising steps; step(s) accepts s in [0, steps)
  uint64_t seed = 1;       // everything is a pure function of (config, step)

  // Attention sinks: keys [0, sink_tokens) get sink_logit.
  int64_t sink_tokens = 4;
  double sink_logit = 7.0;
  // Local band: a peak of band_logit at distance 0, falling to about half at
  // distance band_width (tokens) and on towards zero (Cauchy-like, with the
  // random ripple of a finite number of rotary frequencies).
  double band_logit = 11.0;
  double band_width = 24.0;
  double band_reach = 1024.0;
  // Share of head_dim used by the positional (rotary) part; the rest is content.
  double pos_fraction = 0.5;
  // Vertical stripes: this many key tokens per kv head (random positions past
  // the sinks) are attended from everywhere with stripe_logit.
  int64_t stripes = 4;
  double stripe_logit = 5.0;
  // Slash lines: per query head, this many diagonal offsets in
  // [-max_slash_offset, max_slash_offset] (not inside the band), each a peak of
  // slash_logit at i - j = offset, as sharp as the band.
  int64_t slash_lines = 2;
  int64_t max_slash_offset = 1024;
  double slash_logit = 3.0;
  // Content: random per-token q and k parts whose dot product has this
  // standard deviation in logits: the scattered background.
  double content_logit_std = 1.0;

  // Per-head mix: every structural logit of a head is multiplied by
  // exp(head_variation * N(0,1)); one term per head (band, sinks, stripes or
  // slash lines, by turns) gets dominant_boost on top.
  double head_variation = 0.15;
  double dominant_boost = 4.0;
  // The first diffuse_heads query heads of a seeded shuffle are diffuse: their
  // structural logits are multiplied by diffuse_scale and their content
  // logits by diffuse_content_scale (weak structure, mass spread wide).
  int64_t diffuse_heads = 1;
  double diffuse_scale = 0.65;
  double diffuse_content_scale = 1.4;

  // Drift across steps: a share drift of every token's content (q, k and v) is
  // smooth noise that moves from one random key frame to the next every
  // drift_period steps, so step s and s + 1 differ a little and far-apart
  // steps more. 0 freezes everything but unmasking.
  double drift = 0.2;
  int64_t drift_period = 16;

  // Unmasking: tokens [0, prompt_fraction * seq_len) are the prompt (never
  // masked). Each other token unmasks at its own seeded step, so that about
  // unmask_per_step of them unmask per step (1 / steps: all by the last
  // step); a still-masked token's content is masked_similarity parts shared
  // mask embedding and the rest its own content.
  double prompt_fraction = 0.5;
  double unmask_per_step = 1.0 / 64;
  double masked_similarity = 0.8;
};

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
  // Whether query head h is one of the diffuse heads.
  bool is_diffuse_head(int64_t h) const;
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
