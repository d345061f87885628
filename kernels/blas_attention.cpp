// OpenBLAS dense attention: sgemm for QK^T, a row-wise softmax (the active
// ISA's vector exp), sgemm for PV, tiled over query rows so memory stays
// O(tile x kv_len). OpenBLAS does the threading inside each sgemm.
#include <algorithm>
#include <cmath>
#include <vector>

#include "spattn/config.h"
#include "dispatch/kernel_table.hpp"
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

void blas_attention(const AttentionShape& shape, ConstTensorView q, ConstTensorView k,
                    ConstTensorView v, TensorView out, const KernelOptions& opts) {
  detail::check_views("blas_attention", shape, q, k, v, out);
#if !SPATTN_HAS_BLAS
  (void)opts;
  throw Error("spattn: blas_attention: this build has no OpenBLAS (SPATTN_WITH_BLAS=OFF)");
#else
  constexpr int64_t kTileRows = 256;  // large enough for sgemm to reach its peak
  openblas_set_num_threads(resolve_threads(opts));
  const detail::KernelTable& kt = detail::active_kernels();
  const int64_t d = shape.head_dim, n = shape.kv_len, group = shape.group_size();
  const float scale = shape.effective_scale();
  std::vector<float> s(static_cast<size_t>(kTileRows * n));
  for (int64_t h = 0; h < shape.heads; ++h) {
    const int64_t kvh = h / group;
    for (int64_t r0 = 0; r0 < shape.q_len; r0 += kTileRows) {
      const int64_t rows = std::min(kTileRows, shape.q_len - r0);
      // Causal: the tile's last row sees keys [0, cols); earlier rows are masked below.
      const int64_t pos0 = shape.query_position0() + r0;
      const int64_t cols = shape.causal ? std::min(n, pos0 + rows) : n;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, cols, d, scale, q.row(h, r0),
                  q.token_stride, k.row(kvh, 0), k.token_stride, 0.0f, s.data(), cols);
      std::vector<float> inv(static_cast<size_t>(rows));
      for (int64_t r = 0; r < rows; ++r) {
        float* row = s.data() + r * cols;
        const int64_t seen = shape.causal ? pos0 + r + 1 : cols;
        std::fill(row + seen, row + cols, -INFINITY);
        const float mx = *std::max_element(row, row + seen);
        for (int64_t j = 0; j < cols; ++j) row[j] -= mx;
        kt.exp_inplace(row, cols);
        float sum = 0.0f;
        for (int64_t j = 0; j < cols; ++j) sum += row[j];
        inv[r] = 1.0f / sum;
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, d, cols, 1.0f, s.data(), cols,
                  v.row(kvh, 0), v.token_stride, 0.0f, out.row(h, r0), out.token_stride);
      for (int64_t r = 0; r < rows; ++r) {
        float* o = out.row(h, r0 + r);
        for (int64_t c = 0; c < d; ++c) o[c] *= inv[r];
      }
    }
  }
#endif
}

}  // namespace spattn
