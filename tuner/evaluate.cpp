// The evaluation loop shared by spattn-eval and the tuner's objective.
#include "spattn/lab/evaluate.hpp"

#include <algorithm>
#include <chrono>
#include <cctype>
#include <cmath>
#include <string>
#include <limits>

#include "spattn/error.hpp"

namespace spattn {

WorkloadSource::WorkloadSource(WorkloadSpec spec) : spec_(std::move(spec)) {
  if (spec_.npy_dir.empty()) {
    synthetic_.emplace(spec_.synthetic);
    shape_ = synthetic_->shape();
    return;
  }
  npy_steps_ = list_npy_steps(spec_.npy_dir);
  if (npy_steps_.empty())
    throw_bad_argument("WorkloadSource", "npy_dir", spec_.npy_dir, "holds no step folders with q/k/v.npy");
  shape_ = load_npy_step(npy_steps_.front(), spec_.layer).shape;
}

int64_t WorkloadSource::steps() const {
  return spec_.npy_dir.empty() ? spec_.synthetic.steps : static_cast<int64_t>(npy_steps_.size());
}

void WorkloadSource::step(int64_t s, std::vector<float>& q, std::vector<float>& k,
                          std::vector<float>& v) const {
  if (spec_.npy_dir.empty()) {
    synthetic_->step(s, q, k, v);
    return;
  }
  NpyStep st = load_npy_step(npy_steps_.at(static_cast<size_t>(s)), spec_.layer);
  if (st.shape.heads != shape_.heads || st.shape.kv_len != shape_.kv_len ||
      st.shape.head_dim != shape_.head_dim)
    throw_bad_argument("WorkloadSource", "step folder", npy_steps_[s], "shape differs from the first step");
  q = std::move(st.q);
  k = std::move(st.k);
  v = std::move(st.v);
}

namespace {

// NNNN of a folder named like "step0012" (its trailing digits), or -1.
int64_t trailing_step_number(const std::string& path) {
  size_t end = path.size();
  while (end > 0 && path[end - 1] == '/') --end;
  size_t begin = end;
  while (begin > 0 && std::isdigit(static_cast<unsigned char>(path[begin - 1]))) --begin;
  if (begin == end || end - begin > 12) return -1;
  return std::stoll(path.substr(begin, end - begin));
}

}  // namespace

std::pair<int64_t, int64_t> WorkloadSource::decoding_block(int64_t s) const {
  if (synthetic_) return synthetic_->decoding_block(s);
  const int64_t B = spec_.synthetic.decode_block, T = spec_.npy_steps_per_block;
  if (T <= 0 || B <= 0) return {0, 0};
  const int64_t n = trailing_step_number(npy_steps_.at(static_cast<size_t>(s)));
  if (n < 0) throw_bad_argument("WorkloadSource", "step folder", npy_steps_[static_cast<size_t>(s)],
                                "has no step number in its name (needed for the decoding blocks)");
  const int64_t begin = spec_.npy_prompt_len + (n / T) * B;
  if (begin >= shape_.kv_len)
    throw_bad_argument("WorkloadSource", "npy decoding block", std::to_string(begin),
                       "starts past the sequence (" + std::to_string(shape_.kv_len) + " tokens)");
  return {begin, std::min(shape_.kv_len, begin + B)};
}

std::string WorkloadSource::describe() const {
  return spec_.npy_dir.empty() ? "synthetic" : "npy:" + spec_.npy_dir;
}

namespace {

// The row-wise mean cosine of each head on its own.
std::vector<double> head_cosines(ConstTensorView out, const std::vector<double>& ref) {
  std::vector<double> c(static_cast<size_t>(out.heads));
  const size_t per_head = static_cast<size_t>(out.tokens * out.head_dim);
  for (int64_t h = 0; h < out.heads; ++h) {
    const ConstTensorView one{out.row(h, 0), 1, out.tokens, out.head_dim, out.head_stride, out.token_stride};
    const std::vector<double> r(ref.begin() + static_cast<std::ptrdiff_t>(h * per_head),
                                ref.begin() + static_cast<std::ptrdiff_t>((h + 1) * per_head));
    c[static_cast<size_t>(h)] = cosine_similarity(one, r);
  }
  return c;
}

// mask_recall per head: the mean over its query blocks of the mass kept.
std::vector<double> head_recalls(const BlockMass& mass, const BlockMask& mask) {
  std::vector<double> r(static_cast<size_t>(mass.heads), 0.0);
  for (int64_t h = 0; h < mass.heads; ++h) {
    for (int64_t qb = 0; qb < mass.q_blocks(); ++qb)
      for (int32_t kb : mask.row(h, qb)) r[static_cast<size_t>(h)] += mass.row(h, qb)[kb];
    r[static_cast<size_t>(h)] /= static_cast<double>(mass.q_blocks());
  }
  return r;
}

}  // namespace

void summarize_steps(EvalResult& res) {
  const double n = static_cast<double>(res.steps.size());
  res.mean_cosine = res.mean_rel_l2 = res.sparse_total_ms = res.dense_total_ms = 0.0;
  res.min_cosine = 1.0;
  double density_sum = 0.0, recall_sum = 0.0;
  int64_t recall_n = 0;
  for (const StepEval& e : res.steps) {
    res.mean_cosine += e.cosine / n;
    // A NaN step makes the minimum NaN (std::min would skip it), so that it
    // shows as NaN and fails every bound.
    res.min_cosine = std::isnan(e.cosine) || std::isnan(res.min_cosine) ? std::numeric_limits<double>::quiet_NaN()
                                                                      : std::min(res.min_cosine, e.cosine);
    density_sum += e.density;
    res.mean_rel_l2 += e.rel_l2 / n;
    res.sparse_total_ms += e.ms;
    res.dense_total_ms += e.dense_ms;
    // The recall mean covers the steps that ran on a block mask; dense steps are 1 by definition.
    if (!std::isnan(e.recall) && e.path != StepPath::dense && e.path != StepPath::dense_record) {
      recall_sum += e.recall;
      ++recall_n;
    }
  }
  // Summed, then divided once and clamped: densities are in [0, 1], and a
  // mean of 1s must be exactly 1 (n additions of 1/n gave 1.0000000000000002,
  // which the profile writer rightly refused).
  res.mean_density = n > 0 ? std::clamp(density_sum / n, 0.0, 1.0) : std::numeric_limits<double>::quiet_NaN();
  res.mean_recall = recall_n > 0 ? recall_sum / static_cast<double>(recall_n) : std::numeric_limits<double>::quiet_NaN();
  res.speedup_vs_dense = res.sparse_total_ms > 0 ? res.dense_total_ms / res.sparse_total_ms : 0.0;
  int64_t records = 0;
  double drift_ms = 0.0;
  res.drift_checks = 0;
  for (const StepEval& e : res.steps) {
    records += e.path == StepPath::dense_record;
    res.drift_checks += !std::isnan(e.drift_recall);
    drift_ms += e.drift_ms;
  }
  res.rerecords = std::max<int64_t>(0, records - 1);
  res.drift_share_of_dense_step = res.dense_total_ms > 0 ? drift_ms / (res.dense_total_ms / n) : 0.0;
}

namespace {

// What the session's report says of a step, into its evaluation.
void copy_report(StepEval& e, const StepReport& r) {
  e.path = r.path;
  e.ms = r.ms;
  e.select_ms = r.select_ms;
  e.density = r.density;
  e.dense_heads = r.dense_heads;
  e.drift_recall = r.drift_recall;
  e.drift_ms = r.drift_ms;
  e.query_rows = r.query_rows;
}

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

// A workload tensor as the session gets it: fp32 as is, else rounded to
// dtype into narrow (which must outlive the view).
InputView typed_view(std::vector<float>& t, std::vector<uint16_t>& narrow, DType dtype, int64_t heads, int64_t n,
                     int64_t d) {
  if (dtype == DType::fp32) return TensorView::heads_major(t.data(), heads, n, d);
  narrow.resize(t.size());
  for (size_t i = 0; i < t.size(); ++i) narrow[i] = dtype == DType::bf16 ? to_bf16(t[i]).bits : to_fp16(t[i]).bits;
  return InputView(narrow.data(), dtype, heads, n, d, n * d, d);
}

// Rows `rows` of a heads-major [heads][n][d] tensor.
std::vector<float> pick_rows(const std::vector<float>& t, int64_t heads, int64_t n, int64_t d,
                             const std::vector<int32_t>& rows) {
  std::vector<float> out;
  out.reserve(static_cast<size_t>(heads) * rows.size() * static_cast<size_t>(d));
  for (int64_t h = 0; h < heads; ++h)
    for (int32_t r : rows) {
      const auto* src = t.data() + (h * n + r) * d;
      out.insert(out.end(), src, src + d);
    }
  return out;
}

// The cache modes' loop (see EvalOptions::refresh_first_only).
class CachedEval {
 public:
  CachedEval(const WorkloadSource& w, const SessionConfig& c, const EvalOptions& o)
      : w_(w), shape_(w.shape()), cfg_(c), opts_(o), session_(shape_, c),
        dense_cache_(shape_.kv_heads, shape_.kv_len, shape_.head_dim, o.dtype, c.block_size, c.kernel) {}

