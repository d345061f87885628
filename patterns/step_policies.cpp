// The session's step policies (see step_policies.hpp).
#include "patterns/step_policies.hpp"

#include <algorithm>
#include <chrono>
#include <optional>
#include <span>
#include <vector>

#include "kernels/engine/engine.hpp"
#include "kernels/engine/kv_plan.hpp"
#include "kernels/validate.hpp"
#include "spattn/error.hpp"

namespace spattn::detail {
namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

const std::vector<int32_t> kNoTokens;

// A float sum in 16 independent lanes (the compiler vectorizes it; one
// running sum would be a serial dependency chain).
double sum_floats(const float* x, int64_t n) {
  float lane[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; ++l) lane[l] += x[i + l];
  double s = 0.0;
  for (; i < n; ++i) s += x[i];
  for (float v : lane) s += v;
  return s;
}

// Dense attention of a step, on the session's cache when the step has it.
void step_dense(const StepTensors& t, const KernelOptions& k) {
  if (t.plan == nullptr) {
    dense_attention(t.shape, t.q, t.k, t.v, t.out, k);
    return;
  }
  check_finite_inputs("DiffusionAttention::step", k, t.shape, t.q, t.k, t.v);
  const std::vector<int32_t> all = all_key_blocks(*t.plan);
  attend(t.shape, t.q, *t.plan, t.out, resolve_tiles(k, t.k.dtype).q_tile_rows,
         [&](int64_t, int64_t) { return std::span<const int32_t>(all); }, resolve_threads(k),
         AttendExtras{nullptr, nullptr, {}, k.kv_splits});
}

// Block-sparse attention of a step on mask m, on the session's cache when
// the step has it (in m's key blocks).
void step_sparse(const StepTensors& t, const BlockMask& m, const KernelOptions& k) {
  if (t.plan == nullptr || t.plan->k_block() != m.k_block) {
    block_sparse_attention(t.shape, t.q, t.k, t.v, m, t.out, k);
    return;
  }
  check_finite_inputs("DiffusionAttention::step", k, t.shape, t.q, t.k, t.v);
  attend(t.shape, t.q, *t.plan, t.out, m.q_block, [&](int64_t h, int64_t qb) { return m.row(h, qb); },
         resolve_threads(k), AttendExtras{nullptr, nullptr, {}, k.kv_splits});
}

class DenseSteps final : public StepPolicy {
 public:
  explicit DenseSteps(const KernelOptions& k) : kernel_(k) {}
  StepReport run(int64_t, const StepTensors& t) override {
    step_dense(t, kernel_);
    return {};
  }

 private:
  KernelOptions kernel_;
};

// SparseD: dense warmup, record the pattern at the last dense step (one
// packed K/V for the flash pass with LSE and the block-mass pass), then
// block-sparse on the cached pattern, re-recorded every refresh_every steps.
class SparsedSteps final : public StepPolicy {
 public:
  explicit SparsedSteps(const SessionConfig& c) : c_(c), warm_(warmup_steps_for(c)) {}

  StepReport run(int64_t s, const StepTensors& t) override {
    StepReport r;
    const int64_t R = c_.refresh_every;
    bool record = s == warm_ - 1 || (s >= warm_ && !pattern_) || (R > 0 && s >= warm_ && s - last_record_ > R) ||
                  (s >= warm_ && block_moved_) ||
                  (c_.cache != CacheMode::none && s >= warm_ - 1);  // with a KV cache every refresh records
    block_moved_ = false;
    if (!record && s >= warm_ && pattern_->density() >= 1.0) {
      // Every head of the pattern runs dense: flash is the same computation,
      // faster, and a full pattern cannot drift.
      step_dense(t, c_.kernel);
      r.dense_heads = dense_heads_;
      return r;
    }
    const int64_t D = c_.drift_check_every;
    if (!record && s >= warm_ && D > 0 && (s - last_record_) % D == 0) {
      // The check and the sparse step share one packing of K and V.
      check_finite_inputs("DiffusionAttention::step", c_.kernel, t.shape, t.q, t.k, t.v);
      const int threads = resolve_threads(c_.kernel);
      std::optional<KVPlan> own;  // the session's cache, else one packing for the check and the step
      const KVPlan& kv = t.plan != nullptr && t.plan->k_block() == pattern_->k_block
                             ? *t.plan
                             : own.emplace(t.shape, t.k, t.v, pattern_->k_block, threads);
      const auto t0 = Clock::now();  // the packing serves the step: not the check's cost
      r.drift_recall = drift_recall(t, kv);
      r.drift_ms = ms_since(t0);
      if (r.drift_recall >= c_.drift_min_recall) {
        const BlockMask& p = *pattern_;
        attend(t.shape, t.q, kv, t.out, p.q_block, [&](int64_t h, int64_t qb) { return p.row(h, qb); }, threads);
        r.path = StepPath::sparse_cached;
        r.density = p.density();
        r.dense_heads = dense_heads_;
        return r;
      }
      record = true;
    }
    if (s < warm_ - 1) {
      step_dense(t, c_.kernel);
    } else if (record) {
      r.select_ms = record_pattern(t);
      r.path = StepPath::dense_record;
      last_record_ = s;
    } else {
      step_sparse(t, *pattern_, c_.kernel);
      r.path = StepPath::sparse_cached;
      r.density = pattern_->density();
      r.dense_heads = dense_heads_;
    }
    return r;
  }
  void set_decoding_block(int64_t begin, int64_t end) override {
    if (!c_.record_on_new_block) return;
    if (begin != block_begin_ || end != block_end_) block_moved_ = block_begin_ >= 0;  // the first block is no move
    block_begin_ = begin;
    block_end_ = end;
  }
  const BlockMask* cached_pattern() const override { return pattern_ ? &*pattern_ : nullptr; }
  const BlockMask* last_mask() const override { return pattern_ ? &*pattern_ : nullptr; }
  void reset_pattern() override { pattern_.reset(); }

