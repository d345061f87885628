// Links against the installed library (nothing of the lab is installed) and
// checks one dense attention call against a double-precision reference
// written here.
#include <spattn/spattn.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

int main() {
  const spattn::AttentionShape s{2, 1, 70, 90, 64};
  std::vector<float> q(s.heads * s.q_len * s.head_dim), k(s.kv_heads * s.kv_len * s.head_dim),
      v(k.size()), out(q.size());
  for (size_t i = 0; i < q.size(); ++i) q[i] = std::sin(0.37f * i);
  for (size_t i = 0; i < k.size(); ++i) k[i] = std::cos(0.11f * i), v[i] = std::sin(0.05f * i);
  using V = spattn::ConstTensorView;
  const V qv = V::heads_major(q.data(), s.heads, s.q_len, s.head_dim);
  const V kv = V::heads_major(k.data(), s.kv_heads, s.kv_len, s.head_dim);
  const V vv = V::heads_major(v.data(), s.kv_heads, s.kv_len, s.head_dim);
  spattn::dense_attention(s, qv, kv, vv,
                          spattn::TensorView::heads_major(out.data(), s.heads, s.q_len, s.head_dim));
  double err = 0;
  const int64_t d = s.head_dim, group = s.heads / s.kv_heads;
  for (int64_t h = 0; h < s.heads; ++h)
    for (int64_t t = 0; t < s.q_len; ++t) {
      const float* qr = qv.row(h, t);
      std::vector<double> p(s.kv_len);
      double mx = -INFINITY, sum = 0;
      for (int64_t j = 0; j < s.kv_len; ++j) {
        const float* kr = kv.row(h / group, j);
        double dot = 0;
        for (int64_t c = 0; c < d; ++c) dot += double(qr[c]) * kr[c];
        p[j] = dot / std::sqrt(double(d));
        mx = std::fmax(mx, p[j]);
      }
      for (double& x : p) sum += (x = std::exp(x - mx));
      for (int64_t c = 0; c < d; ++c) {
        double o = 0;
        for (int64_t j = 0; j < s.kv_len; ++j) o += p[j] * vv.row(h / group, j)[c];
        err = std::fmax(err, std::fabs(out[(h * s.q_len + t) * d + c] - o / sum));
      }
    }
  std::printf("consumer: spattn %s path, max abs error %.2e\n",
              spattn::isa_name(spattn::active_isa()), err);
  return err < 1e-4 ? 0 : 1;
}
