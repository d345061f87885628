// online_softmax_update: the running-max / running-sum step of flash attention
// for one tile of logits, turning the logits into unnormalized probabilities.
// Included inside a per-ISA namespace that defines Ops.

// Where online_softmax_rows puts a row's probabilities: back into the logit
// row, the fp32 path's P.
struct ProbsInPlace {
  static constexpr float kExpArg = Ops::kExpArg;
  static typename Ops::V exp(typename Ops::V x) { return Ops::exp_p(x); }
  void put(int, float* row, int j, typename Ops::V p) const { Ops::store(row + j, p); }
  void put_tail(int, float* row, int j0, const float* pad, int n) const {
    for (int j = 0; j < n; ++j) row[j0 + j] = pad[j];
  }
};

// The step for rows of logits s (already scaled when scale is 1; otherwise
// the scale is applied here, folded into the exp argument: the bf16 AMX path
// saves a pass over the tile that way). scale > 0. Probabilities go to sink,
// whose exp computes them (the bf16 path's may be coarser: P is rounded to
// bf16 next); the rescale factors always use Ops::exp. Sink::exp(x *
// Sink::kExpArg) = e^x: a sink whose exp is 2^x (kExpArg log2 e) gets its
// argument in base 2 from the same fma.
template <class Sink>
inline void online_softmax_rows(float* s, int ld_s, int rows, int cols, float* row_max, float* row_sum,
                                float* rescale, float scale, const Sink& sink) {
  using V = typename Ops::V;
  constexpr int W = Ops::W;
  constexpr float kNegInf = -__builtin_inff();
  const int full = cols / W * W;
  const int tail = cols - full;
  for (int r = 0; r < rows; ++r) {
    float* row = s + static_cast<int64_t>(r) * ld_s;
    // The tail goes through a -inf padded vector so every element sees the same exp.
    alignas(64) float pad[W];
    if (tail > 0) {
      for (int j = 0; j < W; ++j) pad[j] = j < tail ? row[full + j] : kNegInf;
    }
    // Four independent max (and below, sum) chains: one chain is bound by
    // the max / add latency, 4 cycles a vector, where the loads allow 2 a
    // cycle (on AMX steps of 512 keys that was most of the max pass).
    V m4[4] = {Ops::set1(kNegInf), Ops::set1(kNegInf), Ops::set1(kNegInf), Ops::set1(kNegInf)};
    int j4 = 0;
    for (; j4 + 4 * W <= full; j4 += 4 * W)
      for (int k = 0; k < 4; ++k) m4[k] = Ops::max(m4[k], Ops::load(row + j4 + k * W));
    for (int j = j4; j < full; j += W) m4[0] = Ops::max(m4[0], Ops::load(row + j));
    if (tail > 0) m4[0] = Ops::max(m4[0], Ops::load(pad));
    const V vmax = Ops::max(Ops::max(m4[0], m4[1]), Ops::max(m4[2], m4[3]));
    const float tile_max = Ops::hmax(vmax) * scale;  // max(s) * scale = max(s * scale): scale > 0
    const float old_max = row_max[r];
    const float new_max = tile_max > old_max ? tile_max : old_max;
    if (new_max == kNegInf) {  // nothing but -inf so far: no mass, nothing to rescale
      // ... unless the max lost NaN logits (non-finite inputs): the vector max
      // drops NaN, so look for one (cold path) and propagate it to the row's
      // output rather than treat the row as empty.
      bool nan = false;
      for (int j = 0; j < cols; ++j) nan |= row[j] != row[j];
      const float fill = nan ? __builtin_nanf("") : 0.0f;
      rescale[r] = nan ? fill : 1.0f;
      if (nan) row_max[r] = row_sum[r] = fill;
      for (int j = 0; j < W; ++j) pad[j] = fill;
      for (int j = 0; j < full; j += W) sink.put(r, row, j, Ops::load(pad));
      if (tail > 0) sink.put_tail(r, row, full, pad, tail);
      continue;
    }
    const V neg_m = Ops::set1(-new_max * Sink::kExpArg), sc = Ops::set1(scale * Sink::kExpArg);
    V s4[4] = {Ops::zero(), Ops::zero(), Ops::zero(), Ops::zero()};
    const auto exp_put = [&](int j) {
      const V p = Sink::exp(Ops::fma(Ops::load(row + j), sc, neg_m));
      sink.put(r, row, j, p);
      return p;
    };
    int e4 = 0;
    for (; e4 + 4 * W <= full; e4 += 4 * W)
      for (int k = 0; k < 4; ++k) s4[k] = Ops::add(s4[k], exp_put(e4 + k * W));
    for (int j = e4; j < full; j += W) s4[0] = Ops::add(s4[0], exp_put(j));
    if (tail > 0) {
      const V p = Sink::exp(Ops::fma(Ops::load(pad), sc, neg_m));
      Ops::store(pad, p);
      s4[0] = Ops::add(s4[0], p);
      sink.put_tail(r, row, full, pad, tail);
    }
    const V vsum = Ops::add(Ops::add(s4[0], s4[1]), Ops::add(s4[2], s4[3]));
    // The rescale is e^(old - new) with both maxima rounded as neg_m rounds
    // them: each step's probabilities carry that rounding as one factor
    // (2^(new_max kExpArg - fl(new_max kExpArg))), which this keeps the same
    // for the old terms; the row sum carries it too, so it cancels. (With
    // kExpArg 1 this is exactly e^(old - new).)
    float alpha = 0.0f;
    if (old_max != kNegInf) {
      const float d = old_max * Sink::kExpArg - new_max * Sink::kExpArg;
      alignas(64) float a[W];
      Ops::store(a, Ops::exp(Ops::set1(Sink::kExpArg == 1.0f ? d : d * (1.0f / Sink::kExpArg))));
      alpha = a[0];
    }
    rescale[r] = alpha;
    row_max[r] = new_max;
    row_sum[r] = row_sum[r] * alpha + Ops::hsum(vsum);
  }
}

// The table's online_softmax_update: scaled logits, probabilities in place.
inline void online_softmax_update(float* s, int ld_s, int rows, int cols, float* row_max,
                                  float* row_sum, float* rescale) {
  online_softmax_rows(s, ld_s, rows, cols, row_max, row_sum, rescale, 1.0f, ProbsInPlace{});
}

inline void exp_inplace(float* x, int64_t n) {
  constexpr int W = Ops::W;
  int64_t i = 0;
  for (; i + W <= n; i += W) Ops::store(x + i, Ops::exp(Ops::load(x + i)));
  if (i < n) {
    alignas(64) float pad[W];
    const int64_t rest = n - i;
    for (int j = 0; j < W; ++j) pad[j] = j < rest ? x[i + j] : 0.0f;
    Ops::store(pad, Ops::exp(Ops::load(pad)));
    for (int64_t j = 0; j < rest; ++j) x[i + j] = pad[j];
  }
}
