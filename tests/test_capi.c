/* The C API from C: results against a double-precision reference computed
 * here, a session over all its steps, and every misuse returning the right
 * status with a message naming the argument. Exit status: failures (0 = all
 * passed). Built as C11 with -Wall -Wextra -Werror. */
/* mkdtemp, unlink, rmdir under -std=c11 */
#define _POSIX_C_SOURCE 200809L
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spattn/config.h"
#include "spattn/spattn.h"

static int g_failures = 0;
static int g_misuse_cases = 0;

#define CHECK(cond)                                                    \
  do {                                                                 \
    if (!(cond)) {                                                     \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++g_failures;                                                    \
    }                                                                  \
  } while (0)

/* A misuse: status must be `want` and the message must contain `needle`. */
static void expect_misuse(const char* what, spattn_status got, spattn_status want, const char* needle,
                          int line) {
  ++g_misuse_cases;
  const char* msg = spattn_last_error();
  if (got != want || msg == NULL || strstr(msg, needle) == NULL) {
    fprintf(stderr, "line %d: misuse '%s': got status %d (%s), message '%s'; want status %d, message naming '%s'\n",
            line, what, (int)got, spattn_status_string(got), msg ? msg : "(null)", (int)want, needle);
    ++g_failures;
  }
}
#define MISUSE(what, call, want, needle) expect_misuse(what, (call), (want), (needle), __LINE__)
#define INVALID SPATTN_ERROR_INVALID_ARGUMENT

