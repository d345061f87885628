// The C API (include/spattn/spattn.h) over the C++ API. Every entry point runs
// its body through guarded(): it clears the thread-local message, and turns
// every exception into a status plus a message, so none crosses into C.
#include "spattn/config.h"
#include "spattn/spattn.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "spattn/attention.hpp"
#include "spattn/error.hpp"
#include "spattn/kv_cache.hpp"
#include "spattn/session.hpp"
#if SPATTN_HAS_YAML
#include "spattn/profile.hpp"
#endif

struct spattn_session {
  spattn::DiffusionAttention impl;
};

struct spattn_kv_cache {
  spattn::KVCache impl;
};

#if SPATTN_HAS_YAML
struct spattn_profile {
  spattn::Profile impl;
};
#endif

namespace {

// A fixed buffer: storing a message must not allocate (it runs in catch
// handlers, where a second bad_alloc would have nowhere to go).
thread_local char g_last_error[1024] = "";

void set_error(const char* msg) noexcept {
  std::snprintf(g_last_error, sizeof g_last_error, "%s", msg);
}

// An error decided by the C layer itself, with its status.
struct CapiError {
  spattn_status status;
  std::string message;
};

[[noreturn]] void fail(spattn_status status, const std::string& message) {
  throw CapiError{status, "spattn: " + message};
}

void require_non_null(const char* where, const char* arg, const void* p) {
  if (p == nullptr)
    fail(SPATTN_ERROR_INVALID_ARGUMENT,
         std::string(where) + ": argument '" + arg + "' = NULL: must not be NULL");
}

// io: spattn::Error from this call means a bad file, not a bad argument.
template <class F>
spattn_status guarded(F&& body, bool io = false) noexcept {
  g_last_error[0] = '\0';
  try {
    return body();
  } catch (const CapiError& e) {
    set_error(e.message.c_str());
    return e.status;
  } catch (const spattn::OutOfMemory& e) {
    set_error(e.what());
    return SPATTN_ERROR_OUT_OF_MEMORY;
  } catch (const spattn::Error& e) {
    set_error(e.what());
    return io ? SPATTN_ERROR_IO : SPATTN_ERROR_INVALID_ARGUMENT;
  } catch (const std::bad_alloc&) {
    set_error("spattn: out of memory");
    return SPATTN_ERROR_OUT_OF_MEMORY;
  } catch (const std::length_error&) {  // a vector larger than max_size(): memory, too
    set_error("spattn: out of memory (allocation too large)");
    return SPATTN_ERROR_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    char buf[sizeof g_last_error];
    std::snprintf(buf, sizeof buf, "spattn: internal error: %s", e.what());
    set_error(buf);
    return SPATTN_ERROR_INTERNAL;
  } catch (...) {
    set_error("spattn: internal error: unknown exception");
    return SPATTN_ERROR_INTERNAL;
  }
}

spattn::AttentionShape to_shape(const char* where, const spattn_shape* s) {
  require_non_null(where, "shape", s);
  spattn::AttentionShape shape{s->heads, s->kv_heads, s->q_len, s->kv_len, s->head_dim, s->scale};
  // q_offset is read only with causal: a zero-initialized struct is bidirectional.
  shape.causal = s->causal != 0;
  if (shape.causal) shape.q_offset = s->q_offset;
  try {
    shape.validate();
  } catch (const spattn::Error& e) {
    throw spattn::Error(std::string(e.what()) + " (in " + where + ")");
  }
  return shape;
}

struct Views {
  spattn::InputView q, k, v;
  spattn::OutputView out;
};

// An element type from C (any int may arrive): read through a pointer as an
// int, since loading an out-of-range value as the enum is undefined in C++.
spattn::DType to_dtype(const char* where, const char* arg, const spattn_dtype* t) {
  int v = 0;
  std::memcpy(&v, t, sizeof v);
  if (v < SPATTN_FP32 || v > SPATTN_FP16)
    fail(SPATTN_ERROR_INVALID_ARGUMENT,
         std::string(where) + ": argument '" + arg + "' = " + std::to_string(v) + ": not a spattn_dtype");
  return static_cast<spattn::DType>(v);
}

constexpr spattn_dtypes kAllF32{SPATTN_FP32, SPATTN_FP32, SPATTN_FP32};

// Heads-major views over the caller's arrays of the given types, after the
// NULL checks.
Views to_views(const char* where, const spattn::AttentionShape& s, spattn_dtypes types, const void* q,
               const void* k, const void* v, void* out) {
  require_non_null(where, "q", q);
  require_non_null(where, "k", k);
  require_non_null(where, "v", v);
  require_non_null(where, "out", out);
  const spattn::DType qt = to_dtype(where, "types.q", &types.q), kt = to_dtype(where, "types.kv", &types.kv);
  const spattn::DType ot = to_dtype(where, "types.out", &types.out);
  const int64_t d = s.head_dim;
  Views w{spattn::InputView(q, qt, s.heads, s.q_len, d, s.q_len * d, d),
          spattn::InputView(k, kt, s.kv_heads, s.kv_len, d, s.kv_len * d, d),
          spattn::InputView(v, kt, s.kv_heads, s.kv_len, d, s.kv_len * d, d),
          spattn::OutputView(out, ot, s.heads, s.q_len, d, s.q_len * d, d)};
  // Overlap of out with q, k or v, and out's type, are checked by the kernels' shared view check.
  return w;
}

spattn_status dense(const char* where, const spattn_shape* shape, spattn_dtypes types, const void* q,
                    const void* k, const void* v, void* out, int threads, bool check_finite) {
  return guarded([&] {
    const spattn::AttentionShape s = to_shape(where, shape);
    const Views w = to_views(where, s, types, q, k, v, out);
    spattn::KernelOptions opts;
    opts.threads = threads;
    opts.check_finite = check_finite;
    spattn::dense_attention(s, w.q, w.k, w.v, w.out, opts);
    return SPATTN_OK;
  });
}

static_assert(sizeof(spattn_policy) == sizeof(int) && sizeof(spattn_step_path) == sizeof(int),
              "C enums are read as int");

spattn::Policy read_policy(const char* where, const spattn_session_config* c) {
  require_non_null(where, "config", c);
  // Read the enum's bits as an int: a value outside the enum is the caller's
  // bug to report, not undefined behaviour to trip over.
  int policy = 0;
  std::memcpy(&policy, &c->policy, sizeof policy);
  if (policy < SPATTN_POLICY_DENSE || policy > SPATTN_POLICY_WINDOW)
    fail(SPATTN_ERROR_INVALID_ARGUMENT, std::string(where) + ": argument 'config->policy' = " +
                                            std::to_string(policy) + ": not a spattn_policy value");
  return static_cast<spattn::Policy>(policy);
}

spattn::SessionConfig to_config(const char* where, const spattn_session_config* c) {
  const spattn::Policy policy = read_policy(where, c);
  // Fields the C++ config nests (kernel.q_tile_rows, kernel.threads) are checked
  // here, so the message names what the C caller set.
  if (c->q_tile_rows != 0) spattn::check_block_size(where, "config->q_tile_rows", c->q_tile_rows);
  spattn::check_thread_count(where, "config->threads", c->threads);
  spattn::SessionConfig cfg;
  cfg.policy = policy;
  cfg.total_steps = c->total_steps;
  cfg.warmup_fraction = c->warmup_fraction;
  cfg.refresh_every = c->refresh_every;
  cfg.block_size = c->block_size;
  cfg.topk_ratio = c->topk_ratio;
  cfg.pooled_budget = c->pooled_budget != 0;
  if (c->mass_tau != 0.0) {  // 0: off; anything else is checked by the session
    spattn::MassBudget b;
    b.tau = c->mass_tau;
    b.max_share = c->max_block_share;
    b.dense_head_share = c->dense_head_share;
    cfg.mass_budget = b;
  }
  cfg.record_on_new_block = c->record_on_new_block != 0;
  cfg.unisparse.topk_ratio = c->topk_ratio;
  cfg.unisparse.tau = c->unisparse_tau;
  cfg.window.sink_tokens = c->window_sink_tokens;
  cfg.window.window_tokens = c->window_tokens;
  cfg.dpad.prefix_len = c->dpad_prefix_len;
  cfg.dpad.block_start = c->dpad_block_start;
  cfg.dpad.block_end = c->dpad_block_end;
  cfg.dpad.window = c->dpad_window;
  cfg.dpad.sigma = c->dpad_sigma;
  cfg.dpad.seed = c->dpad_seed;
  int rule = 0;  // read as an int: a value outside the enum is reported, not undefined
  std::memcpy(&rule, &c->dpad_rule, sizeof rule);
  if (rule != SPATTN_DPAD_GAUSSIAN && rule != SPATTN_DPAD_DENSE_WINDOW)
    fail(SPATTN_ERROR_INVALID_ARGUMENT, std::string(where) + ": argument 'config->dpad_rule' = " +
                                            std::to_string(rule) + ": not a spattn_dpad_rule value");
  cfg.dpad.rule = rule == SPATTN_DPAD_GAUSSIAN ? spattn::DpadParams::Rule::gaussian
                                               : spattn::DpadParams::Rule::dense_window;
  cfg.dpad.k_sigma = c->dpad_k_sigma;
  cfg.dpad.scale = c->dpad_scale;
  cfg.paper_select = c->paper_select != 0;
  cfg.paper_prefix_len = c->paper_prefix_len;
  cfg.warmup_steps = c->warmup_steps;
  cfg.drift_check_every = c->drift_check_every;
  cfg.drift_sample_blocks = c->drift_sample_blocks;
  cfg.drift_min_recall = c->drift_min_recall;
  cfg.kernel.q_tile_rows = c->q_tile_rows;
  cfg.kernel.threads = c->threads;
  cfg.kernel.check_finite = c->check_finite != 0;
  if (c->cache < SPATTN_CACHE_NONE || c->cache > SPATTN_CACHE_ROWS)
    fail(SPATTN_ERROR_INVALID_ARGUMENT, std::string(where) + ": argument 'config->cache' = " + std::to_string(c->cache) +
                                            ": not SPATTN_CACHE_NONE, _BLOCK, _DUAL or _ROWS");
  static_assert(SPATTN_CACHE_NONE == static_cast<int>(spattn::CacheMode::none) &&
                    SPATTN_CACHE_BLOCK == static_cast<int>(spattn::CacheMode::block) &&
                    SPATTN_CACHE_DUAL == static_cast<int>(spattn::CacheMode::dual) &&
                    SPATTN_CACHE_ROWS == static_cast<int>(spattn::CacheMode::rows),
                "the C cache modes are CacheMode's values");
  cfg.cache = static_cast<spattn::CacheMode>(c->cache);
  return cfg;
}

}  // namespace

