// tune_layers: one setting per layer of a captured trace (see tune.hpp).
#include <algorithm>
#include <cmath>
#include <string>

#include "spattn/error.hpp"
#include "spattn/lab/tune.hpp"

namespace spattn {
namespace {

// The bound; a run with no sparse step on a mask (recall NaN) keeps all the mass.
bool meets(const EvalResult& r, const LayerTuneOptions& o) {
  const bool recall = o.min_mean_recall <= 0 || std::isnan(r.mean_recall) || r.mean_recall >= o.min_mean_recall;
  return r.mean_cosine >= o.min_mean_cosine && r.min_cosine >= o.min_step_cosine && recall;
}

SessionConfig layer_config(const LayerTuneOptions& o, int64_t steps, double tau) {
  SessionConfig c;
  c.policy = Policy::sparsed;
  c.total_steps = steps;
  c.warmup_fraction = o.warmup_fraction;
  c.block_size = o.block_size;
  c.kernel = o.kernel;
  c.drift_check_every = o.drift_check_every;
  c.cache = o.cache;
  MassBudget b;
  b.tau = tau;
  b.dense_head_share = o.dense_head_share;
  c.mass_budget = b;
  return c;
}

ProfileEntry entry_for(const LayerTuneOptions& o, const WorkloadSource& w, int64_t steps, const LayerChoice& c) {
  const AttentionShape s = w.shape();
  ProfileEntry e;
  e.shape = TunedShape{s.heads, s.kv_heads, s.kv_len, s.head_dim, steps};
  e.shape.dtype = dtype_name(o.dtype);
  e.shape.cache = cache_mode_name(o.cache);
  e.workload = w.describe();
  e.policy = c.dense ? "dense" : "sparsed";
  e.layer = c.layer;
  e.min_mean_cosine = o.min_mean_cosine;
  e.min_step_cosine = o.min_step_cosine;
  e.block_size = o.block_size;
  e.warmup_fraction = o.warmup_fraction;
  e.q_tile_rows = resolve_tiles(o.kernel, o.dtype).q_tile_rows;  // 0 in the options: the ISA's own, written out
  e.threads = o.kernel.threads;
  if (!c.dense) {
    e.mass_tau = c.tau;
    e.dense_head_share = o.dense_head_share;
    e.drift_check_every = o.drift_check_every;
  }
  set_measured(e, c.result);
  return e;
}

// The cheapest tau meeting the bound, if it beats dense; else dense.
LayerChoice tune_one_layer(const LayerTuneOptions& o, const WorkloadSource& w, int64_t steps, int layer) {
  LayerChoice c;
  c.layer = layer;
  std::vector<double> taus = o.taus;
  std::sort(taus.begin(), taus.end());
  EvalOptions eo;
  eo.max_steps = steps;
  eo.dtype = o.dtype;
  eo.recall = o.min_mean_recall > 0;  // one more QK pass per step, only when the bound asks for it
  eo.refresh_first_only = o.refresh_first_only;
  for (double tau : taus) {
    if (o.on_progress) o.on_progress("layer " + std::to_string(layer) + ": tau " + std::to_string(tau));
    const EvalResult r = evaluate(w, layer_config(o, steps, tau), eo);
    c.tried.emplace_back(tau, r);
    if (!meets(r, o)) continue;
    if (r.sparse_total_ms < r.dense_total_ms) {
      c.tau = tau;
      c.result = r;
      return c;
    }
    break;  // accurate but not faster: a larger tau keeps more blocks and is slower still
  }
  c.dense = true;
  SessionConfig d = layer_config(o, steps, 1.0);
  d.policy = Policy::dense;
  d.mass_budget.reset();
  c.result = evaluate(w, d, eo);
  return c;
}

}  // namespace

LayerTuneResult tune_layers(const LayerTuneOptions& o) {
  if (o.npy_dir.empty()) throw_bad_argument("tune_layers", "npy_dir", "\"\"", "must name a trace folder");
  if (o.taus.empty()) throw_bad_argument("tune_layers", "taus", "{}", "must not be empty");
  for (double t : o.taus)
    if (!(t > 0 && t <= 1)) throw_bad_argument("tune_layers", "taus", std::to_string(t), "must be in (0, 1]");
  if (!(o.min_mean_recall >= 0 && o.min_mean_recall <= 1))
    throw_bad_argument("tune_layers", "min_mean_recall", std::to_string(o.min_mean_recall), "must be in [0, 1]");
  if (o.drift_check_every < 0)
    throw_bad_argument("tune_layers", "drift_check_every", std::to_string(o.drift_check_every), "must be >= 0");
  std::vector<int> layers = o.layers.empty() ? list_npy_layers(o.npy_dir) : o.layers;
  if (layers.empty()) layers.push_back(-1);  // a trace without layer folders: one layer
  LayerTuneResult res;
  for (int layer : layers) {
    WorkloadSpec spec;
    spec.npy_dir = o.npy_dir;
    spec.layer = layer;
    spec.npy_prompt_len = o.npy_prompt_len;
    spec.npy_steps_per_block = o.npy_steps_per_block;
    spec.synthetic.decode_block = o.decode_block;
    const WorkloadSource w(spec);
    const int64_t steps = o.steps > 0 ? std::min(o.steps, w.steps()) : w.steps();
    LayerChoice c = tune_one_layer(o, w, steps, layer);
    res.sparse_total_ms += c.result.sparse_total_ms;
    res.dense_total_ms += c.result.dense_total_ms;
    res.entries.push_back(entry_for(o, w, steps, c));
    res.layers.push_back(std::move(c));
  }
  return res;
}

}  // namespace spattn
