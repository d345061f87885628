// The public attention entry points: argument checks, then one engine pass
// (kernels/engine/) each.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "kernels/kernel_table.hpp"
#include "kernels/attention_internal.hpp"
#include "kernels/convert.hpp"
#include "kernels/engine/engine.hpp"
#include "kernels/engine/phase_timer.hpp"
#include "kernels/validate.hpp"
#include "spattn/attention.hpp"
#include "spattn/error.hpp"

namespace spattn {

bool is_supported_block_size(int64_t b) { return b == 16 || b == 32 || b == 64 || b == 128; }
bool is_supported_key_block(int64_t b) { return is_supported_block_size(b) || b == 256 || b == 512; }
void check_key_block(const char* where, const std::string& field, int64_t value) {
  if (!is_supported_key_block(value)) throw_bad_argument(where, field.c_str(), std::to_string(value), kKeyBlockRule);
}

void check_block_size(const char* where, const std::string& field, int64_t value) {
  if (!is_supported_block_size(value)) throw_bad_argument(where, field.c_str(), std::to_string(value), kBlockSizeRule);
}

int64_t blocks_for_ratio(double ratio, int64_t k_blocks) {
  return std::clamp<int64_t>(static_cast<int64_t>(std::ceil(ratio * static_cast<double>(k_blocks) - 1e-9)), 1,
                             k_blocks);
}

void check_thread_count(const char* where, const char* field, int64_t threads) {
  if (threads < 0 || threads > kMaxThreads)
    throw_bad_argument(where, field, std::to_string(threads),
                       "must be in [0, " + std::to_string(kMaxThreads) +
                           "] (0 = SPATTN_NUM_THREADS or all cores)");
}

TileSizes preferred_tiles(DType kv_dtype) {
  const detail::KernelTable& kt = detail::active_kernels();
  return kv_dtype == DType::bf16 && kt.has_bf16() ? kt.tiles_bf16 : kt.tiles_fp32;
}

TileSizes resolve_tiles(const KernelOptions& opts, DType kv_dtype) {
  TileSizes t = preferred_tiles(kv_dtype);
  if (opts.q_tile_rows != 0) t.q_tile_rows = opts.q_tile_rows;
  if (opts.k_block != 0) t.k_block = opts.k_block;
  return t;
}

int resolve_threads(const KernelOptions& opts) {
  check_thread_count("KernelOptions", "threads", opts.threads);
  if (opts.threads > 0) return opts.threads;
  if (const char* env = std::getenv("SPATTN_NUM_THREADS"); env != nullptr && *env != '\0') {
    char* end = nullptr;
    const long n = std::strtol(env, &end, 10);
    if (*end != '\0' || n <= 0 || n > kMaxThreads)
      throw_bad_argument("SPATTN_NUM_THREADS", "value", env,
                         "must be an integer in [1, " + std::to_string(kMaxThreads) + "]");
    return static_cast<int>(n);
  }
  return std::min(detail::default_threads(), kMaxThreads);
}

namespace {

void check_kept(const char* where, std::span<const int32_t> kept, int64_t tokens) {
  detail::check_positions(where, "kept", kept, tokens);
}

void check_view_basics(const char* where, const char* name, InputView x) {
  if (x.data == nullptr && x.heads * x.tokens > 0)
    throw_bad_argument(where, name, "nullptr", "must not be null");
  if (x.heads < 0 || x.tokens < 0 || x.head_dim <= 0)
    throw_bad_argument(where, name, std::to_string(x.heads) + "x" + std::to_string(x.tokens) + "x" +
                       std::to_string(x.head_dim), "needs heads, tokens >= 0 and head_dim > 0");
}

// Causal: a mask may not list a key block wholly after the last query of its
// row (a policy that did so computed a pattern for the wrong problem).
void check_causal_mask(const char* where, const AttentionShape& shape, const BlockMask& mask) {
  const int64_t pos0 = shape.query_position0();
  for (int64_t h = 0; h < mask.heads; ++h)
    for (int64_t qb = 0; qb < mask.q_blocks(); ++qb) {
      const std::span<const int32_t> row = mask.row(h, qb);
      if (row.empty()) continue;
      const int64_t last_pos = pos0 + std::min(shape.q_len, (qb + 1) * mask.q_block) - 1;
      if (row.back() * mask.k_block > last_pos)
        throw_bad_argument(where, ("mask row (head " + std::to_string(h) + ", query block " + std::to_string(qb) + ")").c_str(),
                           "key block " + std::to_string(row.back()),
                           "lies after the row's last query (position " + std::to_string(last_pos) +
                               "): a causal mask may list only key blocks up to the diagonal");
    }
}

}  // namespace

namespace detail {

void dense_attention_unchecked(const AttentionShape& shape, InputView q, InputView k, InputView v,
                               OutputView out, int64_t q_block, int64_t k_block, int threads, float* lse,
                               int kv_splits) {
  const KVPlan kv(shape, k, v, k_block, threads);
  const std::vector<int32_t> all = all_key_blocks(kv);
  attend(shape, q, kv, out, q_block, [&](int64_t, int64_t) { return std::span<const int32_t>(all); }, threads,
         AttendExtras{lse, nullptr, {}, kv_splits});
}

}  // namespace detail

void dense_attention(const AttentionShape& shape, InputView q, InputView k, InputView v, OutputView out,
                     const KernelOptions& opts) {
  const detail::PhaseTimer timer("dense_attention");
  detail::check_views("dense_attention", shape, q, k, v, out);
  const TileSizes t = detail::check_dense_tiles("dense_attention", shape, opts, k.dtype);
  detail::check_finite_inputs("dense_attention", opts, shape, q, k, v);
  detail::dense_attention_unchecked(shape, q, k, v, out, t.q_tile_rows, t.k_block, resolve_threads(opts), nullptr,
                                    opts.kv_splits);
}

void dense_attention_with_lse(const AttentionShape& shape, InputView q, InputView k, InputView v, OutputView out,
                              float* lse, const KernelOptions& opts) {
  const detail::PhaseTimer timer("dense_attention_with_lse");
  detail::check_views("dense_attention_with_lse", shape, q, k, v, out);
  const TileSizes t = detail::check_dense_tiles("dense_attention_with_lse", shape, opts, k.dtype);
  if (lse == nullptr) throw_bad_argument("dense_attention_with_lse", "lse", "nullptr", "must not be null");
  detail::check_finite_inputs("dense_attention_with_lse", opts, shape, q, k, v);
  detail::dense_attention_unchecked(shape, q, k, v, out, t.q_tile_rows, t.k_block, resolve_threads(opts), lse,
                                    opts.kv_splits);
}

void block_sparse_attention(const AttentionShape& shape, InputView q, InputView k, InputView v,
                            const BlockMask& mask, OutputView out, const KernelOptions& opts) {
  const char* where = "block_sparse_attention";
  const detail::PhaseTimer timer(where);
  detail::check_views(where, shape, q, k, v, out);
  detail::check_kernel_limits(where, shape, mask.q_block, mask.k_block);
  mask.validate();
  if (mask.heads != shape.heads)
    throw_bad_argument(where, "mask.heads", std::to_string(mask.heads),
                       "must equal shape.heads " + std::to_string(shape.heads));
  if (mask.q_len != shape.q_len)
    throw_bad_argument(where, "mask.q_len", std::to_string(mask.q_len),
                       "must equal shape.q_len " + std::to_string(shape.q_len));
  if (mask.kv_len != shape.kv_len)
    throw_bad_argument(where, "mask.kv_len", std::to_string(mask.kv_len),
                       "must equal shape.kv_len " + std::to_string(shape.kv_len));
  if (shape.causal) check_causal_mask(where, shape, mask);
  detail::check_finite_inputs(where, opts, shape, q, k, v);
  const int threads = resolve_threads(opts);
  const detail::KVPlan kv(shape, k, v, mask.k_block, threads);
  detail::attend(shape, q, kv, out, mask.q_block, [&](int64_t h, int64_t qb) { return mask.row(h, qb); },
                 threads, detail::AttendExtras{nullptr, nullptr, {}, opts.kv_splits});
}

void gathered_attention(const AttentionShape& shape, InputView q, InputView k, InputView v,
                        std::span<const int32_t> kept, OutputView out, const KernelOptions& opts) {
  const char* where = "gathered_attention";
  const detail::PhaseTimer timer(where);
  detail::check_views(where, shape, q, k, v, out);
  const TileSizes tiles = detail::check_dense_tiles(where, shape, opts, k.dtype);
  check_kept(where, kept, shape.kv_len);
  detail::check_finite_inputs(where, opts, shape, q, k, v);
  const int threads = resolve_threads(opts);
  if (kept.empty()) {  // every key dropped: attention over nothing is zero
    for (int64_t h = 0; h < shape.heads; ++h)
      for (int64_t t = 0; t < shape.q_len; ++t)
        std::memset(out.row(h, t), 0, static_cast<size_t>(shape.head_dim * dtype_bytes(out.dtype)));  // 0 in f32 and bf16
    return;
  }
  // The same compaction the session's DPad steps use.
  std::vector<float> kc, vc;
  const InputView kk = detail::gather_tokens(k, kept, threads, kc);
  const InputView vv = detail::gather_tokens(v, kept, threads, vc);
  AttentionShape compact = shape;
  compact.kv_len = static_cast<int64_t>(kept.size());
  if (shape.causal) compact.q_offset = shape.query_position0();  // positions stay those of the full cache
  detail::KVPlan kv(compact, kk, vv, tiles.k_block, threads);
  if (shape.causal) kv.set_key_positions(kept);  // compact key i sits at position kept[i]
  const std::vector<int32_t> all = detail::all_key_blocks(kv);
  detail::attend(compact, q, kv, out, tiles.q_tile_rows, [&](int64_t, int64_t) { return std::span<const int32_t>(all); },
                 threads, detail::AttendExtras{nullptr, nullptr, {}, opts.kv_splits});
}

void merge_attention_states(std::span<const AttentionPart> parts, OutputView out, float* lse,
                            const KernelOptions& opts) {
  const char* where = "merge_attention_states";
  check_view_basics(where, "out", out);
  if (out.dtype != DType::fp32 && out.dtype != DType::bf16)
    throw_bad_argument(where, "out.dtype", dtype_name(out.dtype), "must be fp32 or bf16");
  if (parts.empty()) throw_bad_argument(where, "parts", "empty", "needs at least one part");
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string name = "parts[" + std::to_string(i) + "]";
    const InputView& p = parts[i].out;
    check_view_basics(where, (name + ".out").c_str(), p);
    if (p.heads != out.heads || p.tokens != out.tokens || p.head_dim != out.head_dim)
      throw_bad_argument(where, (name + ".out").c_str(),
                         std::to_string(p.heads) + "x" + std::to_string(p.tokens) + "x" + std::to_string(p.head_dim),
                         "must be out's shape " + std::to_string(out.heads) + "x" + std::to_string(out.tokens) + "x" +
                             std::to_string(out.head_dim));
    if (p.dtype != DType::fp32 && p.dtype != DType::bf16)
      throw_bad_argument(where, (name + ".out.dtype").c_str(), dtype_name(p.dtype), "must be fp32 or bf16");
    if (parts[i].lse == nullptr && out.heads * out.tokens > 0)
      throw_bad_argument(where, (name + ".lse").c_str(), "nullptr", "must not be null");
  }
  const int64_t T = out.tokens, d = out.head_dim, n = static_cast<int64_t>(parts.size());
  detail::parallel_for(resolve_threads(opts), out.heads * T, [&](int64_t begin, int64_t end) {
    std::vector<float> wide(static_cast<size_t>(n * d)), lses(static_cast<size_t>(n)), merged(static_cast<size_t>(d));
    std::vector<const float*> rows(static_cast<size_t>(n));
    for (int64_t i = begin; i < end; ++i) {
      for (int64_t p = 0; p < n; ++p) {
        float* row = wide.data() + p * d;
        detail::widen_row(parts[static_cast<size_t>(p)].out.row(i / T, i % T), parts[static_cast<size_t>(p)].out.dtype, row, d);
        rows[static_cast<size_t>(p)] = row;
        lses[static_cast<size_t>(p)] = parts[static_cast<size_t>(p)].lse[i];
      }
      const float l = detail::merge_attention_rows(rows.data(), lses.data(), n, d, merged.data());
      detail::store_row(merged.data(), out.row(i / T, i % T), out.dtype, d);
      if (lse != nullptr) lse[i] = l;
    }
  });
}

ConstTensorView gather_tokens(ConstTensorView x, std::span<const int32_t> kept, std::vector<float>& dst,
                              const KernelOptions& opts) {
  check_view_basics("gather_tokens", "x", x);
  check_kept("gather_tokens", kept, x.tokens);
  return detail::gather_tokens(x, kept, resolve_threads(opts), dst).as<const float>();
}

void scatter_tokens(ConstTensorView src, std::span<const int32_t> kept, TensorView out, const KernelOptions& opts) {
  check_view_basics("scatter_tokens", "out", out);
  check_kept("scatter_tokens", kept, out.tokens);
  if (!kept.empty()) {
    check_view_basics("scatter_tokens", "src", src);
    if (src.heads != out.heads || src.tokens != static_cast<int64_t>(kept.size()) || src.head_dim != out.head_dim)
      throw_bad_argument("scatter_tokens", "src", "shape", "must be [out.heads][kept.size()][out.head_dim]");
  }
  detail::scatter_tokens(src, kept, out, resolve_threads(opts));
}

}  // namespace spattn