extern "C" {

const char* spattn_status_string(spattn_status status) {
  switch (status) {
    case SPATTN_OK: return "ok";
    case SPATTN_ERROR_INVALID_ARGUMENT: return "invalid argument";
    case SPATTN_ERROR_OUT_OF_MEMORY: return "out of memory";
    case SPATTN_ERROR_IO: return "i/o error (profile file)";
    case SPATTN_ERROR_UNSUPPORTED: return "not built into this library";
    case SPATTN_ERROR_INTERNAL: return "internal error";
    case SPATTN_NO_MATCH: return "no matching profile entry (defaults used)";
  }
  return "unknown status";
}

const char* spattn_last_error(void) { return g_last_error; }

// Enum arguments from C may hold any int: read them as ints (see to_config).
const char* spattn_policy_name(spattn_policy policy) {
  int p = 0;
  std::memcpy(&p, &policy, sizeof p);
  return p >= 0 && p <= SPATTN_POLICY_WINDOW ? spattn::policy_name(static_cast<spattn::Policy>(p))
                                             : "unknown";
}

const char* spattn_step_path_name(spattn_step_path path) {
  int p = 0;
  std::memcpy(&p, &path, sizeof p);
  return p >= 0 && p <= SPATTN_PATH_GATHERED ? spattn::step_path_name(static_cast<spattn::StepPath>(p))
                                             : "unknown";
}

spattn_status spattn_dense_attention(const spattn_shape* shape, const float* q, const float* k,
                                     const float* v, float* out, int threads) {
  return dense("spattn_dense_attention", shape, kAllF32, q, k, v, out, threads, false);
}

spattn_status spattn_dense_attention_typed(const spattn_shape* shape, spattn_dtypes types, const void* q,
                                           const void* k, const void* v, void* out, int threads) {
  return dense("spattn_dense_attention_typed", shape, types, q, k, v, out, threads, false);
}

const char* spattn_dtype_name(spattn_dtype dtype) {
  int t = 0;
  std::memcpy(&t, &dtype, sizeof t);
  return t >= SPATTN_FP32 && t <= SPATTN_FP16 ? spattn::dtype_name(static_cast<spattn::DType>(t)) : "unknown";
}

spattn_status spattn_dense_attention_checked(const spattn_shape* shape, const float* q,
                                             const float* k, const float* v, float* out,
                                             int threads) {
  return dense("spattn_dense_attention_checked", shape, kAllF32, q, k, v, out, threads, true);
}

}  // extern "C": the helpers below return C++ types