  StepEval run(int64_t s) {
    w_.step(s, q_, k_, v_);
    const auto block = w_.decoding_block(s);
    if (block.second > block.first) session_.set_decoding_block(block.first, block.second);
    const bool full = s == 0 || (!opts_.refresh_first_only && block != last_block_);
    last_block_ = block;
    return full ? full_step(s) : cached_step(s, block);
  }

 private:
  StepEval full_step(int64_t s) {
    const int64_t H = shape_.heads, KH = shape_.kv_heads, N = shape_.kv_len, d = shape_.head_dim;
    const InputView qv = typed_view(q_, q16_, opts_.dtype, H, N, d), kv = typed_view(k_, k16_, opts_.dtype, KH, N, d),
                    vv = typed_view(v_, v16_, opts_.dtype, KH, N, d);
    std::vector<float> dense(static_cast<size_t>(H * N * d)), out(dense.size());
    StepEval e;
    e.step = s;
    const auto t0 = Clock::now();
    dense_attention(shape_, qv, kv, vv, TensorView::heads_major(dense.data(), H, N, d), cfg_.kernel);
    dense_cache_.write(0, kv, vv, cfg_.kernel);  // the baseline's refresh
    e.dense_ms = ms_since(t0);
    fill(e, session_.step(qv, kv, vv, TensorView::heads_major(out.data(), H, N, d)), out, dense, N);
    return e;
  }

