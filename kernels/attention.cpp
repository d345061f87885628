// The framework around the per-ISA micro-kernels: argument checks, key
// packing, and the OpenMP loop over (head, query block) work items. Each work
// item is computed by one thread in a fixed order, so results do not depend on
// the thread count.
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "dispatch/kernel_table.hpp"
#include "kernels/attention_internal.hpp"
#include "kernels/numa_placement.hpp"
#include "kernels/validate.hpp"
#include "spattn/attention.hpp"
#include "spattn/error.hpp"

namespace spattn {

bool is_supported_block_size(int64_t b) { return b == 16 || b == 32 || b == 64 || b == 128; }

int resolve_threads(const KernelOptions& opts) {
  if (opts.threads < 0)
    throw_bad_argument("KernelOptions", "threads", std::to_string(opts.threads),
                       "must be >= 0 (0 = SPATTN_NUM_THREADS or OpenMP's default)");
  if (opts.threads > 0) return opts.threads;
  if (const char* env = std::getenv("SPATTN_NUM_THREADS"); env != nullptr && *env != '\0') {
    char* end = nullptr;
    const long n = std::strtol(env, &end, 10);
    if (*end != '\0' || n <= 0 || n > 4096)
      throw_bad_argument("SPATTN_NUM_THREADS", "value", env, "must be an integer in [1, 4096]");
    return static_cast<int>(n);
  }
  return omp_get_max_threads();
}

namespace detail {

// Packs every key block of every kv head (transposed, zero-padded).
std::vector<float> pack_keys(const KernelTable& kt, const AttentionShape& shape, ConstTensorView k,
                             int64_t k_block, int threads) {
  const int64_t d = shape.head_dim;
  const int64_t per_head = packed_key_floats(shape.kv_len, k_block, d);
  const int64_t blocks = per_head / (k_block * d);
  std::vector<float> packed(static_cast<size_t>(per_head * shape.kv_heads));
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t item = 0; item < shape.kv_heads * blocks; ++item) {
    const int64_t h = item / blocks, b = item % blocks;
    const int64_t t0 = b * k_block;
    kt.pack_key_blocks(k.row(h, t0), k.token_stride, std::min(k_block, shape.kv_len - t0),
                       static_cast<int>(d), static_cast<int>(k_block),
                       packed.data() + h * per_head + b * k_block * d);
  }
  return packed;
}

// Packed keys and values of every kv head, placed per the NUMA plan.
struct PlacedKV {
  NumaPlan plan;
  std::unique_ptr<HeadBuffers> k_packed;  // per kv head: packed_key_floats(kv_len, k_block, d)
  std::unique_ptr<HeadBuffers> v_copy;    // per kv head, only with several nodes
  std::vector<const float*> v_heads;      // row 0 of each kv head's values
  int64_t v_stride = 0;
};

// Packs K (and, on several NUMA nodes, copies V) with the static split the
// attention loop uses, so each head's data is first touched, or allocated, on
// the node of the threads that read it.
PlacedKV place_kv(const KernelTable& kt, const AttentionShape& shape, ConstTensorView k,
                  ConstTensorView v, int64_t k_block, int threads) {
  const int64_t d = shape.head_dim;
  const int64_t per_head = packed_key_floats(shape.kv_len, k_block, d);
  const int64_t blocks = per_head / (k_block * d);
  PlacedKV p;
  p.plan = numa_plan(threads, shape.kv_heads);
  const bool placed = p.plan.nodes > 1;
  p.k_packed = std::make_unique<HeadBuffers>(p.plan, shape.kv_heads, per_head);
  if (placed) p.v_copy = std::make_unique<HeadBuffers>(p.plan, shape.kv_heads, shape.kv_len * d);
  const HeadBuffers& kb = *p.k_packed;
  const HeadBuffers* vb = p.v_copy.get();
#pragma omp parallel num_threads(threads)
  {
    if (placed) bind_thread_to_node(p.plan.node_of_thread(omp_get_thread_num(), omp_get_num_threads()));
#pragma omp for schedule(static)
    for (int64_t item = 0; item < shape.kv_heads * blocks; ++item) {
      const int64_t h = item / blocks, b = item % blocks;
      const int64_t t0 = b * k_block, rows = std::min(k_block, shape.kv_len - t0);
      kt.pack_key_blocks(k.row(h, t0), k.token_stride, rows, static_cast<int>(d),
                         static_cast<int>(k_block), kb.head(h) + b * k_block * d);
      if (placed)
        for (int64_t t = t0; t < t0 + rows; ++t) std::copy_n(v.row(h, t), d, vb->head(h) + t * d);
    }
  }
  p.v_heads.resize(static_cast<size_t>(shape.kv_heads));
  for (int64_t h = 0; h < shape.kv_heads; ++h) p.v_heads[h] = placed ? vb->head(h) : v.row(h, 0);
  p.v_stride = placed ? d : v.token_stride;
  return p;
}

// Runs attend_query_block for every (head, query block); key_blocks(h, qb)
// gives the blocks to visit.
template <class KeyBlocks>
void run_query_blocks(const AttentionShape& shape, ConstTensorView q, const PlacedKV& kv,
                      TensorView out, int64_t q_block, int64_t k_block, int threads,
                      KeyBlocks&& key_blocks, float* lse = nullptr) {
  const KernelTable& kt = active_kernels();
  const int64_t d = shape.head_dim;
  const int64_t q_blocks = (shape.q_len + q_block - 1) / q_block;
  const int64_t group = shape.group_size();
  const float scale = shape.effective_scale();
#pragma omp parallel num_threads(threads)
  {
    if (kv.plan.nodes > 1)
      bind_thread_to_node(kv.plan.node_of_thread(omp_get_thread_num(), omp_get_num_threads()));
    std::vector<float> scratch(static_cast<size_t>(scratch_floats(q_block, k_block, d)));
#pragma omp for schedule(static)
    for (int64_t item = 0; item < shape.heads * q_blocks; ++item) {
      const int64_t h = item / q_blocks, qb = item % q_blocks;
      const int64_t kvh = h / group;
      const int64_t r0 = qb * q_block;
      const std::span<const int32_t> blocks = key_blocks(h, qb);
      QueryBlockJob job;
      job.q = q.row(h, r0);
      job.q_stride = q.token_stride;
      job.rows = static_cast<int>(std::min(q_block, shape.q_len - r0));
      job.k_packed = kv.k_packed->head(kvh);
      job.v = kv.v_heads[kvh];
      job.v_stride = kv.v_stride;
      job.kv_len = shape.kv_len;
      job.head_dim = static_cast<int>(d);
      job.k_block = static_cast<int>(k_block);
      job.scale = scale;
      job.key_blocks = blocks.data();
      job.n_key_blocks = static_cast<int64_t>(blocks.size());
      job.out = out.row(h, r0);
      job.out_stride = out.token_stride;
      job.lse = lse != nullptr ? lse + h * shape.q_len + r0 : nullptr;
      job.scratch = scratch.data();
      kt.attend_query_block(job);
    }
  }
}

void dense_attention_unchecked(const AttentionShape& shape, ConstTensorView q, ConstTensorView k,
                               ConstTensorView v, TensorView out, int64_t q_block,
                               int64_t k_block, int threads, float* lse) {
  const PlacedKV kv = place_kv(active_kernels(), shape, k, v, k_block, threads);
  std::vector<int32_t> all((shape.kv_len + k_block - 1) / k_block);
  std::iota(all.begin(), all.end(), 0);
  run_query_blocks(shape, q, kv, out, q_block, k_block, threads,
                   [&](int64_t, int64_t) { return std::span<const int32_t>(all); }, lse);
}

}  // namespace detail

