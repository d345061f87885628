// Links against the installed library and checks one dense attention call
// against the installed double-precision reference.
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
  std::vector<double> ref(out.size());
  spattn::reference_attention(s, qv, kv, vv, ref.data());
  double err = 0;
  for (size_t i = 0; i < out.size(); ++i) err = std::fmax(err, std::fabs(out[i] - ref[i]));
  std::printf("consumer: spattn %s path, max abs error %.2e\n",
              spattn::isa_name(spattn::active_isa()), err);
  return err < 1e-4 ? 0 : 1;
}