 private:
  // Dense step with LSE and the block masses, then the selection; returns
  // the milliseconds of the part after the dense pass (with the fused pass:
  // the selection only).
  double record_pattern(const StepTensors& t) {
    check_finite_inputs("DiffusionAttention::step", c_.kernel, t.shape, t.q, t.k, t.v);
    const int threads = resolve_threads(c_.kernel);
    lse_.resize(static_cast<size_t>(t.shape.heads * t.shape.q_len));
    BlockMass mass{t.shape.heads, t.shape.q_len, t.shape.kv_len, c_.block_size, c_.block_size, {}};
    mass.mass.resize(static_cast<size_t>(mass.heads * mass.q_blocks() * mass.k_blocks()));
    if (t.plan != nullptr && t.plan->k_block() == c_.block_size) {
      // The session's cache is in the pattern's key blocks: one fused pass on
      // it gives output, LSE and masses (no packing of its own).
      attend_with_block_mass(t.shape, t.q, *t.plan, t.out, c_.block_size, threads, lse_.data(), mass.mass.data());
      const auto t1 = Clock::now();
      pattern_ = select(mass, t);
      return ms_since(t1);
    }
    // The dense kernel's tiles, so that the step's output is dense_attention's
    // bit for bit; the masses come in the same pass when those are the
    // pattern's blocks (as sparsed_paper_config and the tuner's profiles set).
    const TileSizes tiles = resolve_tiles(c_.kernel, t.k.dtype);
    const KVPlan kv(t.shape, t.k, t.v, tiles.k_block, threads);
    if (tiles.q_tile_rows == c_.block_size && tiles.k_block == c_.block_size) {
      // The tiles are the pattern's blocks: one pass gives output, LSE and masses.
      attend_with_block_mass(t.shape, t.q, kv, t.out, c_.block_size, threads, lse_.data(), mass.mass.data());
      const auto t1 = Clock::now();
      pattern_ = select(mass, t);
      return ms_since(t1);
    }
    const std::vector<int32_t> all = all_key_blocks(kv);
    attend(t.shape, t.q, kv, t.out, tiles.q_tile_rows,
           [&](int64_t, int64_t) { return std::span<const int32_t>(all); }, threads, lse_.data());
    const auto t1 = Clock::now();
    if (tiles.k_block == c_.block_size) {  // the flash pass's packing serves the mass pass too
      block_mass(t.shape, t.q, kv, lse_.data(), c_.block_size, threads, mass.mass.data());
    } else {
      const KVPlan keys(t.shape, t.k, InputView{}, c_.block_size, threads);
      block_mass(t.shape, t.q, keys, lse_.data(), c_.block_size, threads, mass.mass.data());
    }
    pattern_ = select(mass, t);
    return ms_since(t1);
  }

