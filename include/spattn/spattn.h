/* spattn C API: the kernels, the DiffusionAttention session and tuning
 * profiles for engines written in C. Link the static library (it needs the
 * C++ runtime and OpenMP: link with a C++ linker, or add -lstdc++ -lgomp).
 *
 * Errors. Every function returns a spattn_status (except the name/string
 * helpers, spattn_last_error and the destroy functions). On any status other
 * than SPATTN_OK the thread-local message spattn_last_error() says what was
 * refused, naming the argument and its value, e.g.
 *   "spattn: SessionConfig: argument 'topk_ratio' = 1.500000: must be in (0, 1]".
 * No C++ exception ever crosses this interface; a failing call leaves its
 * outputs ("out" handles, output tensors) unspecified but frees everything it
 * allocated. NULL pointer arguments are refused with
 * SPATTN_ERROR_INVALID_ARGUMENT naming the argument.
 *
 * Tensors. q, out: [heads][q_len][head_dim]; k, v: [kv_heads][kv_len][head_dim];
 * contiguous float arrays (heads-major, head_dim fastest). No alignment is
 * required. out must not overlap q, k or v.
 *
 * Threads. threads = 0 uses SPATTN_NUM_THREADS, else OpenMP's default; at
 * most 4096 (larger counts are refused, as are negative ones). Calls
 * are thread-safe except on the same spattn_session from two threads at once.
 *
 * Handles. As with free(), passing a handle after its destroy function (a
 * second destroy, or any call on it) is undefined behaviour: the library does
 * not track freed handles, and no message can be trusted after it.
 *
 * Non-finite inputs (NaN, Inf) propagate into the output rows they reach
 * (never a crash); set spattn_session_config.check_finite, or use
 * spattn_dense_attention_checked, to have them refused with the tensor, head
 * and token named.
 */
#ifndef SPATTN_SPATTN_H_
#define SPATTN_SPATTN_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum spattn_status {
  SPATTN_OK = 0,
  SPATTN_ERROR_INVALID_ARGUMENT = 1, /* a NULL pointer, bad shape, parameter or mask */
  SPATTN_ERROR_OUT_OF_MEMORY = 2,    /* an allocation failed */
  SPATTN_ERROR_IO = 3,               /* a profile file is missing, unreadable or malformed */
  SPATTN_ERROR_UNSUPPORTED = 4,      /* not built into this library (profiles without yaml-cpp) */
  SPATTN_ERROR_INTERNAL = 5,         /* a bug in spattn: please report the message */
  SPATTN_NO_MATCH = 6                /* not an error: spattn_profile_lookup found no entry and
                                        filled the documented defaults */
} spattn_status;

/* "ok", "invalid argument", ...; "unknown status" for other values. Static storage. */
const char* spattn_status_string(spattn_status status);

/* Message of the most recent spattn call on this thread: empty ("") after a
 * call that returned SPATTN_OK, else what went wrong. Never NULL. Valid until
 * the next spattn call on this thread (copy it to keep it). */
const char* spattn_last_error(void);

typedef struct spattn_shape {
  int64_t heads;    /* query heads, > 0 */
  int64_t kv_heads; /* key/value heads, > 0, divides heads (GQA: query head h reads kv head
                       h / (heads / kv_heads)) */
  int64_t q_len;    /* query tokens, > 0 */
  int64_t kv_len;   /* key/value tokens, > 0 */
  int64_t head_dim; /* the kernels need a multiple of 16 up to 256 */
  float scale;      /* softmax scale, >= 0 and finite; 0 means 1/sqrt(head_dim) */
  /* Causal attention (LLM prefill): query token t sits at absolute position
   * q_offset + t and sees the keys at positions <= its own. 0: bidirectional
   * (q_offset is then ignored). */
  int32_t causal;
  /* With causal: position of query token 0, >= 0 with q_offset + q_len <=
   * kv_len; SPATTN_Q_OFFSET_END (-1) for kv_len - q_len (the queries are the
   * last q_len tokens of the cache). Note that 0, not -1, is what a
   * zero-initialized struct holds: set it whenever causal is set. */
  int64_t q_offset;
} spattn_shape;
#define SPATTN_Q_OFFSET_END (-1)

/* ---- kernels ------------------------------------------------------------ */

/* Dense attention: out = softmax(scale q k^T) v (causal per shape->causal). */
spattn_status spattn_dense_attention(const spattn_shape* shape, const float* q, const float* k,
                                     const float* v, float* out, int threads);

/* Same, but first scans q, k and v and refuses a NaN or Inf with
 * SPATTN_ERROR_INVALID_ARGUMENT naming the tensor, head and token. */