namespace {

// A C mask over q_len x kv_len as a validated BlockMask.
spattn::BlockMask to_block_mask(const char* where, const spattn_block_mask* mask, int64_t heads, int64_t q_len,
                                int64_t kv_len) {
  require_non_null(where, "mask", mask);
  auto bad = [&](const char* arg, int64_t value, const std::string& why) {
    fail(SPATTN_ERROR_INVALID_ARGUMENT, std::string(where) + ": argument '" + arg +
                                            "' = " + std::to_string(value) + ": " + why);
  };
  // The row count (how much of row_ptr may be read) follows from these.
  if (mask->heads != heads) bad("mask->heads", mask->heads, "must equal shape->heads " + std::to_string(heads));
  spattn::check_block_size(where, "mask->q_block", mask->q_block);
  spattn::check_block_size(where, "mask->k_block", mask->k_block);
  require_non_null(where, "mask->row_ptr", mask->row_ptr);
  if (mask->nnz < 0) bad("mask->nnz", mask->nnz, "must be >= 0");
  if (mask->nnz > 0) require_non_null(where, "mask->col_idx", mask->col_idx);
  spattn::BlockMask m;
  m.heads = heads;
  m.q_len = q_len;
  m.kv_len = kv_len;
  m.q_block = mask->q_block;
  m.k_block = mask->k_block;
  m.row_ptr.assign(mask->row_ptr, mask->row_ptr + m.rows() + 1);
  if (mask->nnz > 0) m.col_idx.assign(mask->col_idx, mask->col_idx + mask->nnz);
  // BlockMask::validate names 'row_ptr[i]' / 'col_idx[i]': say where from.
  try {
    m.validate();
  } catch (const spattn::Error& e) {
    throw spattn::Error(std::string(e.what()) + " (mask->row_ptr / mask->col_idx, in " + where + ")");
  }
  return m;
}

spattn_status block_sparse(const char* where, const spattn_shape* shape, spattn_dtypes types, const void* q,
                           const void* k, const void* v, const spattn_block_mask* mask, void* out, int threads) {
  return guarded([&] {
    const spattn::AttentionShape s = to_shape(where, shape);
    const Views w = to_views(where, s, types, q, k, v, out);
    const spattn::BlockMask m = to_block_mask(where, mask, s.heads, s.q_len, s.kv_len);
    spattn::KernelOptions opts;
    opts.threads = threads;
    spattn::block_sparse_attention(s, w.q, w.k, w.v, m, w.out, opts);
    return SPATTN_OK;
  });
}

}  // namespace