  // The lowest per-head share of attention mass the cached pattern keeps on
  // a few sampled query blocks: their rows are gathered (ascending, so a
  // partial last block stays last and the blocks stay aligned), and one QK
  // pass gives their exact softmax rows over all keys, summed over the
  // pattern's blocks.
  double drift_recall(const StepTensors& t, const KVPlan& kv) {
    const BlockMask& p = *pattern_;
    const int64_t B = p.q_block, qbs = p.q_blocks(), H = t.shape.heads;
    const int64_t n = std::min(c_.drift_sample_blocks, qbs);
    std::vector<int64_t> blocks;
    for (int64_t j = 0; j < n; ++j) blocks.push_back((checks_ + j * qbs / n) % qbs);
    ++checks_;
    std::sort(blocks.begin(), blocks.end());
    blocks.erase(std::unique(blocks.begin(), blocks.end()), blocks.end());
    std::vector<int32_t> sample_rows;
    for (int64_t qb : blocks)
      for (int64_t i = qb * B; i < std::min(t.shape.q_len, (qb + 1) * B); ++i)
        sample_rows.push_back(static_cast<int32_t>(i));
    const int64_t rows = static_cast<int64_t>(sample_rows.size());
    const int threads = resolve_threads(c_.kernel);
    const InputView qs = gather_tokens(t.q, sample_rows, threads, sample_q_);
    AttentionShape ss = t.shape;
    ss.q_len = rows;
    const int64_t nb = static_cast<int64_t>(blocks.size()), nk = t.shape.kv_len;
    // Tiles of 16 rows keep the row buffer (16 x kv_len floats) in L2; 16
    // divides every block size, so a tile lies in one sampled block.
    constexpr int64_t kTile = 16;
    const int64_t tiles = (rows + kTile - 1) / kTile;
    std::vector<double> kept(static_cast<size_t>(H * tiles), 0.0);  // one slot per tile: no sharing
    key_softmax_rows(ss, qs, kv, kTile, 0.0f, {}, threads, [&](int64_t h, int64_t r0, int n, const float* probs, int64_t ld) {
      double sum = 0.0;
      for (int32_t kb : p.row(h, blocks[static_cast<size_t>(r0 / B)])) {
        const int64_t c0 = kb * p.k_block, len = std::min(nk, c0 + p.k_block) - c0;
        for (int r = 0; r < n; ++r) sum += sum_floats(probs + r * ld + c0, len);
      }
      kept[static_cast<size_t>(h * tiles + r0 / kTile)] = sum;
    });
    double lowest = 1.0;
    for (int64_t h = 0; h < H; ++h) {
      double head = 0.0;  // mean over the sampled blocks of their rows' mean kept mass
      for (int64_t j = 0; j < nb; ++j) {
        const int64_t first = j * B, n = std::min(B, rows - first);
        double block = 0.0;
        for (int64_t tile = first / kTile; tile < (first + n + kTile - 1) / kTile; ++tile)
          block += kept[static_cast<size_t>(h * tiles + tile)];
        head += block / static_cast<double>(n);
      }
      lowest = std::min(lowest, head / static_cast<double>(nb));
    }
    return lowest;
  }

  // The authors' second selection needs the masses of the generation keys
  // under their own softmax: one more LSE + mass pass over those keys.
  BlockMask select_paper(const BlockMass& mass, const StepTensors& t) const {
    const int64_t g = sparsed_paper_generation_block(std::min(c_.paper_prefix_len, t.shape.kv_len), t.shape.kv_len,
                                                     c_.block_size);
    AttentionShape gen_shape = t.shape;
    gen_shape.kv_len = t.shape.kv_len - g * c_.block_size;
    gen_shape.scale = t.shape.effective_scale();
    InputView gen_k = t.k;
    gen_k.data = t.k.row(0, g * c_.block_size);
    gen_k.tokens = gen_shape.kv_len;
    const BlockMass gen = block_attention_mass(gen_shape, t.q, gen_k, c_.block_size, c_.block_size, c_.kernel);
    return sparsed_select_paper(mass, gen, g, c_.topk_ratio);
  }

  BlockMask select(const BlockMass& mass, const StepTensors& t) {
    dense_heads_ = 0;
    if (c_.paper_select) return select_paper(mass, t);
    if (c_.mass_budget) {
      std::vector<uint8_t> dense;
      BlockMask m = sparsed_select_mass(mass, *c_.mass_budget, &dense);
      for (uint8_t d : dense) dense_heads_ += d;
      return m;
    }
    return c_.pooled_budget ? sparsed_select_pooled(mass, c_.topk_ratio) : sparsed_select(mass, c_.topk_ratio);
  }

  SessionConfig c_;
  int64_t warm_;
  int64_t last_record_ = -1;
  std::optional<BlockMask> pattern_;
  int64_t dense_heads_ = 0;
  int64_t block_begin_ = -1, block_end_ = -1;
  bool block_moved_ = false;
  int64_t checks_ = 0;  // drift checks so far: rotates the sampled blocks
  std::vector<float> lse_, sample_q_;
};

// UniSparse and window+sink: dense warmup, then a pattern selected every step.
class SelectedSteps final : public StepPolicy {
 public:
  explicit SelectedSteps(const SessionConfig& c) : c_(c), warm_(warmup_steps_for(c)) {}