spattn_status spattn_dense_attention_checked(const spattn_shape* shape, const float* q,
                                             const float* k, const float* v, float* out,
                                             int threads);

/* Element types (the _typed entry points). bf16 and fp16 are raw 16-bit
 * patterns (uint16_t): bf16 the upper half of an IEEE float, fp16 IEEE
 * binary16. k and v share one type; out is fp32 or bf16. Logits and softmax
 * are fp32 always; with bf16 k/v on an ISA with bf16 dot products
 * (avx512_bf16) q and P are rounded to bf16 for the products, elsewhere the
 * inputs are widened to fp32 exactly (see attention.hpp). */
typedef enum spattn_dtype { SPATTN_FP32 = 0, SPATTN_BF16 = 1, SPATTN_FP16 = 2 } spattn_dtype;
typedef struct spattn_dtypes {
  spattn_dtype q, kv, out;
} spattn_dtypes;
/* "fp32", "bf16", "fp16"; "unknown" otherwise. */
const char* spattn_dtype_name(spattn_dtype dtype);

/* spattn_dense_attention on arrays of the given types (same layouts). */
spattn_status spattn_dense_attention_typed(const spattn_shape* shape, spattn_dtypes types, const void* q,
                                           const void* k, const void* v, void* out, int threads);

/* A block mask in CSR form. Row r = head * q_blocks + query_block, with
 * q_blocks = ceil(q_len / q_block), lists the key blocks it attends to in
 * col_idx[row_ptr[r] .. row_ptr[r + 1]), ascending, without duplicates, each
 * in [0, ceil(kv_len / k_block)). A row with no key blocks yields zeros. */
typedef struct spattn_block_mask {
  int64_t heads;          /* must equal shape->heads */
  int64_t q_block;        /* 16, 32, 64 or 128 */
  int64_t k_block;        /* 16, 32, 64 or 128 */
  const int64_t* row_ptr; /* heads * q_blocks + 1 entries: 0, ..., nnz, non-decreasing */
  const int32_t* col_idx; /* nnz entries (may be NULL when nnz is 0) */
  int64_t nnz;            /* entries in col_idx */
} spattn_block_mask;

/* Attention over the key blocks mask lists (the mask is validated first). */
spattn_status spattn_block_sparse_attention(const spattn_shape* shape, const float* q,
                                            const float* k, const float* v,
                                            const spattn_block_mask* mask, float* out,
                                            int threads);

/* spattn_block_sparse_attention on arrays of the given types. */
spattn_status spattn_block_sparse_attention_typed(const spattn_shape* shape, spattn_dtypes types, const void* q,
                                                  const void* k, const void* v, const spattn_block_mask* mask,
                                                  void* out, int threads);

/* ---- KV cache: cached diffusion decoding (see spattn/kv_cache.hpp) ----- */

/* Packed K/V of up to capacity tokens, kept between calls and written in
 * place: a refresh step writes all rows, a cached step the rows it
 * recomputed; each step then attends its few query rows against every cached
 * token. dtype is how K/V are kept (bf16 stays bf16 where the ISA has bf16
 * dot products; elsewhere, and for fp16, fp32). k_block: keys per packed
 * block, 16 ... 512, 0 for 64 (masks need a k_block that is a multiple). */
typedef struct spattn_kv_cache spattn_kv_cache;
spattn_status spattn_kv_cache_create(int64_t kv_heads, int64_t capacity, int64_t head_dim, spattn_dtype dtype,
                                     int64_t k_block, int threads, spattn_kv_cache** out);
/* k, v: [kv_heads][tokens][head_dim] of dtype, to positions [first, first + tokens);
 * first <= the cache's length (no gaps), first + tokens <= capacity. */
spattn_status spattn_kv_cache_write(spattn_kv_cache* cache, int64_t first, int64_t tokens, spattn_dtype dtype,
                                    const void* k, const void* v, int threads);
/* Row i of k, v ([kv_heads][count][head_dim]) to positions[i] (ascending, each < length). */
spattn_status spattn_kv_cache_write_rows(spattn_kv_cache* cache, const int32_t* positions, int64_t count,
                                         spattn_dtype dtype, const void* k, const void* v, int threads);
/* Cuts the cache back to length tokens (<= its length). */
spattn_status spattn_kv_cache_truncate(spattn_kv_cache* cache, int64_t length, int threads);
spattn_status spattn_kv_cache_length(const spattn_kv_cache* cache, int64_t* length);
/* Frees the cache; NULL is a no-op. */
void spattn_kv_cache_destroy(spattn_kv_cache* cache);