extern "C" {

spattn_status spattn_block_sparse_attention(const spattn_shape* shape, const float* q, const float* k,
                                            const float* v, const spattn_block_mask* mask, float* out,
                                            int threads) {
  return block_sparse("spattn_block_sparse_attention", shape, kAllF32, q, k, v, mask, out, threads);
}

spattn_status spattn_block_sparse_attention_typed(const spattn_shape* shape, spattn_dtypes types, const void* q,
                                                  const void* k, const void* v, const spattn_block_mask* mask,
                                                  void* out, int threads) {
  return block_sparse("spattn_block_sparse_attention_typed", shape, types, q, k, v, mask, out, threads);
}

spattn_status spattn_session_config_default(spattn_session_config* config) {
  return guarded([&] {
    require_non_null("spattn_session_config_default", "config", config);
    const spattn::SessionConfig d;
    *config = spattn_session_config{};
    config->policy = static_cast<spattn_policy>(d.policy);
    config->total_steps = d.total_steps;
    config->warmup_fraction = d.warmup_fraction;
    config->refresh_every = d.refresh_every;
    config->block_size = d.block_size;
    config->topk_ratio = d.topk_ratio;
    config->pooled_budget = d.pooled_budget ? 1 : 0;
    const spattn::MassBudget b;
    config->mass_tau = 0.0;
    config->max_block_share = b.max_share;
    config->dense_head_share = b.dense_head_share;
    config->record_on_new_block = d.record_on_new_block ? 1 : 0;
    config->unisparse_tau = d.unisparse.tau;
    config->window_sink_tokens = d.window.sink_tokens;
    config->window_tokens = d.window.window_tokens;
    config->dpad_prefix_len = d.dpad.prefix_len;
    config->dpad_block_start = d.dpad.block_start;
    config->dpad_block_end = d.dpad.block_end;
    config->dpad_window = d.dpad.window;
    config->dpad_sigma = d.dpad.sigma;
    config->dpad_seed = d.dpad.seed;
    config->dpad_rule = SPATTN_DPAD_GAUSSIAN;
    config->dpad_k_sigma = d.dpad.k_sigma;
    config->dpad_scale = d.dpad.scale;
    config->paper_select = 0;
    config->paper_prefix_len = d.paper_prefix_len;
    config->warmup_steps = d.warmup_steps;
    config->drift_check_every = d.drift_check_every;
    config->drift_sample_blocks = d.drift_sample_blocks;
    config->drift_min_recall = d.drift_min_recall;
    config->q_tile_rows = d.kernel.q_tile_rows;
    config->threads = d.kernel.threads;
    config->check_finite = d.kernel.check_finite ? 1 : 0;
    config->cache = SPATTN_CACHE_NONE;
    return SPATTN_OK;
  });
}

spattn_status spattn_session_create(const spattn_shape* shape, const spattn_session_config* config,
                                    spattn_session** out) {
  return guarded([&] {
    const char* where = "spattn_session_create";
    require_non_null(where, "out", out);
    *out = nullptr;
    const spattn::AttentionShape s = to_shape(where, shape);
    const spattn::SessionConfig cfg = to_config(where, config);
    *out = new spattn_session{spattn::DiffusionAttention(s, cfg)};
    return SPATTN_OK;
  });
}

namespace {

spattn_status session_step(const char* where, spattn_session* session, spattn_dtypes types, const void* q,
                           const void* k, const void* v, void* out, spattn_step_report* report, bool cached) {
  return guarded([&] {
    require_non_null(where, "session", session);
    spattn::AttentionShape s = session->impl.shape();
    if (cached) s.q_len = s.kv_len = static_cast<int64_t>(session->impl.cached_rows().size());
    const Views w = to_views(where, s, types, q, k, v, out);
    const spattn::StepReport r =
        cached ? session->impl.cached_step(w.q, w.k, w.v, w.out) : session->impl.step(w.q, w.k, w.v, w.out);
    if (report != nullptr)
      *report = spattn_step_report{r.step,    static_cast<spattn_step_path>(r.path), r.ms,        r.select_ms,
                                   r.density, r.dense_heads, r.drift_recall, r.drift_ms, r.query_rows};
    return SPATTN_OK;
  });
}

}  // namespace

spattn_status spattn_session_step(spattn_session* session, const float* q, const float* k, const float* v,
                                  float* out, spattn_step_report* report) {
  return session_step("spattn_session_step", session, kAllF32, q, k, v, out, report, false);
}

spattn_status spattn_session_step_typed(spattn_session* session, spattn_dtypes types, const void* q, const void* k,
                                        const void* v, void* out, spattn_step_report* report) {
  return session_step("spattn_session_step_typed", session, types, q, k, v, out, report, false);
}

spattn_status spattn_session_cached_step(spattn_session* session, spattn_dtypes types, const void* q, const void* k,
                                         const void* v, void* out, spattn_step_report* report) {
  return session_step("spattn_session_cached_step", session, types, q, k, v, out, report, true);
}

spattn_status spattn_session_set_query_rows(spattn_session* session, const int32_t* rows, int64_t count) {
  return guarded([&] {
    const char* where = "spattn_session_set_query_rows";
    require_non_null(where, "session", session);
    if (count < 0)
      fail(SPATTN_ERROR_INVALID_ARGUMENT, std::string(where) + ": argument 'count' = " + std::to_string(count) +
                                              ": must be >= 0");
    if (count > 0) require_non_null(where, "rows", rows);
    session->impl.set_query_rows(std::vector<int32_t>(rows, rows + count));
    return SPATTN_OK;
  });
}

spattn_status spattn_session_cached_rows(const spattn_session* session, int32_t* rows, int64_t capacity,
                                         int64_t* count) {
  return guarded([&] {
    const char* where = "spattn_session_cached_rows";
    require_non_null(where, "session", session);
    require_non_null(where, "count", count);
    const std::vector<int32_t> r = session->impl.cached_rows();
    *count = static_cast<int64_t>(r.size());
    if (capacity > 0) require_non_null(where, "rows", rows);
    std::copy_n(r.begin(), std::min<int64_t>(capacity, *count), rows);
    return SPATTN_OK;
  });
}

spattn_status spattn_session_set_decoding_block(spattn_session* session, int64_t begin, int64_t end) {
  return guarded([&] {
    require_non_null("spattn_session_set_decoding_block", "session", session);
    session->impl.set_decoding_block(begin, end);
    return SPATTN_OK;
  });
}

spattn_status spattn_session_set_dpad_block(spattn_session* session, int64_t prefix_len,
                                            int64_t block_start, int64_t block_end) {
  return guarded([&] {
    require_non_null("spattn_session_set_dpad_block", "session", session);
    spattn::DpadParams p = session->impl.config().dpad;
    p.prefix_len = prefix_len;
    p.block_start = block_start;
    p.block_end = block_end;
    session->impl.set_dpad(p);
    return SPATTN_OK;
  });
}

spattn_status spattn_session_dpad_kept(const spattn_session* session, int32_t* positions, int64_t capacity,
                                       int64_t* count) {
  return guarded([&] {
    const char* where = "spattn_session_dpad_kept";
    require_non_null(where, "session", session);
    require_non_null(where, "count", count);
    if (capacity < 0) spattn::throw_bad_argument(where, "capacity", std::to_string(capacity), "must be >= 0");
    if (capacity > 0) require_non_null(where, "positions", positions);
    const std::vector<int32_t>& kept = session->impl.dpad_kept();
    *count = static_cast<int64_t>(kept.size());
    std::copy_n(kept.begin(), std::min<int64_t>(capacity, *count), positions);
    return SPATTN_OK;
  });
}

spattn_status spattn_sparsed_paper_config(int64_t total_steps, int64_t prefix_len, int64_t seq_len,
                                          spattn_session_config* config) {
  return guarded([&] {
    require_non_null("spattn_sparsed_paper_config", "config", config);
    const spattn::SessionConfig p = spattn::sparsed_paper_config(total_steps, prefix_len, seq_len);
    spattn_session_config_default(config);
    config->policy = SPATTN_POLICY_SPARSED;
    config->total_steps = p.total_steps;
    config->warmup_steps = p.warmup_steps;
    config->block_size = p.block_size;
    config->topk_ratio = p.topk_ratio;
    config->paper_select = 1;
    config->paper_prefix_len = p.paper_prefix_len;
    config->q_tile_rows = p.kernel.q_tile_rows;
    return SPATTN_OK;
  });
}

spattn_status spattn_session_steps_done(const spattn_session* session, int64_t* steps) {
  return guarded([&] {
    require_non_null("spattn_session_steps_done", "session", session);
    require_non_null("spattn_session_steps_done", "steps", steps);
    *steps = session->impl.steps_done();
    return SPATTN_OK;
  });
}

void spattn_session_destroy(spattn_session* session) { delete session; }

#if SPATTN_HAS_YAML

spattn_status spattn_profile_load(const char* path, int strict, spattn_profile** out) {
  const char* where = "spattn_profile_load";
  // Argument checks first, outside the io mapping: a NULL is not a file problem.
  const spattn_status args = guarded([&] {
    require_non_null(where, "out", out);
    *out = nullptr;
    require_non_null(where, "path", path);
    return SPATTN_OK;
  });
  if (args != SPATTN_OK) return args;
  return guarded(
      [&] {
        auto p = std::make_unique<spattn_profile>(
            spattn_profile{spattn::Profile::load_for_machine(path, strict != 0)});
        *out = p.release();
        return SPATTN_OK;
      },
      /*io=*/true);
}

spattn_status spattn_profile_lookup(const spattn_profile* profile, const spattn_shape* shape,
                                    int64_t steps, int lenient, spattn_session_config* config) {
  return guarded([&] {
    const char* where = "spattn_profile_lookup";
    require_non_null(where, "profile", profile);
    const spattn::AttentionShape s = to_shape(where, shape);
    const spattn::Policy policy = read_policy(where, config);
    if (steps <= 0)
      fail(SPATTN_ERROR_INVALID_ARGUMENT,
           std::string(where) + ": argument 'steps' = " + std::to_string(steps) + ": must be positive");
    const spattn::TunedShape key{s.heads, s.kv_heads, s.kv_len, s.head_dim, steps};
    const spattn::ProfileMatch m = profile->impl.match(key, spattn::policy_name(policy));
    const bool use = m.fits || (lenient != 0 && m.entry != nullptr);
    const spattn::ProfileEntry chosen = use ? *m.entry : spattn::Profile::default_entry(key);
    config->block_size = chosen.block_size;
    config->topk_ratio = chosen.topk_ratio;
    config->warmup_fraction = chosen.warmup_fraction;
    config->q_tile_rows = chosen.q_tile_rows;
    config->threads = chosen.threads;
    config->pooled_budget = chosen.pooled_budget ? 1 : 0;
    config->mass_tau = chosen.mass_tau;
    config->max_block_share = chosen.max_block_share;
    config->dense_head_share = chosen.dense_head_share;
    if (!m.fits) {
      const std::string msg = "spattn: " + std::string(where) + ": " + m.why +
                              (use ? ": used anyway (lenient)" : ": documented defaults used");
      set_error(msg.c_str());
      return SPATTN_NO_MATCH;
    }
    return SPATTN_OK;
  });
}

void spattn_profile_destroy(spattn_profile* profile) { delete profile; }

#else  // built without yaml-cpp

struct spattn_profile {};

namespace {
spattn_status profiles_not_built(const char* where) {
  return guarded([&]() -> spattn_status {
    fail(SPATTN_ERROR_UNSUPPORTED,
         std::string(where) + ": profiles are not built into this library (configure with SPATTN_WITH_YAML=ON)");
  });
}
}  // namespace

spattn_status spattn_profile_load(const char*, int, spattn_profile** out) {
  if (out != nullptr) *out = nullptr;
  return profiles_not_built("spattn_profile_load");
}

spattn_status spattn_profile_lookup(const spattn_profile*, const spattn_shape*, int64_t, int,
                                    spattn_session_config*) {
  return profiles_not_built("spattn_profile_lookup");
}

void spattn_profile_destroy(spattn_profile* profile) { delete profile; }

#endif

/* ---- KV cache ---- */

}  // extern "C": the helpers below return C++ types

