#include "kernels/validate.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <cstdint>
#include <utility>
#include <string>

#include <initializer_list>
#include <vector>

#include "kernels/convert.hpp"
#include "spattn/error.hpp"

namespace spattn::detail {
namespace {

void check_view(const char* where, const char* name, InputView t, int64_t heads,
                int64_t tokens, int64_t head_dim) {
  const std::string n(name);
  auto bad = [&](const std::string& field, int64_t value, const std::string& why) {
    throw_bad_argument(where, (n + field).c_str(), std::to_string(value), why);
  };
  if (t.data == nullptr) throw_bad_argument(where, (n + ".data").c_str(), "nullptr", "must not be null");
  if (t.heads != heads) bad(".heads", t.heads, "must be " + std::to_string(heads));
  if (t.tokens != tokens) bad(".tokens", t.tokens, "must be " + std::to_string(tokens));
  if (t.head_dim != head_dim) bad(".head_dim", t.head_dim, "must be " + std::to_string(head_dim));
  if (t.token_stride <= 0) bad(".token_stride", t.token_stride, "must be positive");
  if (t.head_stride <= 0) bad(".head_stride", t.head_stride, "must be positive");
  if (t.token_stride < head_dim && t.tokens > 1)
    bad(".token_stride", t.token_stride, "rows overlap: must be >= head_dim " + std::to_string(head_dim));
  // Same for heads: overlapping heads in out would be written by two threads.
  if (t.head_stride < head_dim && t.heads > 1)
    bad(".head_stride", t.head_stride, "heads overlap: must be >= head_dim " + std::to_string(head_dim));
}

// Throws at the first non-finite element; returns the largest magnitude.
double check_finite_view(const char* where, const char* name, InputView t) {
  float max_abs = 0.0f;
  std::vector<float> wide(static_cast<size_t>(t.head_dim));
  for (int64_t h = 0; h < t.heads; ++h)
    for (int64_t tok = 0; tok < t.tokens; ++tok) {
      widen_row(t.row(h, tok), t.dtype, wide.data(), t.head_dim);
      const float* row = wide.data();
      // Branch-free scan of a row; locate the element only on failure.
      bool ok = true;
      for (int64_t c = 0; c < t.head_dim; ++c) {
        ok &= std::isfinite(row[c]);
        max_abs = std::max(max_abs, std::fabs(row[c]));
      }
      if (ok) [[likely]]
        continue;
      int64_t c = 0;
      while (std::isfinite(row[c])) ++c;
      const float x = row[c];
      const std::string value = std::isnan(x) ? "nan" : (x > 0 ? "inf" : "-inf");
      throw_bad_argument(where, name, value,
                         "non-finite input at head " + std::to_string(h) + ", token " +
                             std::to_string(tok) + ", element " + std::to_string(c) +
                             " (KernelOptions::check_finite)");
    }
  return max_abs;
}

// [first byte, one past the last byte) of a view's extent.
std::pair<uintptr_t, uintptr_t> extent(InputView t) {
  const uintptr_t first = reinterpret_cast<uintptr_t>(t.data);
  const uintptr_t last = reinterpret_cast<uintptr_t>(t.row(t.heads - 1, t.tokens - 1)) +
                         static_cast<uintptr_t>(t.head_dim * dtype_bytes(t.dtype));
  return {std::min(first, last), std::max(first, last)};
}

// The kernels read q, k and v while other threads write out: out's extent may
// not meet theirs (out == q exactly included).
void check_out_separate(const char* where, InputView out, InputView t, const char* name) {
  const auto [o0, o1] = extent(out);
  const auto [t0, t1] = extent(t);
  if (o0 < t1 && t0 < o1)
    throw_bad_argument(where, "out", "overlaps " + std::string(name),
                       "must be a separate array (its extent may not overlap q, k or v)");
}

}  // namespace

void check_input_views(const char* where, const AttentionShape& shape, InputView q, InputView k,
                       const InputView* v) {
  try {
    shape.validate();
  } catch (const Error& e) {
    throw Error(std::string(e.what()) + " (in " + where + ")");
  }
  check_view(where, "q", q, shape.heads, shape.q_len, shape.head_dim);
  check_view(where, "k", k, shape.kv_heads, shape.kv_len, shape.head_dim);
  if (v != nullptr) check_view(where, "v", *v, shape.kv_heads, shape.kv_len, shape.head_dim);
  for (const InputView* t : std::initializer_list<const InputView*>{&q, &k, v})
    if (t != nullptr && t->dtype != DType::fp32 && t->dtype != DType::bf16 && t->dtype != DType::fp16)
      throw_bad_argument(where, t == &q ? "q.dtype" : (t == &k ? "k.dtype" : "v.dtype"),
                         std::to_string(static_cast<int>(t->dtype)), "must be fp32, bf16 or fp16");
  if (v != nullptr && v->dtype != k.dtype)
    throw_bad_argument(where, "v.dtype", dtype_name(v->dtype),
                       std::string("must equal k.dtype (") + dtype_name(k.dtype) + "): K and V share one type");
}

void check_views(const char* where, const AttentionShape& shape, InputView q, InputView k, InputView v,
                 InputView out) {
  check_input_views(where, shape, q, k, &v);
  check_view(where, "out", out, shape.heads, shape.q_len, shape.head_dim);
  if (out.dtype != DType::fp32 && out.dtype != DType::bf16)
    throw_bad_argument(where, "out.dtype", out.dtype == DType::fp16 ? "fp16" : std::to_string(static_cast<int>(out.dtype)),
                       "must be fp32 or bf16");
  check_out_separate(where, out, q, "q");
  check_out_separate(where, out, k, "k");
  check_out_separate(where, out, v, "v");
}

void check_query_views(const char* where, const AttentionShape& shape, InputView q, InputView out) {
  try {
    shape.validate();
  } catch (const Error& e) {
    throw Error(std::string(e.what()) + " (in " + where + ")");
  }
  check_view(where, "q", q, shape.heads, shape.q_len, shape.head_dim);
  if (q.dtype != DType::fp32 && q.dtype != DType::bf16 && q.dtype != DType::fp16)
    throw_bad_argument(where, "q.dtype", std::to_string(static_cast<int>(q.dtype)), "must be fp32, bf16 or fp16");
  check_view(where, "out", out, shape.heads, shape.q_len, shape.head_dim);
  if (out.dtype != DType::fp32 && out.dtype != DType::bf16)
    throw_bad_argument(where, "out.dtype", out.dtype == DType::fp16 ? "fp16" : std::to_string(static_cast<int>(out.dtype)),
                       "must be fp32 or bf16");
  check_out_separate(where, out, q, "q");
}

void check_positions(const char* where, const std::string& name, std::span<const int32_t> pos, int64_t limit,
                     const std::string& limit_note) {
  for (size_t i = 0; i < pos.size(); ++i) {
    const std::string arg = name + "[" + std::to_string(i) + "]";
    if (pos[i] < 0 || pos[i] >= limit)
      throw_bad_argument(where, arg.c_str(), std::to_string(pos[i]),
                         "out of range [0, " + std::to_string(limit) + ")" +
                             (limit_note.empty() ? std::string() : " (" + limit_note + ")"));
    if (i > 0 && pos[i] <= pos[i - 1])
      throw_bad_argument(where, arg.c_str(), std::to_string(pos[i]), name + " must be strictly increasing");
  }
}

void check_token_view(const char* where, const char* name, InputView t, int64_t heads, int64_t tokens,
                      int64_t head_dim) {
  check_view(where, name, t, heads, tokens, head_dim);
  if (t.dtype != DType::fp32 && t.dtype != DType::bf16 && t.dtype != DType::fp16)
    throw_bad_argument(where, (std::string(name) + ".dtype").c_str(), std::to_string(static_cast<int>(t.dtype)),
                       "must be fp32, bf16 or fp16");
}

namespace {
void check_kernel_head_dim(const char* where, const AttentionShape& shape) {
  if (shape.head_dim % kHeadDimMultiple != 0 || shape.head_dim > kMaxHeadDim)
    throw_bad_argument(where, "head_dim", std::to_string(shape.head_dim),
                       "the kernels need a multiple of 16 up to 256 (the baselines take any)");
}
}  // namespace

void check_kernel_limits(const char* where, const AttentionShape& shape, int64_t q_block,
                         int64_t k_block) {
  check_kernel_head_dim(where, shape);
  check_block_size(where, "q_block", q_block);
  check_block_size(where, "k_block", k_block);
}

void check_dense_limits(const char* where, const AttentionShape& shape, int64_t q_tile, int64_t k_block) {
  check_kernel_head_dim(where, shape);
  check_block_size(where, "q_block", q_tile);
  check_key_block(where, "k_block", k_block);
}

void check_tile_options(const char* where, const std::string& prefix, const KernelOptions& opts) {
  if (opts.q_tile_rows != 0) check_block_size(where, prefix + "q_tile_rows", opts.q_tile_rows);
  if (opts.k_block != 0) check_key_block(where, prefix + "k_block", opts.k_block);
  if (opts.kv_splits < 0 || opts.kv_splits > kMaxKvSplits)
    throw_bad_argument(where, (prefix + "kv_splits").c_str(), std::to_string(opts.kv_splits),
                       "must be in [0, " + std::to_string(kMaxKvSplits) + "] (0: chosen from the shape, 1: no split)");
}

TileSizes check_dense_tiles(const char* where, const AttentionShape& shape, const KernelOptions& opts,
                            DType kv_dtype) {
  check_tile_options(where, "opts.", opts);
  const TileSizes t = resolve_tiles(opts, kv_dtype);
  check_dense_limits(where, shape, t.q_tile_rows, t.k_block);
  return t;
}

void check_finite_inputs(const char* where, const KernelOptions& opts, const AttentionShape& shape, InputView q,
                         InputView k, InputView v) {
  if (!opts.check_finite) return;
  const double max_q = check_finite_view(where, "q", q);
  const double max_k = check_finite_view(where, "k", k);
  check_finite_view(where, "v", v);
  const double bound = static_cast<double>(shape.head_dim) * max_q * max_k * shape.effective_scale();
  if (bound > std::numeric_limits<float>::max())
    throw_bad_argument(where, "q, k", "max |q| " + std::to_string(max_q) + ", max |k| " + std::to_string(max_k),
                       "the logits scale * q.k may overflow fp32 (head_dim x max|q| x max|k| x scale = " +
                           std::to_string(bound) + " > 3.4e38; KernelOptions::check_finite)");
}

}  // namespace spattn::detail