  StepReport run(int64_t s, const StepTensors& t) override {
    StepReport r;
    if (s < warm_) {
      step_dense(t, c_.kernel);
      selected_.reset();
      return r;
    }
    const auto t0 = Clock::now();
    selected_ = c_.policy == Policy::unisparse ? unisparse_select(t.shape, t.q, t.k, c_.unisparse, c_.kernel)
                                               : window_sink_mask(t.shape, c_.window);
    r.select_ms = ms_since(t0);
    step_sparse(t, *selected_, c_.kernel);
    r.path = StepPath::sparse_selected;
    r.density = selected_->density();
    return r;
  }
  const BlockMask* last_mask() const override { return selected_ ? &*selected_ : nullptr; }

 private:
  SessionConfig c_;
  int64_t warm_;
  std::optional<BlockMask> selected_;
};

// DPad: the dropped suffix tokens leave the step as queries and as keys; the
// inner policy runs over the kept tokens, whose rows are scattered back
// (dropped rows zero). Plain DPad runs its warmup dense over all tokens.
class DpadSteps final : public StepPolicy {
 public:
  DpadSteps(const SessionConfig& c, std::unique_ptr<StepPolicy> inner)
      : c_(c), warm_(c.policy == Policy::dpad ? warmup_steps_for(c) : 0),
        inner_(std::move(inner)) {}

  StepReport run(int64_t s, const StepTensors& t) override {
    if (dirty_) {
      kept_ = dpad_kept_tokens(t.shape.kv_len, c_.dpad);
      dirty_ = false;
      inner_->reset_pattern();  // the compacted keys changed: re-record
    }
    if (s < warm_) {
      dense_attention(t.shape, t.q, t.k, t.v, t.out, c_.kernel);
      return {};
    }
    const int threads = resolve_threads(c_.kernel);
    if (kept_.empty()) {  // DPad kept nothing: no token takes part in this step
      scatter_tokens(InputView{}, kept_, t.out, threads);
      StepReport r;
      r.path = StepPath::gathered;
      r.density = 0;
      return r;
    }
    StepTensors c;
    c.shape = t.shape;
    c.shape.q_len = c.shape.kv_len = static_cast<int64_t>(kept_.size());
    c.q = gather_tokens(t.q, kept_, threads, qc_);
    c.k = gather_tokens(t.k, kept_, threads, kc_);
    c.v = gather_tokens(t.v, kept_, threads, vc_);
    oc_.resize(static_cast<size_t>(c.shape.heads * c.shape.q_len * c.shape.head_dim));  // f32, or bf16 in half
    c.out = OutputView(oc_.data(), t.out.dtype, c.shape.heads, c.shape.q_len, c.shape.head_dim,
                       c.shape.q_len * c.shape.head_dim, c.shape.head_dim);
    StepReport r = inner_->run(s, c);
    scatter_tokens(c.out, kept_, t.out, threads);
    if (c_.policy == Policy::dpad) r.path = StepPath::gathered;
    const double share = static_cast<double>(c.shape.kv_len) / static_cast<double>(t.shape.kv_len);
    r.density *= share * share;
    return r;
  }
  const BlockMask* cached_pattern() const override { return inner_->cached_pattern(); }
  const std::vector<int32_t>& dpad_kept() const override { return kept_; }
  void set_decoding_block(int64_t begin, int64_t end) override { inner_->set_decoding_block(begin, end); }
  void set_dpad(const DpadParams& p) override {
    c_.dpad = p;
    dirty_ = true;
  }

 private:
  SessionConfig c_;
  int64_t warm_;
  std::unique_ptr<StepPolicy> inner_;
  std::vector<int32_t> kept_;
  bool dirty_ = true;
  std::vector<float> qc_, kc_, vc_, oc_;
};

}  // namespace

const std::vector<int32_t>& StepPolicy::dpad_kept() const { return kNoTokens; }

std::unique_ptr<StepPolicy> make_step_policy(const SessionConfig& c) {
  switch (c.policy) {
    case Policy::dense: return std::make_unique<DenseSteps>(c.kernel);
    case Policy::sparsed: return std::make_unique<SparsedSteps>(c);
    case Policy::unisparse:
    case Policy::window: return std::make_unique<SelectedSteps>(c);
    case Policy::dpad: return std::make_unique<DpadSteps>(c, std::make_unique<DenseSteps>(c.kernel));
    case Policy::dpad_sparsed: return std::make_unique<DpadSteps>(c, std::make_unique<SparsedSteps>(c));
  }
  throw_bad_argument("DiffusionAttention", "policy", std::to_string(static_cast<int>(c.policy)), "not a Policy value");
}

}  // namespace spattn::detail