namespace {

spattn::KernelOptions threads_only(int threads) {
  spattn::KernelOptions o;
  o.threads = threads;
  return o;
}

// [kv_heads][tokens][head_dim] rows of k and v of one type.
std::pair<spattn::InputView, spattn::InputView> kv_views(const char* where, const spattn::KVCache& c, int64_t tokens,
                                                         spattn_dtype dtype, const void* k, const void* v) {
  require_non_null(where, "k", k);
  require_non_null(where, "v", v);
  if (tokens <= 0)
    fail(SPATTN_ERROR_INVALID_ARGUMENT, std::string(where) + ": argument 'tokens' = " + std::to_string(tokens) +
                                            ": must be positive");
  const spattn::DType t = to_dtype(where, "dtype", &dtype);
  const int64_t d = c.head_dim(), h = c.kv_heads();
  return {spattn::InputView(k, t, h, tokens, d, tokens * d, d), spattn::InputView(v, t, h, tokens, d, tokens * d, d)};
}

// q and out of a cached call ([heads][q_len][head_dim] of their types), after the NULL checks.
std::pair<spattn::InputView, spattn::OutputView> query_views(const char* where, const spattn::AttentionShape& s,
                                                             spattn_dtypes types, const void* q,
                                                             const spattn_kv_cache* cache, void* out) {
  require_non_null(where, "q", q);
  require_non_null(where, "cache", cache);
  require_non_null(where, "out", out);
  const spattn::DType qt = to_dtype(where, "types.q", &types.q), ot = to_dtype(where, "types.out", &types.out);
  const int64_t d = s.head_dim;
  return {spattn::InputView(q, qt, s.heads, s.q_len, d, s.q_len * d, d),
          spattn::OutputView(out, ot, s.heads, s.q_len, d, s.q_len * d, d)};
}

// The queries of a cached call: rows (count = q_len) or from first.
spattn::CachedQueries to_queries(const spattn::AttentionShape& s, int64_t first, const int32_t* rows) {
  spattn::CachedQueries cq;
  cq.first = first;
  if (rows != nullptr) cq.rows = std::span<const int32_t>(rows, static_cast<size_t>(s.q_len));
  return cq;
}

}  // namespace