/* Attention of q ([heads][q_len][head_dim] of types.q) over every cached
 * token into out (types.out; types.kv is not read): shape->kv_len must equal
 * the cache's length. The queries are the rows listed in rows (q_len
 * ascending positions) or, with rows NULL, the rows [first, first + q_len)
 * (SPATTN_Q_OFFSET_END: the last q_len, or q_offset when causal). lse may be
 * NULL, else it receives each row's log-sum-exp (heads * q_len floats). Few
 * query rows split each head's keys over the threads and merge exactly. */
spattn_status spattn_cached_attention(const spattn_shape* shape, spattn_dtypes types, const void* q,
                                      const spattn_kv_cache* cache, int64_t first, const int32_t* rows, void* out,
                                      float* lse, int threads);
/* The same over the key blocks of a mask over the whole sequence (q_len =
 * kv_len = the cache's length): each query row uses its position's mask row. */
spattn_status spattn_cached_block_sparse_attention(const spattn_shape* shape, spattn_dtypes types, const void* q,
                                                   const spattn_kv_cache* cache, int64_t first, const int32_t* rows,
                                                   const spattn_block_mask* mask, void* out, int threads);
/* Exact attention over the union of disjoint key sets from each set's
 * normalized output (outs[i]: [heads][q_len][head_dim] floats) and rows'
 * log-sum-exp (lses[i]: heads * q_len floats, -INFINITY for a row that saw
 * no key), as from another process or machine; lse may be NULL. */
spattn_status spattn_merge_attention_states(int64_t parts, const float* const* outs, const float* const* lses,
                                            int64_t heads, int64_t q_len, int64_t head_dim, float* out, float* lse,
                                            int threads);

/* The linked library's version, "MAJOR.MINOR.PATCH" (SPATTN_VERSION_STRING of its build). */
const char* spattn_version(void);

/* ---- session: one per attention layer, one step per denoising step ------ */

typedef enum spattn_policy {
  SPATTN_POLICY_DENSE = 0,
  SPATTN_POLICY_SPARSED = 1,      /* dense warmup, then the recorded top-k block pattern */
  SPATTN_POLICY_UNISPARSE = 2,    /* blocks selected each step from pooled Q/K */
  SPATTN_POLICY_DPAD = 3,         /* far suffix tokens dropped */
  SPATTN_POLICY_DPAD_SPARSED = 4, /* DPad, then SparseD over the kept tokens */
  SPATTN_POLICY_WINDOW = 5        /* attention sinks + a local band */
} spattn_policy;

/* "dense", "sparsed", "unisparse", "dpad", "dpad+sparsed", "window"; "unknown" otherwise. */
const char* spattn_policy_name(spattn_policy policy);

/* DPad's keep rule for suffix tokens at distance d after the current block. */
typedef enum spattn_dpad_rule {
  SPATTN_DPAD_GAUSSIAN = 0,     /* the authors': min(1, scale * phi(k_sigma * d / (window - 1))), 0 past the window */
  SPATTN_DPAD_DENSE_WINDOW = 1  /* all of the window, then a Gaussian tail of width sigma */
} spattn_dpad_rule;

/* Start from spattn_session_config_default(): fields added later get their
 * defaults there. The session checks every field when it is created. */
