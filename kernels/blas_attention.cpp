// OpenBLAS dense attention, written as a user would on a many-core machine:
// work items of (head, query tile) run in parallel on spattn's thread pool,
// each a single-threaded sgemm for QK^T, a row-wise softmax (the active ISA's
// vector exp) and a single-threaded sgemm for PV, with its own score tile so
// memory stays O(threads x tile x kv_len). BLAS threads are never nested
// inside the pool's (OpenBLAS is set to one thread): nesting oversubscribes
// the cores and left the softmax serial, which made the earlier version of
// this baseline 49x slower than flash on 16 cores.
#include <algorithm>
#include <cmath>
#include <vector>

#include "spattn/config.h"
#include "kernels/kernel_table.hpp"
#include "kernels/engine/parallel.hpp"
#include "kernels/validate.hpp"
#include "spattn/lab/baselines.hpp"
#include "spattn/error.hpp"

#if SPATTN_HAS_BLAS
#include <cblas.h>
#endif

namespace spattn {

bool have_blas() {
#if SPATTN_HAS_BLAS
  return true;
#else
  return false;
#endif
}

#if SPATTN_HAS_BLAS
namespace {

constexpr int64_t kBlasTileRows = 256;  // large enough for sgemm to reach its peak

// Rows [r0, r0 + kBlasTileRows) of head h: sgemm, softmax, sgemm, in the
// calling thread, with s (kBlasTileRows x kv_len) as the score tile.
void blas_tile(const AttentionShape& shape, ConstTensorView q, ConstTensorView k, ConstTensorView v, TensorView out,
               int64_t h, int64_t r0, float* s) {
  const detail::KernelTable& kt = detail::active_kernels();
  const int64_t d = shape.head_dim, n = shape.kv_len, kvh = h / shape.group_size();
  const int64_t rows = std::min(kBlasTileRows, shape.q_len - r0);
  // Causal: the tile's last row sees keys [0, cols); earlier rows are masked below.
  const int64_t pos0 = shape.query_position0() + r0;
  const int64_t cols = shape.causal ? std::min(n, pos0 + rows) : n;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, cols, d, shape.effective_scale(), q.row(h, r0),
              q.token_stride, k.row(kvh, 0), k.token_stride, 0.0f, s, cols);
  float inv[kBlasTileRows];
  for (int64_t r = 0; r < rows; ++r) {
    float* row = s + r * cols;
    const int64_t seen = shape.causal ? pos0 + r + 1 : cols;
    std::fill(row + seen, row + cols, -INFINITY);
    const float mx = *std::max_element(row, row + seen);
    for (int64_t j = 0; j < cols; ++j) row[j] -= mx;
    kt.exp_inplace(row, cols);
    float sum = 0.0f;
    for (int64_t j = 0; j < cols; ++j) sum += row[j];
    inv[r] = 1.0f / sum;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, d, cols, 1.0f, s, cols, v.row(kvh, 0), v.token_stride,
              0.0f, out.row(h, r0), out.token_stride);
  for (int64_t r = 0; r < rows; ++r) {
    float* o = out.row(h, r0 + r);
    for (int64_t c = 0; c < d; ++c) o[c] *= inv[r];
  }
}

}  // namespace
#endif

void blas_attention(const AttentionShape& shape, ConstTensorView q, ConstTensorView k,
                    ConstTensorView v, TensorView out, const KernelOptions& opts) {
  detail::check_views("blas_attention", shape, q, k, v, out);
#if !SPATTN_HAS_BLAS
  (void)opts;
  throw Error("spattn: blas_attention: this build has no OpenBLAS (SPATTN_WITH_BLAS=OFF)");
#else
  const int threads = resolve_threads(opts);
  openblas_set_num_threads(1);
  const int64_t tiles = (shape.q_len + kBlasTileRows - 1) / kBlasTileRows;
  detail::parallel_for(
      threads, shape.heads * tiles,
      [&](int64_t begin, int64_t end) {
        std::vector<float> s(static_cast<size_t>(kBlasTileRows * shape.kv_len));
        for (int64_t item = begin; item < end; ++item) {
          // Causal tiles grow with their row: pair light and heavy tiles
          // (0, last, 1, last - 1, ...) so every thread's range weighs the same.
          const int64_t j = item % tiles;
          const int64_t tile = !shape.causal ? j : (j % 2 == 0 ? j / 2 : tiles - 1 - j / 2);
          blas_tile(shape, q, k, v, out, item / tiles, tile * kBlasTileRows, s.data());
        }
      },
      detail::Schedule::contiguous);
#endif
}

}  // namespace spattn
