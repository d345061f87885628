// Double-precision reference attention: the yardstick for every kernel test
// and for the accuracy metrics. Straightforward on purpose.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "kernels/validate.hpp"
#include "spattn/lab/baselines.hpp"
#include "spattn/error.hpp"

namespace spattn {

void reference_attention(const AttentionShape& shape, ConstTensorView q, ConstTensorView k,
                         ConstTensorView v, double* out, const BlockMask* mask,
                         std::span<const int32_t> kept) {
  const char* where = "reference_attention";
  if (out == nullptr) throw_bad_argument(where, "out", "nullptr", "must not be null");
  // The output view only serves the shape check; reference output is doubles.
  const InputView v_any = v;
  detail::check_input_views(where, shape, q, k, &v_any);
  if (mask != nullptr) {
    mask->validate();
    if (mask->heads != shape.heads || mask->q_len != shape.q_len || mask->kv_len != shape.kv_len)
      throw_bad_argument(where, "mask", "heads/q_len/kv_len " + std::to_string(mask->heads) + "/" +
                                            std::to_string(mask->q_len) + "/" +
                                            std::to_string(mask->kv_len),
                         "must match the shape");
  }
  std::vector<char> kept_flag;
  if (!kept.empty()) {
    kept_flag.assign(static_cast<size_t>(shape.kv_len), 0);
    for (int32_t t : kept) {
      if (t < 0 || t >= shape.kv_len)
        throw_bad_argument(where, "kept", std::to_string(t), "out of range");
      kept_flag[t] = 1;
    }
  }
  const int64_t d = shape.head_dim, n = shape.kv_len, group = shape.group_size();
  const double scale = shape.effective_scale();
#pragma omp parallel
  {
    std::vector<double> logits(static_cast<size_t>(n));
    std::vector<char> allowed(static_cast<size_t>(n));
#pragma omp for schedule(static)
    for (int64_t item = 0; item < shape.heads * shape.q_len; ++item) {
      const int64_t h = item / shape.q_len, t = item % shape.q_len, kvh = h / group;
      for (int64_t j = 0; j < n; ++j) allowed[j] = kept_flag.empty() ? 1 : kept_flag[j];
      if (shape.causal)  // key j sits at position j, query t at query_position0() + t
        for (int64_t j = shape.query_position0() + t + 1; j < n; ++j) allowed[j] = 0;
      if (mask != nullptr) {
        std::vector<char> in_mask(static_cast<size_t>(mask->k_blocks()), 0);
        for (int32_t b : mask->row(h, t / mask->q_block)) in_mask[b] = 1;
        for (int64_t j = 0; j < n; ++j) allowed[j] &= in_mask[j / mask->k_block];
      }
      const float* qr = q.row(h, t);
      double mx = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < n; ++j) {
        if (!allowed[j]) continue;
        const float* kr = k.row(kvh, j);
        double dot = 0.0;
        for (int64_t c = 0; c < d; ++c) dot += static_cast<double>(qr[c]) * kr[c];
        logits[j] = dot * scale;
        mx = std::max(mx, logits[j]);
      }
      double* o = out + (h * shape.q_len + t) * d;
      for (int64_t c = 0; c < d; ++c) o[c] = 0.0;
      if (mx == -std::numeric_limits<double>::infinity()) continue;  // fully masked row
      double sum = 0.0;
      for (int64_t j = 0; j < n; ++j) {
        if (!allowed[j]) continue;
        const double p = std::exp(logits[j] - mx);
        sum += p;
        const float* vr = v.row(kvh, j);
        for (int64_t c = 0; c < d; ++c) o[c] += p * vr[c];
      }
      for (int64_t c = 0; c < d; ++c) o[c] /= sum;
    }
  }
}

}  // namespace spattn