typedef struct spattn_session_config {
  spattn_policy policy;   /* default SPATTN_POLICY_SPARSED */
  int64_t total_steps;    /* denoising steps, > 0 (default 64) */
  double warmup_fraction; /* first ceil(w * steps) steps run dense; in [0, 1) (default 0.2) */
  int64_t refresh_every;  /* re-record the SparseD pattern every R sparse steps; 0 never */
  int64_t block_size;     /* query and key block of the sparse paths: 16, 32, 64, 128 (64) */
  double topk_ratio;      /* share of key blocks kept per query block, in (0, 1] (0.1) */
  double unisparse_tau;   /* UniSparse: kept estimated mass, in (0, 1] (0.95) */
  int64_t window_sink_tokens; /* window policy: sink tokens >= 0 (64) */
  int64_t window_tokens;      /* window policy: band width >= 0 (512) */
  int64_t dpad_prefix_len;    /* DPad: prompt tokens [0, prefix_len) */
  int64_t dpad_block_start;   /* DPad: current block [block_start, block_end), <= kv_len */
  int64_t dpad_block_end;
  int64_t dpad_window; /* suffix tokens considered (gaussian) / always kept (dense window), >= 0 (256) */
  double dpad_sigma;   /* dense-window rule: decay beyond the window, > 0 (256) */
  uint64_t dpad_seed;  /* the drop decisions are a function of (seed, block, position) */
  int64_t q_tile_rows; /* query rows per work item of the dense paths: 16, 32, 64, 128, or
                        * 0 (the default): the ISA's preferred tile for the step's K/V dtype */
  int threads;         /* 0: SPATTN_NUM_THREADS, else OpenMP's default */
  int check_finite;    /* nonzero: refuse NaN / Inf in q, k, v (see top of file) */
  int pooled_budget;   /* nonzero: SparseD's top-k budget pooled across heads (0) */
  /* SparseD's adaptive budget: with mass_tau > 0 each row keeps the fewest key
   * blocks holding mass_tau of its mass (instead of topk_ratio), at most
   * max_block_share of the blocks; a head keeping more than dense_head_share
   * runs dense. 0 (default): off. Not with pooled_budget. */
  double mass_tau;
  double max_block_share;     /* (0, 1] (1) */
  double dense_head_share;    /* (0, 1] (1: never) */
  int record_on_new_block;    /* nonzero: re-record the SparseD pattern when the decoded block moves (0) */
  /* SparseD exactly as its authors' code selects: int(topk_ratio * n) + 1
   * blocks per row, over all keys for the prompt blocks and over the
   * generation keys alone for the rest (spattn_sparsed_paper_config sets the
   * authors' defaults). Nonzero paper_select; paper_prefix_len prompt tokens. */
  int paper_select;
  int64_t paper_prefix_len;
  int64_t warmup_steps; /* >= 0: exactly this many dense steps (overrides warmup_fraction); -1 (default) */
  /* SparseD drift check every drift_check_every sparse steps (0: never, the
   * default): on drift_sample_blocks query blocks per head (1), the share of
   * attention mass the cached pattern keeps; below drift_min_recall (0.9) for
   * any head the step re-records the pattern. */
  int64_t drift_check_every;
  int64_t drift_sample_blocks;
  double drift_min_recall;
  spattn_dpad_rule dpad_rule; /* SPATTN_DPAD_GAUSSIAN (the authors' rule, default) or SPATTN_DPAD_DENSE_WINDOW */
  double dpad_k_sigma; /* gaussian: the window ends at k_sigma standard deviations (4) */
  double dpad_scale;   /* gaussian: keep probability min(1, scale * phi(x)) (2) */
  /* Cached decoding (see spattn_session_cached_step): SPATTN_CACHE_NONE
   * (default), _BLOCK (the decoding block and every row after it
   * recomputed), _DUAL (the block alone), _ROWS (spattn_session_set_query_rows). */
  int cache;
} spattn_session_config;
#define SPATTN_CACHE_NONE 0
#define SPATTN_CACHE_BLOCK 1
#define SPATTN_CACHE_DUAL 2
#define SPATTN_CACHE_ROWS 3

/* SparseD as its authors run it (see sparsed_paper_config in session.hpp):
 * spattn_session_config_default(), then their dense steps, block, select and
 * selection rule for a sequence of seq_len tokens whose first prefix_len are
 * the prompt. */
spattn_status spattn_sparsed_paper_config(int64_t total_steps, int64_t prefix_len, int64_t seq_len,
                                          spattn_session_config* config);

/* Fills the defaults named above. */
spattn_status spattn_session_config_default(spattn_session_config* config);

typedef enum spattn_step_path {
  SPATTN_PATH_DENSE = 0,           /* full attention */
  SPATTN_PATH_DENSE_RECORD = 1,    /* full attention, SparseD pattern recorded */
  SPATTN_PATH_SPARSE_CACHED = 2,   /* block-sparse on the cached pattern */
  SPATTN_PATH_SPARSE_SELECTED = 3, /* pattern selected this step, then block-sparse */
  SPATTN_PATH_GATHERED = 4         /* DPad: attention over the kept tokens */
} spattn_step_path;

/* "dense", "dense+record", "sparse(cached)", "sparse(selected)", "gathered"; "unknown". */
const char* spattn_step_path_name(spattn_step_path path);

typedef struct spattn_step_report {
  int64_t step;          /* 0-based index of the step that ran */
  spattn_step_path path; /* what it ran */
  double ms;             /* whole step */
  double select_ms;      /* pattern recording / selection part of ms */
  double density;        /* share of (query block, key block) pairs visited */
  int64_t dense_heads;   /* sparse steps: heads that visited every key block (adaptive budget) */
  double drift_recall;   /* drift check: lowest per-head kept mass share; NaN when no check ran */
  double drift_ms;       /* the drift check's part of ms */
  int64_t query_rows;    /* rows the step attended: kv_len for a full step, fewer for a cached one */
} spattn_step_report;

typedef struct spattn_session spattn_session;