/* Deterministic values in [-1, 1). */
static uint64_t g_rng = 0x9e3779b97f4a7c15ULL;
static float next_uniform(void) {
  g_rng = g_rng * 6364136223846793005ULL + 1442695040888963407ULL;
  return (float)((double)(g_rng >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

static float* random_tensor(int64_t n) {
  float* p = malloc((size_t)n * sizeof *p);
  for (int64_t i = 0; i < n; ++i) p[i] = next_uniform() * 2.0f;
  return p;
}

/* softmax(scale q k^T) v in double, heads-major. */
static void reference(const spattn_shape* s, const float* q, const float* k, const float* v,
                      double* out) {
  const int64_t d = s->head_dim, group = s->heads / s->kv_heads;
  const double scale = s->scale != 0.0f ? s->scale : 1.0 / sqrt((double)d);
  double* logits = malloc((size_t)s->kv_len * sizeof *logits);
  for (int64_t h = 0; h < s->heads; ++h)
    for (int64_t t = 0; t < s->q_len; ++t) {
      const float* qr = q + (h * s->q_len + t) * d;
      const int64_t kvh = h / group;
      double mx = -INFINITY, sum = 0.0;
      /* Causal: keys up to the query's position q_offset + t (-1: kv_len - q_len). */
      const int64_t pos0 = s->q_offset == SPATTN_Q_OFFSET_END ? s->kv_len - s->q_len : s->q_offset;
      const int64_t seen = s->causal ? pos0 + t + 1 : s->kv_len;
      for (int64_t j = 0; j < seen; ++j) {
        const float* kr = k + (kvh * s->kv_len + j) * d;
        double dot = 0.0;
        for (int64_t c = 0; c < d; ++c) dot += (double)qr[c] * kr[c];
        logits[j] = dot * scale;
        if (logits[j] > mx) mx = logits[j];
      }
      double* o = out + (h * s->q_len + t) * d;
      for (int64_t c = 0; c < d; ++c) o[c] = 0.0;
      for (int64_t j = 0; j < seen; ++j) {
        const double p = exp(logits[j] - mx);
        sum += p;
        const float* vr = v + (kvh * s->kv_len + j) * d;
        for (int64_t c = 0; c < d; ++c) o[c] += p * vr[c];
      }
      for (int64_t c = 0; c < d; ++c) o[c] /= sum;
    }
  free(logits);
}

/* max |out - ref| / max |ref| */
static double max_rel_error(const float* out, const double* ref, int64_t n) {
  double err = 0.0, mref = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    if (isnan(out[i])) return INFINITY;
    const double e = fabs(out[i] - ref[i]);
    if (e > err) err = e;
    if (fabs(ref[i]) > mref) mref = fabs(ref[i]);
  }
  return mref > 0.0 ? err / mref : err;
}

static void test_causal(void) {
  /* Queries at the end of the cache (SPATTN_Q_OFFSET_END) and a chunk at 16. */
  const int64_t offsets[] = {SPATTN_Q_OFFSET_END, 16};
  for (int i = 0; i < 2; ++i) {
    const spattn_shape s = {2, 1, 37, 70, 32, 0.0f, 1, offsets[i]};
    const int64_t nq = s.heads * s.q_len * s.head_dim, nk = s.kv_heads * s.kv_len * s.head_dim;
    float *q = random_tensor(nq), *k = random_tensor(nk), *v = random_tensor(nk);
    float* out = calloc((size_t)nq, sizeof *out);
    double* ref = malloc((size_t)nq * sizeof *ref);
    reference(&s, q, k, v, ref);
    CHECK(spattn_dense_attention(&s, q, k, v, out, 2) == SPATTN_OK);
    CHECK(max_rel_error(out, ref, nq) <= 2e-5);
    free(q);
    free(k);
    free(v);
    free(out);
    free(ref);
  }
  float x = 0.0f;
  spattn_shape bad = {1, 1, 10, 20, 32, 0.0f, 1, 11}; /* 11 + 10 > 20 */
  MISUSE("causal chunk past the cache", spattn_dense_attention(&bad, &x, &x, &x, &x, 1), INVALID, "q_offset + q_len");
}

static void test_dense_against_reference(void) {
  const spattn_shape s = {2, 1, 37, 53, 32, 0.0f, 0, 0};
  const int64_t nq = s.heads * s.q_len * s.head_dim, nk = s.kv_heads * s.kv_len * s.head_dim;
  float *q = random_tensor(nq), *k = random_tensor(nk), *v = random_tensor(nk);
  float* out = calloc((size_t)nq, sizeof *out);
  double* ref = malloc((size_t)nq * sizeof *ref);
  reference(&s, q, k, v, ref);
  for (int threads = 1; threads <= 2; ++threads) {
    CHECK(spattn_dense_attention(&s, q, k, v, out, threads) == SPATTN_OK);
    CHECK(strcmp(spattn_last_error(), "") == 0);
    const double err = max_rel_error(out, ref, nq);
    if (!(err <= 2e-5)) fprintf(stderr, "dense: relative error %g (threads %d)\n", err, threads);
    CHECK(err <= 2e-5);
  }
  CHECK(spattn_dense_attention_checked(&s, q, k, v, out, 1) == SPATTN_OK);
  CHECK(max_rel_error(out, ref, nq) <= 2e-5);

  /* A mask listing every key block gives dense attention. */
  const int64_t qb = 16, kb = 32, q_blocks = (s.q_len + qb - 1) / qb, k_blocks = (s.kv_len + kb - 1) / kb;
  const int64_t rows = s.heads * q_blocks;
  int64_t* row_ptr = malloc((size_t)(rows + 1) * sizeof *row_ptr);
  int32_t* col_idx = malloc((size_t)(rows * k_blocks) * sizeof *col_idx);
  for (int64_t r = 0; r <= rows; ++r) row_ptr[r] = r * k_blocks;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < k_blocks; ++c) col_idx[r * k_blocks + c] = (int32_t)c;
  spattn_block_mask m = {s.heads, qb, kb, row_ptr, col_idx, rows * k_blocks};
  CHECK(spattn_block_sparse_attention(&s, q, k, v, &m, out, 2) == SPATTN_OK);
  CHECK(max_rel_error(out, ref, nq) <= 2e-5);

  /* Non-finite input: propagates unchecked (no crash), refused when checked. */
  q[5 * s.head_dim + 3] = NAN; /* head 0, token 5 */
  CHECK(spattn_dense_attention(&s, q, k, v, out, 1) == SPATTN_OK);
  CHECK(isnan(out[5 * s.head_dim]));
  MISUSE("NaN in q, checked", spattn_dense_attention_checked(&s, q, k, v, out, 1), INVALID, "token 5");
  q[5 * s.head_dim + 3] = 0.5f;

  /* Misuse of the kernels. */
  MISUSE("NULL shape", spattn_dense_attention(NULL, q, k, v, out, 1), INVALID, "'shape'");
  MISUSE("NULL q", spattn_dense_attention(&s, NULL, k, v, out, 1), INVALID, "'q'");
  MISUSE("NULL k", spattn_dense_attention(&s, q, NULL, v, out, 1), INVALID, "'k'");
  MISUSE("NULL v", spattn_dense_attention(&s, q, k, NULL, out, 1), INVALID, "'v'");
  MISUSE("NULL out", spattn_dense_attention(&s, q, k, v, NULL, 1), INVALID, "'out'");
  MISUSE("out overlaps q", spattn_dense_attention(&s, q, k, v, q, 1), INVALID, "'out'");
  MISUSE("negative threads", spattn_dense_attention(&s, q, k, v, out, -1), INVALID, "threads");
  MISUSE("threads 100000", spattn_dense_attention(&s, q, k, v, out, 100000), INVALID, "threads");
  MISUSE("threads INT_MAX", spattn_dense_attention(&s, q, k, v, out, INT_MAX), INVALID, "threads");
  spattn_shape bad = s;
  bad.heads = 3;
  bad.kv_heads = 2;
  MISUSE("heads % kv_heads", spattn_dense_attention(&bad, q, k, v, out, 1), INVALID, "kv_heads");
  bad = s;
  bad.head_dim = 24;
  MISUSE("head_dim 24", spattn_dense_attention(&bad, q, k, v, out, 1), INVALID, "head_dim");
  bad = s;
  bad.q_len = 0;
  MISUSE("q_len 0", spattn_dense_attention(&bad, q, k, v, out, 1), INVALID, "q_len");
  bad = s;
  bad.scale = -1.0f;
  MISUSE("negative scale", spattn_dense_attention(&bad, q, k, v, out, 1), INVALID, "scale");

  /* Misuse of the block mask. */
  MISUSE("NULL mask", spattn_block_sparse_attention(&s, q, k, v, NULL, out, 1), INVALID, "'mask'");
  spattn_block_mask bm = m;
  bm.row_ptr = NULL;
  MISUSE("NULL row_ptr", spattn_block_sparse_attention(&s, q, k, v, &bm, out, 1), INVALID, "row_ptr");
  bm = m;
  bm.heads = 1;
  MISUSE("mask heads", spattn_block_sparse_attention(&s, q, k, v, &bm, out, 1), INVALID, "mask->heads");
  bm = m;
  bm.q_block = 48;
  MISUSE("mask q_block 48", spattn_block_sparse_attention(&s, q, k, v, &bm, out, 1), INVALID, "q_block");
  bm = m;
  bm.nnz = -1;
  MISUSE("negative nnz", spattn_block_sparse_attention(&s, q, k, v, &bm, out, 1), INVALID, "nnz");
  bm = m;
  bm.nnz = m.nnz - 1;
  MISUSE("nnz != row_ptr[last]", spattn_block_sparse_attention(&s, q, k, v, &bm, out, 1), INVALID, "row_ptr");
  const int64_t saved_ptr = row_ptr[2];
  row_ptr[2] = row_ptr[1] - 1; /* not monotone */
  MISUSE("row_ptr decreasing", spattn_block_sparse_attention(&s, q, k, v, &m, out, 1), INVALID, "row_ptr[2]");
  row_ptr[2] = saved_ptr;
  row_ptr[0] = 1;
  MISUSE("row_ptr[0] != 0", spattn_block_sparse_attention(&s, q, k, v, &m, out, 1), INVALID, "row_ptr[0]");
  row_ptr[0] = 0;
  col_idx[3] = (int32_t)k_blocks; /* one past the last key block */
  MISUSE("col_idx out of range", spattn_block_sparse_attention(&s, q, k, v, &m, out, 1), INVALID, "col_idx[3]");
  col_idx[3] = -1;
  MISUSE("col_idx negative", spattn_block_sparse_attention(&s, q, k, v, &m, out, 1), INVALID, "col_idx[3]");
  col_idx[3] = (int32_t)(3 % k_blocks);
  col_idx[1] = 0; /* duplicate of col_idx[0] */
  MISUSE("col_idx duplicate", spattn_block_sparse_attention(&s, q, k, v, &m, out, 1), INVALID, "col_idx[1]");
  col_idx[1] = 1;
  CHECK(spattn_block_sparse_attention(&s, q, k, v, &m, out, 1) == SPATTN_OK);

  free(row_ptr);
  free(col_idx);
  free(q);
  free(k);
  free(v);
  free(out);
  free(ref);
}

static void test_sessions(void) {
  const spattn_shape s = {2, 1, 200, 200, 32, 0.0f, 0, 0};
  const int64_t nq = s.heads * s.q_len * s.head_dim, nk = s.kv_heads * s.kv_len * s.head_dim;
  float *q = random_tensor(nq), *k = random_tensor(nk), *v = random_tensor(nk);
  float* out = calloc((size_t)nq, sizeof *out);
  float* dense_out = calloc((size_t)nq, sizeof *dense_out);
  CHECK(spattn_dense_attention(&s, q, k, v, dense_out, 1) == SPATTN_OK);

  spattn_session_config cfg;
  CHECK(spattn_session_config_default(&cfg) == SPATTN_OK);
  CHECK(cfg.policy == SPATTN_POLICY_SPARSED && cfg.block_size == 64 && cfg.total_steps == 64);
  cfg.total_steps = 8;
  cfg.warmup_fraction = 0.25; /* 2 dense steps, the second records the pattern */
  cfg.block_size = 32;
  cfg.topk_ratio = 0.5;
  cfg.threads = 2;

  /* SparseD: dense, dense+record, then the cached pattern. */
  spattn_session* sess = NULL;
  CHECK(spattn_session_create(&s, &cfg, &sess) == SPATTN_OK && sess != NULL);
  for (int64_t step = 0; step < cfg.total_steps && sess; ++step) {
    spattn_step_report r;
    memset(&r, 0xff, sizeof r);
    CHECK(spattn_session_step(sess, q, k, v, out, &r) == SPATTN_OK);
    CHECK(r.step == step);
    const spattn_step_path want = step == 0   ? SPATTN_PATH_DENSE
                                  : step == 1 ? SPATTN_PATH_DENSE_RECORD
                                              : SPATTN_PATH_SPARSE_CACHED;
    if (r.path != want)
      fprintf(stderr, "sparsed step %lld: path %s, want %s\n", (long long)step,
              spattn_step_path_name(r.path), spattn_step_path_name(want));
    CHECK(r.path == want);
    CHECK(r.ms >= 0.0 && r.select_ms >= 0.0);
    if (step < 2) {
      CHECK(r.density == 1.0);
      int same = 1;
      for (int64_t i = 0; i < nq; ++i) same &= out[i] == dense_out[i];
      CHECK(same); /* dense steps equal the dense kernel (same threads-independent order) */
    } else {
      CHECK(r.density > 0.0 && r.density <= 0.75);
    }
  }
  int64_t done = -1;
  CHECK(spattn_session_steps_done(sess, &done) == SPATTN_OK && done == cfg.total_steps);
  MISUSE("step past total_steps", spattn_session_step(sess, q, k, v, out, NULL), INVALID, "total_steps");
  MISUSE("step NULL q", spattn_session_step(sess, NULL, k, v, out, NULL), INVALID, "'q'");
  MISUSE("decoding block empty", spattn_session_set_decoding_block(sess, 5, 5), INVALID, "block");
  MISUSE("decoding block NULL", spattn_session_set_decoding_block(NULL, 0, 1), INVALID, "'session'");
  MISUSE("step out overlaps k", spattn_session_step(sess, q, k, v, k, NULL), INVALID, "'out'");
  MISUSE("steps_done NULL steps", spattn_session_steps_done(sess, NULL), INVALID, "'steps'");
  spattn_session_destroy(sess);

  /* Every policy runs all its steps and reports a known path. */
  for (int p = SPATTN_POLICY_DENSE; p <= SPATTN_POLICY_WINDOW; ++p) {
    spattn_session_config c = cfg;
    c.policy = (spattn_policy)p;
    c.total_steps = 5;
    c.dpad_prefix_len = 20;
    c.dpad_block_start = 40;
    c.dpad_block_end = 72;
    c.dpad_window = 16;
    c.dpad_sigma = 8.0;
    c.window_sink_tokens = 16;
    c.window_tokens = 64;
    spattn_session* ps = NULL;
    CHECK(spattn_session_create(&s, &c, &ps) == SPATTN_OK);
    if (ps == NULL) {
      fprintf(stderr, "policy %s: %s\n", spattn_policy_name(c.policy), spattn_last_error());
      continue;
    }
    int sparse_steps = 0;
    for (int64_t step = 0; step < c.total_steps; ++step) {
      spattn_step_report r;
      CHECK(spattn_session_step(ps, q, k, v, out, &r) == SPATTN_OK);
      CHECK(strcmp(spattn_step_path_name(r.path), "unknown") != 0);
      CHECK(r.density > 0.0 && r.density <= 1.0);
      sparse_steps += r.path != SPATTN_PATH_DENSE && r.path != SPATTN_PATH_DENSE_RECORD;
    }
    int finite = 1;
    for (int64_t i = 0; i < nq; ++i) finite &= isfinite(out[i]) != 0;
    CHECK(finite);
    CHECK(p == SPATTN_POLICY_DENSE ? sparse_steps == 0 : sparse_steps > 0);
    if (p == SPATTN_POLICY_DPAD || p == SPATTN_POLICY_DPAD_SPARSED) {
      /* The kept positions: every token before the block's end, then a few
         of the 16-token window (the authors' rule), ascending. */
      int64_t kept_n = -1;
      CHECK(spattn_session_dpad_kept(ps, NULL, 0, &kept_n) == SPATTN_OK && kept_n >= 72 && kept_n <= 88);
      int32_t kept[200];
      CHECK(spattn_session_dpad_kept(ps, kept, 200, &kept_n) == SPATTN_OK);
      int ok = 1;
      for (int64_t i = 0; i < kept_n; ++i) ok &= i < 72 ? kept[i] == i : (kept[i] > kept[i - 1] && kept[i] < 88);
      CHECK(ok);
      MISUSE("dpad_kept NULL positions", spattn_session_dpad_kept(ps, NULL, 5, &kept_n), INVALID, "'positions'");
      MISUSE("dpad_kept NULL count", spattn_session_dpad_kept(ps, kept, 5, NULL), INVALID, "'count'");
      MISUSE("dpad_kept capacity -1", spattn_session_dpad_kept(ps, kept, -1, &kept_n), INVALID, "capacity");
    }
    if (p == SPATTN_POLICY_DPAD) {
      CHECK(spattn_session_set_dpad_block(ps, 20, 72, 104) == SPATTN_OK);
      MISUSE("dpad block past kv_len", spattn_session_set_dpad_block(ps, 20, 180, 201), INVALID, "block_end");
      MISUSE("dpad block_start > block_end", spattn_session_set_dpad_block(ps, 20, 80, 72), INVALID, "block_start");
    }
    spattn_session_destroy(ps);
  }

  /* SparseD as its authors run it: their dense steps, block and rule. */
  {
    spattn_session_config pc;
    CHECK(spattn_sparsed_paper_config(10, 64, 200, &pc) == SPATTN_OK);
    CHECK(pc.paper_select == 1 && pc.paper_prefix_len == 64 && pc.block_size == 32 && pc.topk_ratio == 0.5);
    CHECK(pc.warmup_steps == 4);
    pc.threads = 2;
    spattn_session* ps = NULL;
    CHECK(spattn_session_create(&s, &pc, &ps) == SPATTN_OK);
    for (int64_t step = 0; step < pc.total_steps && ps; ++step) {
      spattn_step_report r;
      CHECK(spattn_session_step(ps, q, k, v, out, &r) == SPATTN_OK);
      CHECK(r.path == (step < 3 ? SPATTN_PATH_DENSE : step == 3 ? SPATTN_PATH_DENSE_RECORD : SPATTN_PATH_SPARSE_CACHED));
      CHECK(isnan(r.drift_recall) && r.drift_ms == 0.0);
    }
    spattn_session_destroy(ps);
    MISUSE("paper config NULL", spattn_sparsed_paper_config(10, 0, 100, NULL), INVALID, "'config'");
    MISUSE("paper config prefix past seq", spattn_sparsed_paper_config(10, 101, 100, &pc), INVALID, "prefix_len");
  }

  /* Misuse at creation: each names the field. */
  spattn_session* none = (spattn_session*)&cfg; /* must be reset to NULL on failure */
  MISUSE("create NULL out", spattn_session_create(&s, &cfg, NULL), INVALID, "'out'");
  MISUSE("create NULL shape", spattn_session_create(NULL, &cfg, &none), INVALID, "'shape'");
  CHECK(none == NULL);
  MISUSE("create NULL config", spattn_session_create(&s, NULL, &none), INVALID, "'config'");
  MISUSE("config_default NULL", spattn_session_config_default(NULL), INVALID, "'config'");
  struct {
    const char* what;
    spattn_session_config c;
    spattn_shape shape;
    const char* needle;
  } cases[40];
  int n = 0;
#define CASE(WHAT, NEEDLE, EDIT)       \
  do {                                 \
    cases[n].what = WHAT;              \
    cases[n].c = cfg;                  \
    cases[n].shape = s;                \
    cases[n].needle = NEEDLE;          \
    {                                  \
      spattn_session_config* c = &cases[n].c; \
      spattn_shape* sh = &cases[n].shape;     \
      (void)c;                         \
      (void)sh;                        \
      EDIT;                            \
    }                                  \
    ++n;                               \
  } while (0)
  CASE("heads not divisible by kv_heads", "kv_heads", (sh->heads = 3, sh->kv_heads = 2));
  CASE("head_dim 24", "head_dim", sh->head_dim = 24);
  CASE("kv_len 0", "kv_len", sh->kv_len = 0);
  CASE("block size 48", "block_size", c->block_size = 48);
  CASE("topk_ratio 0", "topk_ratio", c->topk_ratio = 0.0);
  CASE("topk_ratio 1.5", "topk_ratio", c->topk_ratio = 1.5);
  CASE("topk_ratio NaN", "topk_ratio", c->topk_ratio = NAN);
  CASE("warmup_fraction 1.0", "warmup_fraction", c->warmup_fraction = 1.0);
  CASE("warmup_fraction -0.1", "warmup_fraction", c->warmup_fraction = -0.1);
  CASE("steps 0", "total_steps", c->total_steps = 0);
  CASE("refresh_every -1", "refresh_every", c->refresh_every = -1);
  CASE("negative dpad window", "dpad.window", (c->policy = SPATTN_POLICY_DPAD, c->dpad_window = -1));
  CASE("dpad sigma 0", "dpad.sigma",
       (c->policy = SPATTN_POLICY_DPAD, c->dpad_rule = SPATTN_DPAD_DENSE_WINDOW, c->dpad_sigma = 0.0));
  CASE("dpad sigma inf", "dpad.sigma",
       (c->policy = SPATTN_POLICY_DPAD, c->dpad_rule = SPATTN_DPAD_DENSE_WINDOW, c->dpad_sigma = INFINITY));
  CASE("dpad rule 9", "config->dpad_rule", c->dpad_rule = (spattn_dpad_rule)9);
  CASE("dpad k_sigma -1", "dpad.k_sigma", (c->policy = SPATTN_POLICY_DPAD, c->dpad_k_sigma = -1.0));
  CASE("dpad scale NaN", "dpad.scale", (c->policy = SPATTN_POLICY_DPAD, c->dpad_scale = NAN));
  CASE("paper_select with pooled", "paper_select", (c->paper_select = 1, c->pooled_budget = 1));
  CASE("paper prefix -1", "paper_prefix_len", (c->paper_select = 1, c->paper_prefix_len = -1));
  CASE("warmup_steps -2", "warmup_steps", c->warmup_steps = -2);
  CASE("drift every -1", "drift_check_every", c->drift_check_every = -1);
  CASE("drift recall 2", "drift_min_recall", (c->drift_check_every = 1, c->drift_min_recall = 2.0));
  CASE("drift samples 0", "drift_sample_blocks", (c->drift_check_every = 1, c->drift_sample_blocks = 0));
  CASE("dpad block_end past kv_len", "block_end", (c->policy = SPATTN_POLICY_DPAD, c->dpad_block_end = 201));
  CASE("dpad prefix > block_start", "prefix_len",
       (c->policy = SPATTN_POLICY_DPAD, c->dpad_prefix_len = 50, c->dpad_block_start = 40, c->dpad_block_end = 72));
  CASE("unisparse tau 0", "unisparse.tau", (c->policy = SPATTN_POLICY_UNISPARSE, c->unisparse_tau = 0.0));
  CASE("window sink -1", "window.sink_tokens", (c->policy = SPATTN_POLICY_WINDOW, c->window_sink_tokens = -1));
  CASE("window width -1", "window.window_tokens", (c->policy = SPATTN_POLICY_WINDOW, c->window_tokens = -1));
  CASE("policy 42", "config->policy", c->policy = (spattn_policy)42);
  CASE("q_tile_rows 48", "config->q_tile_rows", c->q_tile_rows = 48);
  CASE("threads -1", "config->threads", c->threads = -1);
  CASE("threads 100000", "config->threads", c->threads = 100000);
  CASE("mass_tau 1.5", "mass_budget.tau", c->mass_tau = 1.5);
  CASE("mass_tau with pooled", "pooled_budget", (c->mass_tau = 0.9, c->pooled_budget = 1));
  CASE("dense_head_share 0", "dense_head_share", (c->mass_tau = 0.9, c->dense_head_share = 0.0));
  /* DPad drops tokens as queries and keys: q_len must equal kv_len (before:
     a heap overflow in the compaction, or rows of zeros). */
  CASE("dpad q_len != kv_len", "q_len", (c->policy = SPATTN_POLICY_DPAD, sh->q_len = 32));
  CASE("dpad+sparsed q_len != kv_len", "q_len", (c->policy = SPATTN_POLICY_DPAD_SPARSED, sh->q_len = 32));
#undef CASE
  for (int i = 0; i < n; ++i) {
    none = (spattn_session*)&cfg;
    MISUSE(cases[i].what, spattn_session_create(&cases[i].shape, &cases[i].c, &none), INVALID,
           cases[i].needle);
    CHECK(none == NULL);
  }
  MISUSE("step NULL session", spattn_session_step(NULL, q, k, v, out, NULL), INVALID, "'session'");
  MISUSE("set_dpad NULL session", spattn_session_set_dpad_block(NULL, 0, 0, 0), INVALID, "'session'");
  spattn_session_destroy(NULL); /* a no-op */

  free(q);
  free(k);
  free(v);
  free(out);
  free(dense_out);
}

#if SPATTN_HAS_YAML
static void write_file(const char* path, const char* text) {
  FILE* f = fopen(path, "w");
  CHECK(f != NULL);
  if (f == NULL) return;
  fputs(text, f);
  fclose(f);
}
#endif

static void test_profiles(void) {
  char dir[] = "/tmp/spattn_capi_XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char good[256], malformed[256], missing[256];
  snprintf(good, sizeof good, "%s/good.yaml", dir);
  snprintf(malformed, sizeof malformed, "%s/malformed.yaml", dir);
  snprintf(missing, sizeof missing, "%s/missing.yaml", dir);
  spattn_profile* prof = (spattn_profile*)dir;

#if SPATTN_HAS_YAML
  write_file(good,
             "schema_version: 1\n"
             "machine: {cpu_model: Some CPU, isa: avx2, cores: 2, numa_nodes: 1, l1d_bytes: 0,\n"
             "          l2_bytes: 0, l3_bytes: 0}\n"
             "entries:\n"
             "  - shape: {heads: 2, kv_heads: 1, seq_len: 4096, head_dim: 32, steps: 64}\n"
             "    workload: synthetic\n"
             "    policy: sparsed\n"
             "    accuracy_bound: {min_mean_cosine: 0.99, min_step_cosine: 0.98}\n"
             "    chosen: {block_size: 32, topk_ratio: 0.25, warmup_fraction: 0.125, q_tile_rows: 32,\n"
             "             threads: 1}\n"
             "    measured: {dense_ms: 0, sparse_ms: 0, speedup: 0, mean_cosine: 0, min_cosine: 0,\n"
             "               mean_density: 0}\n"
             "    tuned_at: \"2025-06-01T12:34:56Z\"\n");
  write_file(malformed, "schema_version: 1\nmachine: [this is\n  not: a map\n");

  MISUSE("profile missing file", spattn_profile_load(missing, 0, &prof), SPATTN_ERROR_IO, "missing.yaml");
  CHECK(prof == NULL);
  MISUSE("profile malformed file", spattn_profile_load(malformed, 0, &prof), SPATTN_ERROR_IO, "malformed.yaml");
  MISUSE("profile NULL path", spattn_profile_load(NULL, 0, &prof), INVALID, "'path'");
  MISUSE("profile NULL out", spattn_profile_load(good, 0, NULL), INVALID, "'out'");
  MISUSE("profile strict, other machine", spattn_profile_load(good, 1, &prof), SPATTN_ERROR_IO, "good.yaml");

  CHECK(spattn_profile_load(good, 0, &prof) == SPATTN_OK && prof != NULL);
  spattn_session_config c;
  spattn_session_config_default(&c);
  const spattn_shape near = {2, 1, 2500, 2500, 32, 0.0f, 0, 0}; /* 4096 / 2500 = 1.6x: fits */
  CHECK(spattn_profile_lookup(prof, &near, 50, 0, &c) == SPATTN_OK);
  CHECK(c.block_size == 32 && c.topk_ratio == 0.25 && c.warmup_fraction == 0.125 &&
        c.q_tile_rows == 32 && c.threads == 1);
  const spattn_shape other = {2, 1, 2000, 2000, 64, 0.0f, 0, 0};
  MISUSE("profile lookup, no head_dim 64 entry", spattn_profile_lookup(prof, &other, 50, 0, &c),
         SPATTN_NO_MATCH, "head_dim 64");
  CHECK(c.block_size == 64 && c.topk_ratio == 0.1 && c.warmup_fraction == 0.2 && c.q_tile_rows == 64 &&
        c.threads == 0);
  /* More than 2x away in seq_len or steps: refused (defaults), or used when lenient. */
  const spattn_shape far = {2, 1, 9000, 9000, 32, 0.0f, 0, 0};
  MISUSE("profile lookup, seq_len 2.2x away", spattn_profile_lookup(prof, &far, 50, 0, &c), SPATTN_NO_MATCH,
         "more than 2x from 9000");
  CHECK(c.block_size == 64);
  MISUSE("profile lookup, steps 3x away", spattn_profile_lookup(prof, &near, 200, 0, &c), SPATTN_NO_MATCH,
         "64 steps");
  CHECK(c.block_size == 64);
  MISUSE("profile lookup lenient, seq_len 2.2x away", spattn_profile_lookup(prof, &far, 50, 1, &c),
         SPATTN_NO_MATCH, "used anyway");
  CHECK(c.block_size == 32 && c.topk_ratio == 0.25);
  MISUSE("profile lookup steps 0", spattn_profile_lookup(prof, &near, 0, 0, &c), INVALID, "steps");
  MISUSE("profile lookup NULL profile", spattn_profile_lookup(NULL, &near, 8, 0, &c), INVALID, "'profile'");
  MISUSE("profile lookup NULL config", spattn_profile_lookup(prof, &near, 8, 0, NULL), INVALID, "'config'");
  MISUSE("profile lookup NULL shape", spattn_profile_lookup(prof, NULL, 8, 0, &c), INVALID, "'shape'");
  spattn_profile_destroy(prof);
#else
  MISUSE("profiles not built in", spattn_profile_load(missing, 0, &prof), SPATTN_ERROR_UNSUPPORTED,
         "not built");
  CHECK(prof == NULL);
#endif
  spattn_profile_destroy(NULL);
  unlink(good);
  unlink(malformed);
  rmdir(dir);
}

/* bf16 bits of x, rounded to nearest even (finite x). */
static uint16_t to_bf16_bits(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
static float from_bf16_bits(uint16_t b) {
  const uint32_t u = (uint32_t)b << 16;
  float x;
  memcpy(&x, &u, 4);
  return x;
}

/* max(m, |x|), kept out of line: aarch64 GCC 12 crashes vectorizing an
 * fmax reduction in test_typed. */
__attribute__((noinline)) static double max_abs_of(double m, double x) {
  const double a = x < 0 ? -x : x;
  return a > m ? a : m;
}

/* bf16 q, k, v through the _typed entry points: within the documented bound
 * (2^-8 max|v| for P's rounding, plus the fp32 bound) of the reference on the
 * rounded values; bad types refused by name. */
static void test_typed(void) {
  const spattn_shape s = {2, 2, 40, 70, 32, 0.0f, 0, 0};
  const int64_t n = s.heads * s.q_len * s.head_dim;  /* q_len == kv_len not needed: kv has 70 rows */
  const int64_t nk = s.kv_heads * s.kv_len * s.head_dim;
  float *q = random_tensor(n), *k = random_tensor(nk), *v = random_tensor(nk);
  uint16_t *q16 = malloc((size_t)n * 2), *k16 = malloc((size_t)nk * 2), *v16 = malloc((size_t)nk * 2);
  for (int64_t i = 0; i < n; ++i) q[i] = from_bf16_bits(q16[i] = to_bf16_bits(q[i]));
  for (int64_t i = 0; i < nk; ++i) k[i] = from_bf16_bits(k16[i] = to_bf16_bits(k[i]));
  for (int64_t i = 0; i < nk; ++i) v[i] = from_bf16_bits(v16[i] = to_bf16_bits(v[i]));
  double* ref = malloc((size_t)n * sizeof *ref);
  reference(&s, q, k, v, ref);
  double max_v = 0, max_ref = 0;
  for (int64_t i = 0; i < nk; ++i) max_v = max_abs_of(max_v, v[i]);
  for (int64_t i = 0; i < n; ++i) max_ref = max_abs_of(max_ref, ref[i]);
  float* out = calloc((size_t)n, sizeof *out);
  uint16_t* out16 = calloc((size_t)n, 2);
  const spattn_dtypes bf16_in = {SPATTN_BF16, SPATTN_BF16, SPATTN_FP32};
  CHECK(spattn_dense_attention_typed(&s, bf16_in, q16, k16, v16, out, 2) == SPATTN_OK);
  double err = 0;
  for (int64_t i = 0; i < n; ++i) err = max_abs_of(err, out[i] - ref[i]);
  CHECK(err <= ldexp(max_v, -8) + 2e-5 * max_ref);
  /* Every key block listed: the same as dense, into a bf16 output. */
  const int64_t qb = (s.q_len + 15) / 16, kb = (s.kv_len + 15) / 16;
  int64_t* row_ptr = malloc((size_t)(s.heads * qb + 1) * sizeof *row_ptr);
  int32_t* col = malloc((size_t)(s.heads * qb * kb) * sizeof *col);
  for (int64_t r = 0; r <= s.heads * qb; ++r) row_ptr[r] = r * kb;
  for (int64_t i = 0; i < s.heads * qb * kb; ++i) col[i] = (int32_t)(i % kb);
  const spattn_block_mask m = {s.heads, 16, 16, row_ptr, col, s.heads * qb * kb};
  const spattn_dtypes bf16_all = {SPATTN_BF16, SPATTN_BF16, SPATTN_BF16};
  CHECK(spattn_block_sparse_attention_typed(&s, bf16_all, q16, k16, v16, &m, out16, 1) == SPATTN_OK);
  err = 0;
  for (int64_t i = 0; i < n; ++i) err = max_abs_of(err, from_bf16_bits(out16[i]) - ref[i]);
  CHECK(err <= ldexp(max_v, -8) + ldexp(max_ref, -8) + 2e-5 * max_ref);
  CHECK(strcmp(spattn_dtype_name(SPATTN_BF16), "bf16") == 0);
  CHECK(strcmp(spattn_dtype_name((spattn_dtype)9), "unknown") == 0);
  const spattn_dtypes bad_kv = {SPATTN_FP32, (spattn_dtype)7, SPATTN_FP32};
  MISUSE("kv dtype 7", spattn_dense_attention_typed(&s, bad_kv, q16, k16, v16, out, 1),
         SPATTN_ERROR_INVALID_ARGUMENT, "not a spattn_dtype");
  const spattn_dtypes f16_out = {SPATTN_BF16, SPATTN_BF16, SPATTN_FP16};
  MISUSE("f16 out", spattn_dense_attention_typed(&s, f16_out, q16, k16, v16, out16, 1),
         SPATTN_ERROR_INVALID_ARGUMENT, "out.dtype");
  /* A dense session on bf16 views equals the typed dense call. */
  spattn_session_config cfg;
  CHECK(spattn_session_config_default(&cfg) == SPATTN_OK);
  cfg.policy = SPATTN_POLICY_DENSE;
  cfg.total_steps = 1;
  spattn_session* sess = NULL;
  CHECK(spattn_session_create(&s, &cfg, &sess) == SPATTN_OK);
  float* out2 = calloc((size_t)n, sizeof *out2);
  CHECK(spattn_session_step_typed(sess, bf16_in, q16, k16, v16, out2, NULL) == SPATTN_OK);
  CHECK(spattn_dense_attention_typed(&s, bf16_in, q16, k16, v16, out, 1) == SPATTN_OK);
  CHECK(memcmp(out, out2, (size_t)n * sizeof *out) == 0);
  spattn_session_destroy(sess);
  free(q), free(k), free(v), free(q16), free(k16), free(v16), free(ref), free(out), free(out16), free(out2);
  free(row_ptr), free(col);
}

/* The KV cache: written in two pieces and one row, queried by a block and by
 * scattered rows (the reference of those rows over the whole sequence), and
 * merged from two halves of the keys. */
static void test_kv_cache(void) {
  const spattn_dtypes kAllF32 = {SPATTN_FP32, SPATTN_FP32, SPATTN_FP32};
  const int64_t H = 2, KH = 1, N = 300, D = 32;
  float *q = random_tensor(H * N * D), *k = random_tensor(KH * N * D), *v = random_tensor(KH * N * D);
  const spattn_shape whole = {H, KH, N, N, D, 0.0f, 0, 0};
  double* ref = malloc((size_t)(H * N * D) * sizeof *ref);
  reference(&whole, q, k, v, ref);
  spattn_kv_cache* cache = NULL;
  CHECK(spattn_kv_cache_create(KH, 320, D, SPATTN_FP32, 0, 2, &cache) == SPATTN_OK);
  CHECK(spattn_kv_cache_write(cache, 0, 100, SPATTN_FP32, k, v, 2) == SPATTN_OK);
  /* The rest: rows [100, 300) of the one kv head. */
  CHECK(spattn_kv_cache_write(cache, 100, 200, SPATTN_FP32, k + 100 * D, v + 100 * D, 2) == SPATTN_OK);
  const int32_t one = 7;
  CHECK(spattn_kv_cache_write_rows(cache, &one, 1, SPATTN_FP32, k + 7 * D, v + 7 * D, 2) == SPATTN_OK);
  int64_t len = 0;
  CHECK(spattn_kv_cache_length(cache, &len) == SPATTN_OK && len == N);
  const int32_t rows[4] = {0, 65, 199, 299};
  float* qr = malloc((size_t)(H * 4 * D) * sizeof *qr);
  double* rr = malloc((size_t)(H * 4 * D) * sizeof *rr);
  for (int64_t h = 0; h < H; ++h)
    for (int i = 0; i < 4; ++i)
      for (int64_t c = 0; c < D; ++c) {
        qr[(h * 4 + i) * D + c] = q[(h * N + rows[i]) * D + c];
        rr[(h * 4 + i) * D + c] = ref[(h * N + rows[i]) * D + c];
      }
  float* out = calloc((size_t)(H * 4 * D), sizeof *out);
  const spattn_shape s4 = {H, KH, 4, N, D, 0.0f, 0, 0};
  CHECK(spattn_cached_attention(&s4, kAllF32, qr, cache, 0, rows, out, NULL, 2) == SPATTN_OK);
  CHECK(max_rel_error(out, rr, H * 4 * D) <= 2e-5);
  /* Keys in two halves (the cache cut back, then the second half alone), merged. */
  float* part[2] = {calloc((size_t)(H * 4 * D), sizeof(float)), calloc((size_t)(H * 4 * D), sizeof(float))};
  float* lse[2] = {calloc((size_t)(H * 4), sizeof(float)), calloc((size_t)(H * 4), sizeof(float))};
  spattn_kv_cache* second = NULL;
  CHECK(spattn_kv_cache_create(KH, 200, D, SPATTN_FP32, 0, 2, &second) == SPATTN_OK);
  CHECK(spattn_kv_cache_write(second, 0, 200, SPATTN_FP32, k + 100 * D, v + 100 * D, 2) == SPATTN_OK);
  CHECK(spattn_kv_cache_truncate(cache, 100, 2) == SPATTN_OK);
  spattn_shape half = s4;
  half.kv_len = 100;
  CHECK(spattn_cached_attention(&half, kAllF32, qr, cache, 0, rows, part[0], lse[0], 2) == INVALID); /* 199 >= 100 */
  CHECK(spattn_cached_attention(&half, kAllF32, qr, cache, 96, NULL, part[0], lse[0], 2) == SPATTN_OK);
  half.kv_len = 200;
  CHECK(spattn_cached_attention(&half, kAllF32, qr, second, 0, NULL, part[1], lse[1], 2) == SPATTN_OK);
  /* Bidirectional attention does not depend on where the queries sit: part 0
   * is qr over keys [0, 100), part 1 over keys [100, 300); their merge must be
   * qr over all keys, from a fresh full cache. */
  spattn_kv_cache* full = NULL;
  CHECK(spattn_kv_cache_create(KH, N, D, SPATTN_FP32, 0, 2, &full) == SPATTN_OK);
  CHECK(spattn_kv_cache_write(full, 0, N, SPATTN_FP32, k, v, 2) == SPATTN_OK);
  float* direct = calloc((size_t)(H * 4 * D), sizeof *direct);
  CHECK(spattn_cached_attention(&s4, kAllF32, qr, full, 0, NULL, direct, NULL, 2) == SPATTN_OK);
  const float* outs[2] = {part[0], part[1]};
  const float* lses[2] = {lse[0], lse[1]};
  CHECK(spattn_merge_attention_states(2, outs, lses, H, 4, D, out, NULL, 2) == SPATTN_OK);
  double dmax = 0.0, err = 0.0;
  for (int64_t i = 0; i < H * 4 * D; ++i) {
    if (fabs(direct[i]) > dmax) dmax = fabs(direct[i]);
    if (fabs(out[i] - direct[i]) > err) err = fabs(out[i] - direct[i]);
  }
  CHECK(err <= 2e-5 * dmax);
  /* The session's cache mode: a refresh, then a cached step over the dual
   * cache's rows (the block [64, 96)), dense: equal to the reference rows. */
  {
    const spattn_shape ss = {H, KH, N, N, D, 0.0f, 0, 0};
    spattn_session_config cfg;
    CHECK(spattn_session_config_default(&cfg) == SPATTN_OK);
    cfg.policy = SPATTN_POLICY_DENSE;
    cfg.cache = SPATTN_CACHE_DUAL;
    cfg.total_steps = 4;
    spattn_session* sess = NULL;
    CHECK(spattn_session_create(&ss, &cfg, &sess) == SPATTN_OK);
    float* full = calloc((size_t)(H * N * D), sizeof *full);
    spattn_step_report rep;
    CHECK(spattn_session_step(sess, q, k, v, full, &rep) == SPATTN_OK && rep.query_rows == N);
    CHECK(spattn_session_set_decoding_block(sess, 64, 96) == SPATTN_OK);
    int32_t crow[40];
    int64_t nrows = 0;
    CHECK(spattn_session_cached_rows(sess, crow, 40, &nrows) == SPATTN_OK && nrows == 32 && crow[0] == 64);
    float *qb = malloc((size_t)(H * 32 * D) * sizeof *qb), *kb = malloc((size_t)(KH * 32 * D) * sizeof *kb);
    float *vb = malloc((size_t)(KH * 32 * D) * sizeof *vb), *ob = calloc((size_t)(H * 32 * D), sizeof *ob);
    double* rb = malloc((size_t)(H * 32 * D) * sizeof *rb);
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < 32; ++i)
        for (int64_t c = 0; c < D; ++c) {
          qb[(h * 32 + i) * D + c] = q[(h * N + 64 + i) * D + c];
          rb[(h * 32 + i) * D + c] = ref[(h * N + 64 + i) * D + c];
          if (h < KH) kb[(h * 32 + i) * D + c] = k[(h * N + 64 + i) * D + c], vb[(h * 32 + i) * D + c] = v[(h * N + 64 + i) * D + c];
        }
    CHECK(spattn_session_cached_step(sess, kAllF32, qb, kb, vb, ob, &rep) == SPATTN_OK && rep.query_rows == 32);
    CHECK(max_rel_error(ob, rb, H * 32 * D) <= 2e-5);
    MISUSE("cached step: rows mode without rows", spattn_session_set_query_rows(sess, NULL, 3), INVALID, "rows");
    cfg.cache = 7;
    spattn_session* bad = NULL;
    MISUSE("cache mode out of range", spattn_session_create(&ss, &cfg, &bad), INVALID, "config->cache");
    spattn_session_destroy(sess);
    free(full), free(qb), free(kb), free(vb), free(ob), free(rb);
  }
  MISUSE("cache write past a gap", spattn_kv_cache_write(cache, 150, 10, SPATTN_FP32, k, v, 1), INVALID, "gap");
  MISUSE("cache: null out", spattn_kv_cache_create(1, 10, 32, SPATTN_FP32, 0, 1, NULL), INVALID, "out");
  MISUSE("merge: null part", spattn_merge_attention_states(2, (const float* const[]){part[0], NULL}, lses, H, 4, D, out,
                                                           NULL, 1), INVALID, "outs[1]");
  spattn_kv_cache_destroy(cache);
  spattn_kv_cache_destroy(second);
  spattn_kv_cache_destroy(full);
  spattn_kv_cache_destroy(NULL);
  free(q), free(k), free(v), free(ref), free(qr), free(rr), free(out), free(direct);
  free(part[0]), free(part[1]), free(lse[0]), free(lse[1]);
}

int main(void) {
  CHECK(strcmp(spattn_status_string(SPATTN_OK), "ok") == 0);
  CHECK(strcmp(spattn_status_string((spattn_status)99), "unknown status") == 0);
  CHECK(strcmp(spattn_policy_name(SPATTN_POLICY_DPAD_SPARSED), "dpad+sparsed") == 0);
  CHECK(strcmp(spattn_version(), SPATTN_VERSION_STRING) == 0);
  CHECK(strcmp(spattn_policy_name((spattn_policy)42), "unknown") == 0);
  CHECK(strcmp(spattn_last_error(), "") == 0);
  test_dense_against_reference();
  test_causal();
  test_sessions();
  test_typed();
  test_profiles();
  test_kv_cache();
  printf("test_capi: %d misuse cases checked, %d failures\n", g_misuse_cases, g_failures);
  return g_failures == 0 ? 0 : 1;
}