  StepEval cached_step(int64_t s, std::pair<int64_t, int64_t> block) {
    const int64_t H = shape_.heads, KH = shape_.kv_heads, N = shape_.kv_len, d = shape_.head_dim;
    if (cfg_.cache == CacheMode::rows) {  // every other row of the block: its not-yet-decoded rows
      std::vector<int32_t> rows;
      for (int64_t t = block.first; t < block.second; t += 2) rows.push_back(static_cast<int32_t>(t));
      session_.set_query_rows(rows);
    }
    const std::vector<int32_t> rows = session_.cached_rows();
    if (rows.empty())
      throw_bad_argument("evaluate", "cache", cache_mode_name(cfg_.cache),
                         "cached steps need a block-wise decoding workload (its decoding blocks)");
    const auto R = static_cast<int64_t>(rows.size());
    std::vector<float> qr = pick_rows(q_, H, N, d, rows), kr = pick_rows(k_, KH, N, d, rows),
                       vr = pick_rows(v_, KH, N, d, rows);
    std::vector<uint16_t> q16, k16, v16;
    const InputView qv = typed_view(qr, q16, opts_.dtype, H, R, d), kv = typed_view(kr, k16, opts_.dtype, KH, R, d),
                    vv = typed_view(vr, v16, opts_.dtype, KH, R, d);
    AttentionShape rs = shape_;
    rs.q_len = R;
    CachedQueries cq;
    cq.rows = rows;
    std::vector<float> dense(static_cast<size_t>(H * R * d)), out(dense.size());
    StepEval e;
    e.step = s;
    const auto t0 = Clock::now();
    dense_cache_.write_rows(rows, kv, vv, cfg_.kernel);
    cached_attention(rs, qv, dense_cache_, TensorView::heads_major(dense.data(), H, R, d), cq, cfg_.kernel);
    e.dense_ms = ms_since(t0);
    fill(e, session_.cached_step(qv, kv, vv, TensorView::heads_major(out.data(), H, R, d)), out, dense, R);
    return e;
  }

  // The report's fields and the accuracy of out against dense over n rows.
  void fill(StepEval& e, const StepReport& r, const std::vector<float>& out, const std::vector<float>& dense,
            int64_t n) const {
    copy_report(e, r);
    const std::vector<double> ref(dense.begin(), dense.end());
    const ConstTensorView ov = ConstTensorView::heads_major(out.data(), shape_.heads, n, shape_.head_dim);
    e.cosine = cosine_similarity(ov, ref);
    e.rel_l2 = relative_l2_error(ov, ref);
    e.head_cosine = head_cosines(ov, ref);
    e.recall = r.path == StepPath::dense || r.path == StepPath::dense_record ? 1.0
                                                                             : std::numeric_limits<double>::quiet_NaN();
  }

