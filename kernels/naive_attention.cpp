// Naive three-pass dense attention (scores, softmax, weighted sum) in fp32:
// the baseline a user would write first. Threads over (head, query row).
#include <cmath>
#include <vector>

#include "kernels/validate.hpp"
#include "spattn/lab/baselines.hpp"

namespace spattn {

void naive_attention(const AttentionShape& shape, ConstTensorView q, ConstTensorView k,
                     ConstTensorView v, TensorView out, const KernelOptions& opts) {
  detail::check_views("naive_attention", shape, q, k, v, out);
  const int threads = resolve_threads(opts);
  const int64_t d = shape.head_dim, n = shape.kv_len, group = shape.group_size();
  const float scale = shape.effective_scale();
#pragma omp parallel num_threads(threads)
  {
    std::vector<float> p(static_cast<size_t>(n));
#pragma omp for schedule(static)
    for (int64_t item = 0; item < shape.heads * shape.q_len; ++item) {
      const int64_t h = item / shape.q_len, t = item % shape.q_len, kvh = h / group;
      const float* qr = q.row(h, t);
      const int64_t seen = shape.causal ? shape.query_position0() + t + 1 : n;  // keys the row sees
      float mx = -INFINITY;
      for (int64_t j = 0; j < seen; ++j) {
        const float* kr = k.row(kvh, j);
        float dot = 0.0f;
        for (int64_t c = 0; c < d; ++c) dot += qr[c] * kr[c];
        p[j] = dot * scale;
        mx = p[j] > mx ? p[j] : mx;
      }
      float sum = 0.0f;
      for (int64_t j = 0; j < seen; ++j) {
        p[j] = std::exp(p[j] - mx);
        sum += p[j];
      }
      float* o = out.row(h, t);
      for (int64_t c = 0; c < d; ++c) o[c] = 0.0f;
      for (int64_t j = 0; j < seen; ++j) {
        const float* vr = v.row(kvh, j);
        for (int64_t c = 0; c < d; ++c) o[c] += p[j] * vr[c];
      }
      const float inv = 1.0f / sum;
      for (int64_t c = 0; c < d; ++c) o[c] *= inv;
    }
  }
}

}  // namespace spattn