void dense_attention(const AttentionShape& shape, ConstTensorView q, ConstTensorView k,
                     ConstTensorView v, TensorView out, const KernelOptions& opts) {
  detail::check_views("dense_attention", shape, q, k, v, out);
  detail::check_kernel_limits("dense_attention", shape, opts.q_block, opts.k_block);
  detail::check_finite_inputs("dense_attention", opts, q, k, v);
  detail::dense_attention_unchecked(shape, q, k, v, out, opts.q_block, opts.k_block,
                                    resolve_threads(opts));
}

void dense_attention_with_lse(const AttentionShape& shape, ConstTensorView q, ConstTensorView k,
                              ConstTensorView v, TensorView out, float* lse,
                              const KernelOptions& opts) {
  detail::check_views("dense_attention_with_lse", shape, q, k, v, out);
  detail::check_kernel_limits("dense_attention_with_lse", shape, opts.q_block, opts.k_block);
  if (lse == nullptr) throw_bad_argument("dense_attention_with_lse", "lse", "nullptr", "must not be null");
  detail::check_finite_inputs("dense_attention_with_lse", opts, q, k, v);
  detail::dense_attention_unchecked(shape, q, k, v, out, opts.q_block, opts.k_block,
                                    resolve_threads(opts), lse);
}

void block_sparse_attention(const AttentionShape& shape, ConstTensorView q, ConstTensorView k,
                            ConstTensorView v, const BlockMask& mask, TensorView out,
                            const KernelOptions& opts) {
  const char* where = "block_sparse_attention";
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
  detail::check_finite_inputs(where, opts, q, k, v);
  const int threads = resolve_threads(opts);
  const detail::PlacedKV kv = detail::place_kv(detail::active_kernels(), shape, k, v, mask.k_block, threads);
  detail::run_query_blocks(shape, q, kv, out, mask.q_block, mask.k_block, threads,
                           [&](int64_t h, int64_t qb) { return mask.row(h, qb); });
}