  const WorkloadSource& w_;
  AttentionShape shape_;
  SessionConfig cfg_;
  EvalOptions opts_;
  DiffusionAttention session_;
  KVCache dense_cache_;  // the dense baseline's cache: the same K/V as the session's
  std::pair<int64_t, int64_t> last_block_{-1, -1};
  std::vector<float> q_, k_, v_;
  std::vector<uint16_t> q16_, k16_, v16_;
};

}  // namespace

EvalResult evaluate(const WorkloadSource& workload, SessionConfig config, const EvalOptions& opts) {
  using Clock = std::chrono::steady_clock;
  const AttentionShape shape = workload.shape();
  const int64_t steps = opts.max_steps > 0 ? std::min(opts.max_steps, workload.steps()) : workload.steps();
  config.total_steps = steps;
  if (config.cache != CacheMode::none) {
    CachedEval cached(workload, config, opts);
    EvalResult res;
    for (int64_t s = 0; s < steps; ++s) {
      res.steps.push_back(cached.run(s));
      if (opts.on_step) opts.on_step(res.steps.back());
    }
    summarize_steps(res);
    return res;
  }
  DiffusionAttention session(shape, config);
  const int64_t d = shape.head_dim;
  std::vector<float> q, k, v, dense(static_cast<size_t>(shape.heads * shape.q_len * d)),
      out(dense.size()), lse(static_cast<size_t>(shape.heads * shape.q_len));
  std::vector<double> ref(dense.size());
  auto view = [&](std::vector<float>& t, int64_t h, int64_t n) { return TensorView::heads_major(t.data(), h, n, d); };
  EvalResult res;
  std::vector<uint16_t> q16, k16, v16;
  for (int64_t s = 0; s < steps; ++s) {
    workload.step(s, q, k, v);
    const InputView qv = typed_view(q, q16, opts.dtype, shape.heads, shape.q_len, d),
                    kv = typed_view(k, k16, opts.dtype, shape.kv_heads, shape.kv_len, d),
                    vv = typed_view(v, v16, opts.dtype, shape.kv_heads, shape.kv_len, d);
    const auto t0 = Clock::now();
    dense_attention_with_lse(shape, qv, kv, vv, view(dense, shape.heads, shape.q_len), lse.data(), config.kernel);
    StepEval e;
    e.step = s;
    e.dense_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    const auto [start, end] = workload.decoding_block(s);
    if (end > start) session.set_decoding_block(start, end);  // the session re-records on a new block if asked
    if (config.policy == Policy::dpad || config.policy == Policy::dpad_sparsed) {
      // Block-wise decoding: DPad's prefix is everything before the block being
      // decoded, its current block that block, the suffix the rest.
      if (end > start && (session.config().dpad.block_start != start || session.config().dpad.block_end != end)) {
        DpadParams p = session.config().dpad;
        p.prefix_len = p.block_start = start;
        p.block_end = end;
        session.set_dpad(p);
      }
    }
    const StepReport r = session.step(qv, kv, vv, view(out, shape.heads, shape.q_len));
    copy_report(e, r);
    const std::vector<int32_t>& kept = session.dpad_kept();
    if (r.path == StepPath::gathered || (config.policy == Policy::dpad_sparsed && !kept.empty())) {
      // DPad drops the far suffix from the step: only the kept tokens' rows
      // are outputs of the step, so accuracy is measured on those rows.
      const int64_t n = static_cast<int64_t>(kept.size());
      std::vector<float> oc(static_cast<size_t>(shape.heads * n * d));
      std::vector<double> rc(oc.size());
      for (int64_t h = 0; h < shape.heads; ++h)
        for (int64_t i = 0; i < n; ++i)
          for (int64_t c = 0; c < d; ++c) {
            const size_t src = static_cast<size_t>((h * shape.q_len + kept[i]) * d + c);
            oc[static_cast<size_t>((h * n + i) * d + c)] = out[src];
            rc[static_cast<size_t>((h * n + i) * d + c)] = dense[src];
          }
      const ConstTensorView cv = TensorView::heads_major(oc.data(), shape.heads, n, d);
      e.cosine = n > 0 ? cosine_similarity(cv, rc) : 1.0;
      e.rel_l2 = n > 0 ? relative_l2_error(cv, rc) : 0.0;
    } else {
      std::copy(dense.begin(), dense.end(), ref.begin());
      const ConstTensorView ov = view(out, shape.heads, shape.q_len);
      e.cosine = cosine_similarity(ov, ref);
      e.rel_l2 = relative_l2_error(ov, ref);
      e.head_cosine = head_cosines(ov, ref);
    }
    e.recall = std::numeric_limits<double>::quiet_NaN();
    if (r.path == StepPath::dense || r.path == StepPath::dense_record) {
      e.recall = 1.0;
    } else if (const BlockMask* m = session.last_mask(); m != nullptr && opts.recall) {
      const BlockMass mass =
          block_attention_mass_from_lse(shape, qv, kv, lse.data(), m->q_block, m->k_block, config.kernel);
      e.recall = mask_recall(mass, *m);
      e.head_recall = head_recalls(mass, *m);
    }
    res.steps.push_back(e);
    if (opts.on_step) opts.on_step(e);
  }
  summarize_steps(res);
  return res;
}

}  // namespace spattn