extern "C" {

spattn_status spattn_kv_cache_create(int64_t kv_heads, int64_t capacity, int64_t head_dim, spattn_dtype dtype,
                                     int64_t k_block, int threads, spattn_kv_cache** out) {
  if (out != nullptr) *out = nullptr;
  return guarded([&] {
    const char* where = "spattn_kv_cache_create";
    require_non_null(where, "out", out);
    const spattn::DType t = to_dtype(where, "dtype", &dtype);
    spattn::check_thread_count(where, "threads", threads);
    *out = new spattn_kv_cache{spattn::KVCache(kv_heads, capacity, head_dim, t, k_block, threads_only(threads))};
    return SPATTN_OK;
  });
}

spattn_status spattn_kv_cache_write(spattn_kv_cache* cache, int64_t first, int64_t tokens, spattn_dtype dtype,
                                    const void* k, const void* v, int threads) {
  return guarded([&] {
    const char* where = "spattn_kv_cache_write";
    require_non_null(where, "cache", cache);
    const auto [kv, vv] = kv_views(where, cache->impl, tokens, dtype, k, v);
    cache->impl.write(first, kv, vv, threads_only(threads));
    return SPATTN_OK;
  });
}

spattn_status spattn_kv_cache_write_rows(spattn_kv_cache* cache, const int32_t* positions, int64_t count,
                                         spattn_dtype dtype, const void* k, const void* v, int threads) {
  return guarded([&] {
    const char* where = "spattn_kv_cache_write_rows";
    require_non_null(where, "cache", cache);
    require_non_null(where, "positions", positions);
    const auto [kv, vv] = kv_views(where, cache->impl, count, dtype, k, v);
    cache->impl.write_rows(std::span<const int32_t>(positions, static_cast<size_t>(count)), kv, vv,
                           threads_only(threads));
    return SPATTN_OK;
  });
}

spattn_status spattn_kv_cache_truncate(spattn_kv_cache* cache, int64_t length, int threads) {
  return guarded([&] {
    require_non_null("spattn_kv_cache_truncate", "cache", cache);
    cache->impl.truncate(length, threads_only(threads));
    return SPATTN_OK;
  });
}

spattn_status spattn_kv_cache_length(const spattn_kv_cache* cache, int64_t* length) {
  return guarded([&] {
    require_non_null("spattn_kv_cache_length", "cache", cache);
    require_non_null("spattn_kv_cache_length", "length", length);
    *length = cache->impl.length();
    return SPATTN_OK;
  });
}

void spattn_kv_cache_destroy(spattn_kv_cache* cache) { delete cache; }

spattn_status spattn_cached_attention(const spattn_shape* shape, spattn_dtypes types, const void* q,
                                      const spattn_kv_cache* cache, int64_t first, const int32_t* rows, void* out,
                                      float* lse, int threads) {
  return guarded([&] {
    const char* where = "spattn_cached_attention";
    const spattn::AttentionShape s = to_shape(where, shape);
    const auto [qv, ov] = query_views(where, s, types, q, cache, out);
    spattn::cached_attention(s, qv, cache->impl, ov, to_queries(s, first, rows), threads_only(threads), lse);
    return SPATTN_OK;
  });
}

spattn_status spattn_cached_block_sparse_attention(const spattn_shape* shape, spattn_dtypes types, const void* q,
                                                   const spattn_kv_cache* cache, int64_t first, const int32_t* rows,
                                                   const spattn_block_mask* mask, void* out, int threads) {
  return guarded([&] {
    const char* where = "spattn_cached_block_sparse_attention";
    const spattn::AttentionShape s = to_shape(where, shape);
    const auto [qv, ov] = query_views(where, s, types, q, cache, out);
    const spattn::BlockMask m = to_block_mask(where, mask, s.heads, s.kv_len, s.kv_len);
    spattn::cached_block_sparse_attention(s, qv, cache->impl, m, ov, to_queries(s, first, rows), threads_only(threads));
    return SPATTN_OK;
  });
}

spattn_status spattn_merge_attention_states(int64_t parts, const float* const* outs, const float* const* lses,
                                            int64_t heads, int64_t q_len, int64_t head_dim, float* out, float* lse,
                                            int threads) {
  return guarded([&] {
    const char* where = "spattn_merge_attention_states";
    require_non_null(where, "outs", outs);
    require_non_null(where, "lses", lses);
    require_non_null(where, "out", out);
    if (parts <= 0 || heads <= 0 || q_len <= 0 || head_dim <= 0)
      fail(SPATTN_ERROR_INVALID_ARGUMENT, std::string(where) + ": parts, heads, q_len and head_dim must be positive");
    std::vector<spattn::AttentionPart> p;
    for (int64_t i = 0; i < parts; ++i) {
      char name[2][40];  // snprintf: GCC 12's -Wrestrict misfires on "literal" + std::string here
      std::snprintf(name[0], sizeof name[0], "outs[%lld]", static_cast<long long>(i));
      std::snprintf(name[1], sizeof name[1], "lses[%lld]", static_cast<long long>(i));
      require_non_null(where, name[0], outs[i]);
      require_non_null(where, name[1], lses[i]);
      p.push_back({spattn::ConstTensorView::heads_major(outs[i], heads, q_len, head_dim), lses[i]});
    }
    spattn::merge_attention_states(p, spattn::TensorView::heads_major(out, heads, q_len, head_dim), lse,
                                   threads_only(threads));
    return SPATTN_OK;
  });
}

}  // extern "C"
