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

// One row of the online-softmax step, in slices of 4 vectors, so that a
// caller can spread a step's softmax thinly between other work (the AMX path
// runs it between the next step's tile products: a few vectors at a time
// overlap with them, whole rows do not). online_softmax_rows runs each row
// through the same slices in one go, so both orders do the same arithmetic
// in the same order and give bitwise the same results.
//
// The row's logits are scaled when scale is 1; otherwise the scale is
// applied here, folded into the exp argument (the bf16 AMX path saves a pass
// over the tile that way). scale > 0. Probabilities go to sink, whose exp
// computes them (the bf16 path's may be coarser: P is rounded to bf16 next);
// the rescale factors always use Ops::exp. Sink::exp(x * Sink::kExpArg) =
// e^x: a sink whose exp is 2^x (kExpArg log2 e) gets its argument in base 2
// from the same fma.
template <class Sink>
class SoftmaxRow {
 public:
  using V = typename Ops::V;
  static constexpr int W = Ops::W;

  SoftmaxRow(int cols, float scale, const Sink& sink)
      : full_(cols / W * W), tail_(cols - cols / W * W), scale_(scale), sink_(sink) {}
  void start(float* row, int r) {
    row_ = row;
    r_ = r;
    j_ = 0;
    in_exp_ = false;
    // The tail goes through a -inf padded vector so every element sees the same exp.
    if (tail_ > 0) {
      for (int j = 0; j < W; ++j) pad_[j] = j < tail_ ? row[full_ + j] : kNegInf;
    }
    // Four independent max (and below, sum) chains: one chain is bound by
    // the max / add latency, 4 cycles a vector, where the loads allow 2 a
    // cycle (on AMX steps of 512 keys that was most of the max pass).
    for (V& a : acc_) a = Ops::set1(kNegInf);
  }
  // One slice of the row; true once the row is done (max, sum and rescale
  // written to the three references).
  bool step(float& row_max, float& row_sum, float& rescale) {
    if (j_ + 4 * W <= full_) {
      if (in_exp_) exp_slice();
      else max_slice();
      return false;
    }
    if (!in_exp_) return finish_max(row_max, row_sum, rescale);
    finish_exp(row_max, row_sum, rescale);
    return true;
  }
  void run(float& row_max, float& row_sum, float& rescale) {
    for (; j_ + 4 * W <= full_;) max_slice();
    if (finish_max(row_max, row_sum, rescale)) return;
    for (; j_ + 4 * W <= full_;) exp_slice();
    finish_exp(row_max, row_sum, rescale);
  }

 private:
  static constexpr float kNegInf = -__builtin_inff();
  void max_slice() {
    for (int k = 0; k < 4; ++k) acc_[k] = Ops::max(acc_[k], Ops::load(row_ + j_ + k * W));
    j_ += 4 * W;
  }
  V exp_put(int j) {
    const V p = Sink::exp(Ops::fma(Ops::load(row_ + j), sc_, neg_m_));
    sink_.put(r_, row_, j, p);
    return p;
  }
  void exp_slice() {
    for (int k = 0; k < 4; ++k) acc_[k] = Ops::add(acc_[k], exp_put(j_ + k * W));
    j_ += 4 * W;
  }
  // The row's max; true if that finished the row (nothing but -inf so far).
  bool finish_max(float& row_max, float& row_sum, float& rescale) {
    for (int j = j_; j < full_; j += W) acc_[0] = Ops::max(acc_[0], Ops::load(row_ + j));
    if (tail_ > 0) acc_[0] = Ops::max(acc_[0], Ops::load(pad_));
    const V vmax = Ops::max(Ops::max(acc_[0], acc_[1]), Ops::max(acc_[2], acc_[3]));
    const float tile_max = Ops::hmax(vmax) * scale_;  // max(s) * scale = max(s * scale): scale > 0
    old_max_ = row_max;
    new_max_ = tile_max > old_max_ ? tile_max : old_max_;
    if (new_max_ == kNegInf) {  // nothing but -inf so far: no mass, nothing to rescale
      // ... unless the max lost NaN logits (non-finite inputs): the vector max
      // drops NaN, so look for one (cold path) and propagate it to the row's
      // output rather than treat the row as empty.
      bool nan = false;
      for (int j = 0; j < full_ + tail_; ++j) nan |= row_[j] != row_[j];
      const float fill = nan ? __builtin_nanf("") : 0.0f;
      rescale = nan ? fill : 1.0f;
      if (nan) row_max = row_sum = fill;
      for (int j = 0; j < W; ++j) pad_[j] = fill;
      for (int j = 0; j < full_; j += W) sink_.put(r_, row_, j, Ops::load(pad_));
      if (tail_ > 0) sink_.put_tail(r_, row_, full_, pad_, tail_);
      return true;
    }
    neg_m_ = Ops::set1(-new_max_ * Sink::kExpArg);
    sc_ = Ops::set1(scale_ * Sink::kExpArg);
    for (V& a : acc_) a = Ops::zero();
    j_ = 0;
    in_exp_ = true;
    return false;
  }
  void finish_exp(float& row_max, float& row_sum, float& rescale) {
    for (int j = j_; j < full_; j += W) acc_[0] = Ops::add(acc_[0], exp_put(j));
    if (tail_ > 0) {
      const V p = Sink::exp(Ops::fma(Ops::load(pad_), sc_, neg_m_));
      Ops::store(pad_, p);
      acc_[0] = Ops::add(acc_[0], p);
      sink_.put_tail(r_, row_, full_, pad_, tail_);
    }
    const V vsum = Ops::add(Ops::add(acc_[0], acc_[1]), Ops::add(acc_[2], acc_[3]));
    // The rescale is e^(old - new) with both maxima rounded as neg_m rounds
    // them: each step's probabilities carry that rounding as one factor
    // (2^(new_max kExpArg - fl(new_max kExpArg))), which this keeps the same
    // for the old terms; the row sum carries it too, so it cancels. (With
    // kExpArg 1 this is exactly e^(old - new).)
    float alpha = 0.0f;
    if (old_max_ != kNegInf) {
      const float d = old_max_ * Sink::kExpArg - new_max_ * Sink::kExpArg;
      alignas(64) float a[W];
      Ops::store(a, Ops::exp(Ops::set1(Sink::kExpArg == 1.0f ? d : d * (1.0f / Sink::kExpArg))));
      alpha = a[0];
    }
    rescale = alpha;
    row_max = new_max_;
    row_sum = row_sum * alpha + Ops::hsum(vsum);
  }

  int full_, tail_;
  float scale_;
  Sink sink_;
  float* row_ = nullptr;
  int r_ = 0, j_ = 0;
  bool in_exp_ = false;
  float old_max_ = 0.0f, new_max_ = 0.0f;
  V acc_[4];
  V neg_m_, sc_;
  alignas(64) float pad_[W];
};

// The step for rows of logits s, row by row (see SoftmaxRow).
template <class Sink>
inline void online_softmax_rows(float* s, int ld_s, int rows, int cols, float* row_max, float* row_sum,
                                float* rescale, float scale, const Sink& sink) {
  SoftmaxRow<Sink> row(cols, scale, sink);
  for (int r = 0; r < rows; ++r) {
    row.start(s + static_cast<int64_t>(r) * ld_s, r);
    row.run(row_max[r], row_sum[r], rescale[r]);
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