void gathered_attention(const AttentionShape& shape, ConstTensorView q, ConstTensorView k,
                        ConstTensorView v, std::span<const int32_t> kept, TensorView out,
                        const KernelOptions& opts) {
  const char* where = "gathered_attention";
  detail::check_views(where, shape, q, k, v, out);
  detail::check_kernel_limits(where, shape, opts.q_block, opts.k_block);
  for (size_t i = 0; i < kept.size(); ++i) {
    if (kept[i] < 0 || kept[i] >= shape.kv_len)
      throw_bad_argument(where, ("kept[" + std::to_string(i) + "]").c_str(), std::to_string(kept[i]),
                         "out of range [0, kv_len " + std::to_string(shape.kv_len) + ")");
    if (i > 0 && kept[i] <= kept[i - 1])
      throw_bad_argument(where, ("kept[" + std::to_string(i) + "]").c_str(), std::to_string(kept[i]),
                         "kept tokens must be strictly increasing");
  }
  detail::check_finite_inputs(where, opts, q, k, v);
  const int threads = resolve_threads(opts);
  const int64_t d = shape.head_dim;
  if (kept.empty()) {  // every key dropped: attention over nothing is zero
    for (int64_t h = 0; h < shape.heads; ++h)
      for (int64_t t = 0; t < shape.q_len; ++t) std::fill_n(out.row(h, t), d, 0.0f);
    return;
  }
  const int64_t n = static_cast<int64_t>(kept.size());
  std::vector<float> kc(static_cast<size_t>(shape.kv_heads * n * d));
  std::vector<float> vc(kc.size());
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t item = 0; item < shape.kv_heads * n; ++item) {
    const int64_t h = item / n, i = item % n;
    std::copy_n(k.row(h, kept[i]), d, kc.data() + item * d);
    std::copy_n(v.row(h, kept[i]), d, vc.data() + item * d);
  }
  AttentionShape compact = shape;
  compact.kv_len = n;
  detail::dense_attention_unchecked(compact, q,
                                    ConstTensorView::heads_major(kc.data(), shape.kv_heads, n, d),
                                    ConstTensorView::heads_major(vc.data(), shape.kv_heads, n, d),
                                    out, opts.q_block, opts.k_block, threads);
}

}  // namespace spattn