/* Checks shape and config (every field) and creates a session in *out; on
 * failure *out is set to NULL. */
spattn_status spattn_session_create(const spattn_shape* shape, const spattn_session_config* config,
                                    spattn_session** out);

/* Runs the next step on q, k, v (layout above) into out; report may be NULL.
 * Stepping past total_steps is SPATTN_ERROR_INVALID_ARGUMENT. */
spattn_status spattn_session_step(spattn_session* session, const float* q, const float* k,
                                  const float* v, float* out, spattn_step_report* report);

/* spattn_session_step on arrays of the given types. */
spattn_status spattn_session_step_typed(spattn_session* session, spattn_dtypes types, const void* q, const void* k,
                                        const void* v, void* out, spattn_step_report* report);

/* With config.cache set: a cached step over the mode's rows only (count:
 * spattn_session_cached_rows). q, out: [heads][rows][head_dim]; k, v:
 * [kv_heads][rows][head_dim], rows in ascending order. Their K/V replace the
 * cached ones; they attend every cached token on the last refresh's pattern
 * (a full spattn_session_step is the refresh). */
spattn_status spattn_session_cached_step(spattn_session* session, spattn_dtypes types, const void* q, const void* k,
                                         const void* v, void* out, spattn_step_report* report);
/* SPATTN_CACHE_ROWS: the rows the next cached steps recompute (ascending). */
spattn_status spattn_session_set_query_rows(spattn_session* session, const int32_t* rows, int64_t count);
/* The rows a cached step attends now: *count of them, at most capacity written. */
spattn_status spattn_session_cached_rows(const spattn_session* session, int32_t* rows, int64_t capacity,
                                         int64_t* count);

/* The block a block-wise sampler decodes now, [begin, end) in tokens; with
 * record_on_new_block a change re-records the SparseD pattern next step. */
spattn_status spattn_session_set_decoding_block(spattn_session* session, int64_t begin, int64_t end);

/* DPad's current block moved: the next step re-derives the kept tokens. */
spattn_status spattn_session_set_dpad_block(spattn_session* session, int64_t prefix_len,
                                            int64_t block_start, int64_t block_end);

/* DPad policies: the positions of the tokens the last step kept (ascending),
 * so a caller applies RoPE at their original positions. *count receives the
 * number kept (0 before the first step and for other policies); at most
 * capacity are written to positions (which may be NULL when capacity is 0). */
spattn_status spattn_session_dpad_kept(const spattn_session* session, int32_t* positions, int64_t capacity,
                                       int64_t* count);

/* Steps run so far. */
spattn_status spattn_session_steps_done(const spattn_session* session, int64_t* steps);

/* Frees the session; NULL is a no-op. The handle is invalid afterwards
 * (destroying it again is undefined, as for free()). */
void spattn_session_destroy(spattn_session* session);

/* ---- tuning profiles (YAML, written by spattn-tune) ---------------------- */
/* In a library built without yaml-cpp (SPATTN_WITH_YAML=OFF) these return
 * SPATTN_ERROR_UNSUPPORTED. */

typedef struct spattn_profile spattn_profile;

/* Loads and validates the profile at path. A missing, unreadable or malformed
 * file is SPATTN_ERROR_IO (the message names the file and the line). A profile
 * measured on another CPU / ISA loads with a warning on stderr, or, when
 * strict is nonzero, is refused with SPATTN_ERROR_IO. */
spattn_status spattn_profile_load(const char* path, int strict, spattn_profile** out);

/* Fills block_size, topk_ratio, warmup_fraction, q_tile_rows, threads,
 * pooled_budget, mass_tau, max_block_share and dense_head_share of *config
 * from the profile entry for (shape, steps) and config->policy (Profile::match
 * in profile.hpp): same head_dim, dtype and policy; entries whose seq_len and
 * steps are within 2x of the request first; then the same heads / kv_heads;
 * then the nearest seq_len = shape->kv_len; then the nearest steps. Other
 * fields are left as they are. When the best entry is more than 2x away (or
 * there is none), the fields get the documented defaults (block 64, top-k
 * 0.1, warmup 0.2, q tile 64, threads 0, per-head budget) and
 * SPATTN_NO_MATCH is returned with spattn_last_error() saying why; with
 * lenient nonzero an entry more than 2x away is used anyway (SPATTN_NO_MATCH,
 * the same message). */
spattn_status spattn_profile_lookup(const spattn_profile* profile, const spattn_shape* shape,
                                    int64_t steps, int lenient, spattn_session_config* config);

/* Frees the profile; NULL is a no-op. */
void spattn_profile_destroy(spattn_profile* profile);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* SPATTN_SPATTN_H_ */
