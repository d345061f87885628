// Accuracy measures against the double-precision reference: relative L2
// error, row-wise and global cosine similarity.
#include <cmath>
#include <string>
#include <vector>

#include "spattn/error.hpp"
#include "spattn/lab/workload.hpp"

namespace spattn {
namespace {

void check_ref(const char* where, ConstTensorView out, const std::vector<double>& ref) {
  if (out.heads < 0 || out.tokens < 0 || out.head_dim < 0)
    throw_bad_argument(where, "out",
                       "heads/tokens/head_dim " + std::to_string(out.heads) + "/" +
                           std::to_string(out.tokens) + "/" + std::to_string(out.head_dim),
                       "must be >= 0");
  const int64_t n = out.heads * out.tokens * out.head_dim;
  if (static_cast<int64_t>(ref.size()) != n)
    throw_bad_argument(where, "ref.size()", std::to_string(ref.size()),
                       "must be out.heads * out.tokens * out.head_dim = " + std::to_string(n));
  if (n > 0 && out.data == nullptr)
    throw_bad_argument(where, "out.data", "nullptr", "must not be null");
}

// Cosine with the zero conventions: 0 vs 0 is 1, 0 vs non-zero is 0.
double cosine(double dot, double oo, double rr) {
  if (oo == 0.0 && rr == 0.0) return 1.0;
  if (oo == 0.0 || rr == 0.0) return 0.0;
  return dot / (std::sqrt(oo) * std::sqrt(rr));
}

}  // namespace

double relative_l2_error(ConstTensorView out, const std::vector<double>& ref) {
  check_ref("relative_l2_error", out, ref);
  double err = 0.0, norm = 0.0;
  for (int64_t h = 0; h < out.heads; ++h)
    for (int64_t t = 0; t < out.tokens; ++t) {
      const float* o = out.row(h, t);
      const double* r = ref.data() + (h * out.tokens + t) * out.head_dim;
      for (int64_t c = 0; c < out.head_dim; ++c) {
        const double e = static_cast<double>(o[c]) - r[c];
        err += e * e;
        norm += r[c] * r[c];
      }
    }
  return norm > 0.0 ? std::sqrt(err) / std::sqrt(norm) : std::sqrt(err);
}

double cosine_similarity(ConstTensorView out, const std::vector<double>& ref) {
  check_ref("cosine_similarity", out, ref);
  const int64_t rows = out.heads * out.tokens;
  if (rows == 0) return 1.0;
  double total = 0.0;
  for (int64_t h = 0; h < out.heads; ++h)
    for (int64_t t = 0; t < out.tokens; ++t) {
      const float* o = out.row(h, t);
      const double* r = ref.data() + (h * out.tokens + t) * out.head_dim;
      double dot = 0.0, oo = 0.0, rr = 0.0;
      for (int64_t c = 0; c < out.head_dim; ++c) {
        dot += o[c] * r[c];
        oo += static_cast<double>(o[c]) * o[c];
        rr += r[c] * r[c];
      }
      total += std::isnan(oo) ? NAN : cosine(dot, oo, rr);
    }
  return total / static_cast<double>(rows);
}

double global_cosine_similarity(ConstTensorView out, const std::vector<double>& ref) {
  check_ref("global_cosine_similarity", out, ref);
  double dot = 0.0, oo = 0.0, rr = 0.0;
  for (int64_t h = 0; h < out.heads; ++h)
    for (int64_t t = 0; t < out.tokens; ++t) {
      const float* o = out.row(h, t);
      const double* r = ref.data() + (h * out.tokens + t) * out.head_dim;
      for (int64_t c = 0; c < out.head_dim; ++c) {
        dot += o[c] * r[c];
        oo += static_cast<double>(o[c]) * o[c];
        rr += r[c] * r[c];
      }
    }
  return std::isnan(oo) ? NAN : cosine(dot, oo, rr);
}

}  // namespace spattn
