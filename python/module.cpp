// spattn._spattn: the kernels and pattern functions on NumPy arrays.
// Arrays are [heads][tokens][head_dim] with any head / token strides and
// contiguous rows; float32, float16, or uint16 holding bf16 bits (what
// torch.bfloat16 tensors give through .view(torch.uint16)). Inputs are read in
// place (no copies); every kernel call releases the GIL. spattn::Error becomes
// ValueError, spattn::OutOfMemory MemoryError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "spattn/config.h"
#include "spattn/session.hpp"
#include "spattn/spattn.hpp"
#if SPATTN_HAS_YAML
#include "spattn/lab/tune.hpp"
#include "spattn/profile.hpp"
#endif
#if __has_include(<dlpack/dlpack.h>)
#include <dlpack/dlpack.h>
#define SPATTN_PY_DLPACK 1
#else
#define SPATTN_PY_DLPACK 0
#endif

namespace py = pybind11;

namespace {

using spattn::DType;

// The element type an array holds: float32, float16, or bf16 as uint16.
DType dtype_of(const py::array& a, const char* name) {
  const py::dtype t = a.dtype();
  if (t.is(py::dtype::of<float>())) return DType::fp32;
  if (t.kind() == 'f' && t.itemsize() == 2) return DType::fp16;
  if (t.kind() == 'u' && t.itemsize() == 2) return DType::bf16;
  throw py::type_error(std::string(name) + ": dtype " + t.attr("name").cast<std::string>() +
                       " is not float32, float16 or uint16 (bf16 bits)");
}

// A [heads][tokens][head_dim] view of a 3-d array, strides in elements.
spattn::InputView view_of(const py::array& a, const char* name) {
  if (a.ndim() != 3) throw py::value_error(std::string(name) + ": must be 3-d [heads][tokens][head_dim]");
  const DType t = dtype_of(a, name);
  const int64_t item = a.itemsize();
  if (a.shape(2) > 1 && a.strides(2) != item)
    throw py::value_error(std::string(name) + ": rows (the last axis) must be contiguous");
  for (int i = 0; i < 2; ++i)
    if (a.strides(i) % item != 0 || a.strides(i) < 0)
      throw py::value_error(std::string(name) + ": strides must be non-negative multiples of the element size");
  return spattn::InputView(a.data(), t, a.shape(0), a.shape(1), a.shape(2), a.strides(0) / item, a.strides(1) / item);
}

#if SPATTN_PY_DLPACK
// The element type of a DLPack tensor: float32, float16 or bfloat16 (lanes 1).
DType dtype_of(const DLDataType& t, const char* name) {
  if (t.lanes == 1 && t.code == kDLFloat && t.bits == 32) return DType::fp32;
  if (t.lanes == 1 && t.code == kDLFloat && t.bits == 16) return DType::fp16;
  if (t.lanes == 1 && t.code == kDLBfloat && t.bits == 16) return DType::bf16;
  static const char* const kinds[] = {"int", "uint", "float", "opaque", "bfloat", "complex", "bool"};
  const std::string kind = t.code < 7 ? kinds[t.code] : "code" + std::to_string(t.code) + "_";
  throw py::type_error(std::string(name) + ": dtype " + kind + std::to_string(t.bits) +
                       (t.lanes != 1 ? " x" + std::to_string(t.lanes) : std::string()) +
                       " is not float32, float16 or bfloat16");
}

// A view of a CPU tensor handed over through DLPack (obj.__dlpack__()). The
// capsule stays with the caller (Input::keep) and is never renamed "used":
// its producer's destructor frees the tensor once the call is over.
spattn::InputView view_of_dlpack(const py::capsule& cap, const char* name) {
  if (std::string(cap.name() ? cap.name() : "") != "dltensor")
    throw py::type_error(std::string(name) + ": __dlpack__() did not return a 'dltensor' capsule");
  const DLTensor& t = static_cast<DLManagedTensor*>(cap.get_pointer())->dl_tensor;
  if (t.device.device_type != kDLCPU && t.device.device_type != kDLCUDAHost)
    throw py::value_error(std::string(name) + ": a DLPack tensor must be in CPU memory");
  if (t.ndim != 3) throw py::value_error(std::string(name) + ": must be 3-d [heads][tokens][head_dim]");
  const DType dt = dtype_of(t.dtype, name);
  // No strides: compact row-major.
  const int64_t s0 = t.strides ? t.strides[0] : t.shape[1] * t.shape[2];
  const int64_t s1 = t.strides ? t.strides[1] : t.shape[2];
  if (t.strides && t.shape[2] > 1 && t.strides[2] != 1)
    throw py::value_error(std::string(name) + ": rows (the last axis) must be contiguous");
  if (s0 < 0 || s1 < 0) throw py::value_error(std::string(name) + ": strides must be non-negative");
  const void* data = static_cast<const char*>(t.data) + t.byte_offset;
  return spattn::InputView(data, dt, t.shape[0], t.shape[1], t.shape[2], s0, s1);
}
#endif

// An input argument: a NumPy array, or any object with __dlpack__ (a torch
// tensor, bfloat16 included). `keep` holds whatever owns the memory for as
// long as the view is used.
struct Input {
  spattn::InputView view;
  py::object keep;
};

Input input_of(const py::object& x, const char* name) {
  if (py::isinstance<py::array>(x)) return {view_of(py::reinterpret_borrow<py::array>(x), name), x};
#if SPATTN_PY_DLPACK
  if (py::hasattr(x, "__dlpack__")) {
    py::capsule cap = x.attr("__dlpack__")();
    return {view_of_dlpack(cap, name), cap};
  }
#endif
  throw py::type_error(std::string(name) + ": expected a NumPy array or a tensor with __dlpack__, got " +
                       py::str(py::type::handle_of(x)).cast<std::string>());
}

spattn::AttentionShape shape_of(const spattn::InputView& q, const spattn::InputView& k, bool causal,
                                int64_t q_offset, float scale) {
  if (k.head_dim != q.head_dim)
    throw py::value_error("k: head_dim " + std::to_string(k.head_dim) + " differs from q's " +
                          std::to_string(q.head_dim));
  spattn::AttentionShape s{q.heads, k.heads, q.tokens, k.tokens, q.head_dim, scale};
  s.causal = causal;
  s.q_offset = q_offset;
  return s;
}

spattn::KernelOptions options(int threads, int64_t q_tile_rows, int64_t k_block) {
  spattn::KernelOptions o;
  o.threads = threads;
  o.q_tile_rows = q_tile_rows;
  o.k_block = k_block;
  return o;
}

// A fresh [heads][q_len][d] output array of out_dtype ("fp32" or "bf16").
py::array new_output(const spattn::AttentionShape& s, const std::string& out_dtype) {
  const DType t = spattn::parse_dtype(out_dtype);
  const std::vector<py::ssize_t> shape{s.heads, s.q_len, s.head_dim};
  if (t == DType::fp32) return py::array_t<float>(shape);
  if (t == DType::bf16) return py::array_t<uint16_t>(shape);
  throw py::value_error("out_dtype: must be 'fp32' or 'bf16'");
}

spattn::OutputView out_view(py::array& out, DType t) {
  const auto& s = out;
  return spattn::OutputView(out.mutable_data(), t, s.shape(0), s.shape(1), s.shape(2), s.shape(1) * s.shape(2),
                            s.shape(2));
}

// [heads][q_blocks][k_blocks] flags (any integer or bool array) as a BlockMask.
spattn::BlockMask mask_from_array(const py::array& flags, const spattn::AttentionShape& s, int64_t q_block,
                                  int64_t k_block) {
  const auto m = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>::ensure(flags);
  if (!m || m.ndim() != 3) throw py::value_error("mask: must be a 3-d array [heads][q_blocks][k_blocks]");
  const int64_t qbs = (s.q_len + q_block - 1) / q_block, kbs = (s.kv_len + k_block - 1) / k_block;
  if (m.shape(0) != s.heads || m.shape(1) != qbs || m.shape(2) != kbs)
    throw py::value_error("mask: shape must be [heads, q_blocks, k_blocks] = [" + std::to_string(s.heads) + ", " +
                          std::to_string(qbs) + ", " + std::to_string(kbs) + "]");
  std::vector<std::vector<int32_t>> rows(static_cast<size_t>(s.heads * qbs));
  const uint8_t* p = m.data();
  for (int64_t r = 0; r < s.heads * qbs; ++r)
    for (int64_t b = 0; b < kbs; ++b)
      if (p[r * kbs + b] != 0) rows[static_cast<size_t>(r)].push_back(static_cast<int32_t>(b));
  return spattn::BlockMask::from_rows(s.heads, s.q_len, s.kv_len, q_block, k_block, rows);
}

py::array mask_to_array(const spattn::BlockMask& m) {
  py::array_t<uint8_t> a({m.heads, m.q_blocks(), m.k_blocks()});
  uint8_t* p = a.mutable_data();
  std::fill(p, p + m.heads * m.q_blocks() * m.k_blocks(), uint8_t{0});
  for (int64_t r = 0; r < m.rows(); ++r)
    for (int64_t i = m.row_ptr[r]; i < m.row_ptr[r + 1]; ++i) p[r * m.k_blocks() + m.col_idx[i]] = 1;
  return a;
}

py::array dense(const py::object& q, const py::object& k, const py::object& v, bool causal, int64_t q_offset, float scale,
                const std::string& out_dtype, int threads, int64_t q_tile_rows, int64_t k_block) {
  const Input qi = input_of(q, "q"), ki = input_of(k, "k"), vi = input_of(v, "v");
  const spattn::InputView &qv = qi.view, &kv = ki.view, &vv = vi.view;
  const spattn::AttentionShape s = shape_of(qv, kv, causal, q_offset, scale);
  py::array out = new_output(s, out_dtype);
  const spattn::OutputView ov = out_view(out, spattn::parse_dtype(out_dtype));
  const spattn::KernelOptions o = options(threads, q_tile_rows, k_block);
  {
    py::gil_scoped_release nogil;
    spattn::dense_attention(s, qv, kv, vv, ov, o);
  }
  return out;
}

// (out, lse): dense attention with each row's log-sum-exp, float32 [heads, q_len].
py::tuple dense_with_lse(const py::object& q, const py::object& k, const py::object& v, bool causal, int64_t q_offset,
                         float scale, const std::string& out_dtype, int threads, int kv_splits) {
  const Input qi = input_of(q, "q"), ki = input_of(k, "k"), vi = input_of(v, "v");
  const spattn::AttentionShape s = shape_of(qi.view, ki.view, causal, q_offset, scale);
  py::array out = new_output(s, out_dtype);
  const spattn::OutputView ov = out_view(out, spattn::parse_dtype(out_dtype));
  py::array_t<float> lse({s.heads, s.q_len});
  spattn::KernelOptions o = options(threads, 0, 0);
  o.kv_splits = kv_splits;
  float* l = lse.mutable_data();
  {
    py::gil_scoped_release nogil;
    spattn::dense_attention_with_lse(s, qi.view, ki.view, vi.view, ov, l, o);
  }
  return py::make_tuple(out, lse);
}

// A KVCache with the arrays it was last written from kept out of it: the
// cache holds its own packed copy.
class Cache {
 public:
  Cache(int64_t kv_heads, int64_t capacity, int64_t head_dim, const std::string& dtype, int64_t k_block, int threads)
      : cache_(kv_heads, capacity, head_dim, spattn::parse_dtype(dtype), k_block, options(threads, 0, 0)),
        threads_(threads) {}
  void write(int64_t first, const py::object& k, const py::object& v) {
    const Input ki = input_of(k, "k"), vi = input_of(v, "v");
    py::gil_scoped_release nogil;
    cache_.write(first, ki.view, vi.view, options(threads_, 0, 0));
  }
  void write_rows(const std::vector<int32_t>& positions, const py::object& k, const py::object& v) {
    const Input ki = input_of(k, "k"), vi = input_of(v, "v");
    py::gil_scoped_release nogil;
    cache_.write_rows(positions, ki.view, vi.view, options(threads_, 0, 0));
  }
  void truncate(int64_t n) { cache_.truncate(n, options(threads_, 0, 0)); }
  const spattn::KVCache& get() const { return cache_; }

 private:
  spattn::KVCache cache_;
  int threads_;
};

// The shape and queries of a cached call: q [heads, q_len, d] at rows
// (a list) or from first (-1: the end of the cache, or q_offset if causal).
struct CachedCall {
  spattn::AttentionShape shape;
  spattn::CachedQueries queries;
  std::vector<int32_t> rows;
};
CachedCall cached_call(const spattn::InputView& q, const Cache& c, const std::optional<std::vector<int32_t>>& rows,
                       int64_t first, bool causal, int64_t q_offset, float scale) {
  CachedCall call;
  call.shape = {q.heads, c.get().kv_heads(), q.tokens, c.get().length(), q.head_dim, scale};
  call.shape.causal = causal;
  call.shape.q_offset = q_offset;
  if (rows) call.rows = *rows;  // the caller points queries.rows at them (the call's final home)
  call.queries.first = first;
  return call;
}

py::object cached(const py::object& q, const Cache& c, const std::optional<std::vector<int32_t>>& rows, int64_t first,
                  bool causal, int64_t q_offset, float scale, const std::string& out_dtype, int threads,
                  int kv_splits, bool return_lse) {
  const Input qi = input_of(q, "q");
  CachedCall call = cached_call(qi.view, c, rows, first, causal, q_offset, scale);
  if (rows) call.queries.rows = call.rows;
  py::array out = new_output(call.shape, out_dtype);
  const spattn::OutputView ov = out_view(out, spattn::parse_dtype(out_dtype));
  py::array_t<float> lse({call.shape.heads, call.shape.q_len});
  float* l = return_lse ? lse.mutable_data() : nullptr;
  spattn::KernelOptions o = options(threads, 0, 0);
  o.kv_splits = kv_splits;
  {
    py::gil_scoped_release nogil;
    spattn::cached_attention(call.shape, qi.view, c.get(), ov, call.queries, o, l);
  }
  if (return_lse) return py::make_tuple(out, lse);
  return out;
}

py::array cached_sparse(const py::object& q, const Cache& c, const py::array& mask, int64_t block_size,
                        const std::optional<std::vector<int32_t>>& rows, int64_t first, bool causal, int64_t q_offset,
                        float scale, const std::string& out_dtype, int threads, int kv_splits) {
  const Input qi = input_of(q, "q");
  CachedCall call = cached_call(qi.view, c, rows, first, causal, q_offset, scale);
  if (rows) call.queries.rows = call.rows;
  spattn::check_block_size("cached_block_sparse_attention", "block_size", block_size);
  spattn::AttentionShape whole = call.shape;  // the mask covers the whole sequence
  whole.q_len = whole.kv_len;
  const spattn::BlockMask m = mask_from_array(mask, whole, block_size, block_size);
  py::array out = new_output(call.shape, out_dtype);
  const spattn::OutputView ov = out_view(out, spattn::parse_dtype(out_dtype));
  spattn::KernelOptions o = options(threads, 0, 0);
  o.kv_splits = kv_splits;
  {
    py::gil_scoped_release nogil;
    spattn::cached_block_sparse_attention(call.shape, qi.view, c.get(), m, ov, call.queries, o);
  }
  return out;
}

// (out, lse) of the exact attention over the union of the parts' keys.
py::tuple merge_states(const std::vector<py::object>& outs, const std::vector<py::array>& lses,
                       const std::string& out_dtype, int threads) {
  if (outs.size() != lses.size())
    throw py::value_error("merge_attention_states: " + std::to_string(outs.size()) + " outputs but " +
                          std::to_string(lses.size()) + " lse arrays");
  if (outs.empty()) throw py::value_error("merge_attention_states: needs at least one part");
  std::vector<Input> in;
  std::vector<py::array_t<float, py::array::c_style | py::array::forcecast>> l;
  std::vector<spattn::AttentionPart> parts;
  for (size_t i = 0; i < outs.size(); ++i) {
    in.push_back(input_of(outs[i], "outs[i]"));
    l.push_back(py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(lses[i]));
    const spattn::InputView& v = in.back().view;
    if (!l.back() || l.back().size() != v.heads * v.tokens)
      throw py::value_error("lses[" + std::to_string(i) + "]: must hold heads x q_len = " +
                            std::to_string(v.heads * v.tokens) + " float32 values");
  }
  for (size_t i = 0; i < outs.size(); ++i) parts.push_back({in[i].view, l[i].data()});
  const spattn::InputView& first = in.front().view;
  spattn::AttentionShape s{first.heads, first.heads, first.tokens, 1, first.head_dim};
  py::array out = new_output(s, out_dtype);
  const spattn::OutputView ov = out_view(out, spattn::parse_dtype(out_dtype));
  py::array_t<float> lse({s.heads, s.q_len});
  float* lp = lse.mutable_data();
  {
    py::gil_scoped_release nogil;
    spattn::merge_attention_states(parts, ov, lp, options(threads, 0, 0));
  }
  return py::make_tuple(out, lse);
}

py::array block_sparse(const py::object& q, const py::object& k, const py::object& v, const py::array& mask,
                       int64_t block_size, bool causal, int64_t q_offset, float scale, const std::string& out_dtype,
                       int threads) {
  const Input qi = input_of(q, "q"), ki = input_of(k, "k"), vi = input_of(v, "v");
  const spattn::InputView &qv = qi.view, &kv = ki.view, &vv = vi.view;
  const spattn::AttentionShape s = shape_of(qv, kv, causal, q_offset, scale);
  spattn::check_block_size("block_sparse_attention", "block_size", block_size);
  const spattn::BlockMask m = mask_from_array(mask, s, block_size, block_size);
  py::array out = new_output(s, out_dtype);
  const spattn::OutputView ov = out_view(out, spattn::parse_dtype(out_dtype));
  const spattn::KernelOptions o = options(threads, 64, 64);
  {
    py::gil_scoped_release nogil;
    spattn::block_sparse_attention(s, qv, kv, vv, m, ov, o);
  }
  return out;
}

py::array unisparse(const py::object& q, const py::object& k, bool causal, int64_t q_offset, float scale,
                    int64_t block_size, const std::vector<int64_t>& granularities, const std::string& select,
                    double tau, double topk_ratio, int64_t min_blocks, int threads) {
  const Input qi = input_of(q, "q"), ki = input_of(k, "k");
  const spattn::InputView &qv = qi.view, &kv = ki.view;
  const spattn::AttentionShape s = shape_of(qv, kv, causal, q_offset, scale);
  spattn::UnisparseParams p;
  p.block_size = block_size;
  p.granularities = granularities;
  if (select == "threshold") p.select = spattn::UnisparseParams::Select::threshold;
  else if (select == "topk") p.select = spattn::UnisparseParams::Select::topk;
  else throw py::value_error("select: must be 'threshold' or 'topk', not '" + select + "'");
  p.tau = tau;
  p.topk_ratio = topk_ratio;
  p.min_blocks = min_blocks;
  spattn::BlockMask m;
  {
    py::gil_scoped_release nogil;
    m = spattn::unisparse_select(s, qv, kv, p, options(threads, 64, 64));
  }
  return mask_to_array(m);
}

py::array window_sink(int64_t heads, int64_t q_len, int64_t kv_len, int64_t block_size, int64_t sink_tokens,
                      int64_t window_tokens, bool causal, int64_t q_offset) {
  spattn::AttentionShape s{heads, heads, q_len, kv_len, 16};
  s.causal = causal;
  s.q_offset = q_offset;
  spattn::WindowSinkParams p;
  p.block_size = block_size;
  p.sink_tokens = sink_tokens;
  p.window_tokens = window_tokens;
  return mask_to_array(spattn::window_sink_mask(s, p));
}

// One attention layer of a diffusion model (DiffusionAttention), stepped once
// per denoising step on arrays of the session's shape.
// The session configuration's keyword arguments: one name per field, the
// C API's and the profiles' names (mass_tau, dense_head_share, ...), each with
// how it is set. Session(**kwargs) applies them in this order after a profile.
using ConfigSetter = void (*)(spattn::SessionConfig&, const py::handle&);
struct ConfigKey {
  const char* name;
  ConfigSetter set;
};
spattn::MassBudget& budget(spattn::SessionConfig& c) {
  if (!c.mass_budget) c.mass_budget.emplace();
  return *c.mass_budget;
}
const ConfigKey kConfigKeys[] = {
    {"policy", [](spattn::SessionConfig& c, const py::handle& v) { c.policy = spattn::parse_policy(v.cast<std::string>()); }},
    {"total_steps", [](spattn::SessionConfig& c, const py::handle& v) { c.total_steps = v.cast<int64_t>(); }},
    {"warmup_fraction", [](spattn::SessionConfig& c, const py::handle& v) { c.warmup_fraction = v.cast<double>(); }},
    {"warmup_steps", [](spattn::SessionConfig& c, const py::handle& v) { c.warmup_steps = v.cast<int64_t>(); }},
    {"refresh_every", [](spattn::SessionConfig& c, const py::handle& v) { c.refresh_every = v.cast<int64_t>(); }},
    {"block_size", [](spattn::SessionConfig& c, const py::handle& v) { c.block_size = v.cast<int64_t>(); }},
    {"topk_ratio", [](spattn::SessionConfig& c, const py::handle& v) { c.topk_ratio = c.unisparse.topk_ratio = v.cast<double>(); }},
    {"pooled_budget", [](spattn::SessionConfig& c, const py::handle& v) { c.pooled_budget = v.cast<bool>(); }},
    {"mass_tau", [](spattn::SessionConfig& c, const py::handle& v) {
       if (v.is_none()) c.mass_budget.reset();
       else budget(c).tau = v.cast<double>();
     }},
    {"max_block_share", [](spattn::SessionConfig& c, const py::handle& v) { budget(c).max_share = v.cast<double>(); }},
    {"dense_head_share", [](spattn::SessionConfig& c, const py::handle& v) { budget(c).dense_head_share = v.cast<double>(); }},
    {"record_on_new_block", [](spattn::SessionConfig& c, const py::handle& v) { c.record_on_new_block = v.cast<bool>(); }},
    {"paper_select", [](spattn::SessionConfig& c, const py::handle& v) { c.paper_select = v.cast<bool>(); }},
    {"paper_prefix_len", [](spattn::SessionConfig& c, const py::handle& v) { c.paper_prefix_len = v.cast<int64_t>(); }},
    {"drift_check_every", [](spattn::SessionConfig& c, const py::handle& v) { c.drift_check_every = v.cast<int64_t>(); }},
    {"drift_sample_blocks", [](spattn::SessionConfig& c, const py::handle& v) { c.drift_sample_blocks = v.cast<int64_t>(); }},
    {"drift_min_recall", [](spattn::SessionConfig& c, const py::handle& v) { c.drift_min_recall = v.cast<double>(); }},
    {"unisparse_tau", [](spattn::SessionConfig& c, const py::handle& v) { c.unisparse.tau = v.cast<double>(); }},
    {"unisparse_select", [](spattn::SessionConfig& c, const py::handle& v) {
       const std::string s = v.cast<std::string>();
       if (s != "threshold" && s != "topk") throw py::value_error("unisparse_select: 'threshold' or 'topk', not '" + s + "'");
       c.unisparse.select = s == "topk" ? spattn::UnisparseParams::Select::topk : spattn::UnisparseParams::Select::threshold;
     }},
    {"window_sink_tokens", [](spattn::SessionConfig& c, const py::handle& v) { c.window.sink_tokens = v.cast<int64_t>(); }},
    {"window_tokens", [](spattn::SessionConfig& c, const py::handle& v) { c.window.window_tokens = v.cast<int64_t>(); }},
    {"dpad_rule", [](spattn::SessionConfig& c, const py::handle& v) { c.dpad.rule = spattn::parse_dpad_rule(v.cast<std::string>()); }},
    {"dpad_prefix_len", [](spattn::SessionConfig& c, const py::handle& v) { c.dpad.prefix_len = v.cast<int64_t>(); }},
    {"dpad_block_start", [](spattn::SessionConfig& c, const py::handle& v) { c.dpad.block_start = v.cast<int64_t>(); }},
    {"dpad_block_end", [](spattn::SessionConfig& c, const py::handle& v) { c.dpad.block_end = v.cast<int64_t>(); }},
    {"dpad_window", [](spattn::SessionConfig& c, const py::handle& v) { c.dpad.window = v.cast<int64_t>(); }},
    {"dpad_k_sigma", [](spattn::SessionConfig& c, const py::handle& v) { c.dpad.k_sigma = v.cast<double>(); }},
    {"dpad_scale", [](spattn::SessionConfig& c, const py::handle& v) { c.dpad.scale = v.cast<double>(); }},
    {"dpad_sigma", [](spattn::SessionConfig& c, const py::handle& v) { c.dpad.sigma = v.cast<double>(); }},
    {"dpad_seed", [](spattn::SessionConfig& c, const py::handle& v) { c.dpad.seed = v.cast<uint64_t>(); }},
    {"cache", [](spattn::SessionConfig& c, const py::handle& v) { c.cache = spattn::parse_cache_mode(v.cast<std::string>()); }},
    {"threads", [](spattn::SessionConfig& c, const py::handle& v) { c.kernel.threads = v.cast<int>(); }},
    {"q_tile_rows", [](spattn::SessionConfig& c, const py::handle& v) { c.kernel.q_tile_rows = v.cast<int64_t>(); }},
    {"check_finite", [](spattn::SessionConfig& c, const py::handle& v) { c.kernel.check_finite = v.cast<bool>(); }},
};

std::string config_key_names() {
  std::string names;
  for (const ConfigKey& k : kConfigKeys) names += (names.empty() ? "" : ", ") + std::string(k.name);
  return names;
}

py::dict report_dict(const spattn::StepReport& r) {
  py::dict d;
  d["step"] = r.step;
  d["path"] = spattn::step_path_name(r.path);
  d["ms"] = r.ms;
  d["select_ms"] = r.select_ms;
  d["density"] = r.density;
  d["dense_heads"] = r.dense_heads;
  d["drift_recall"] = r.drift_recall;
  d["drift_ms"] = r.drift_ms;
  d["query_rows"] = r.query_rows;
  return d;
}

class Session {
 public:
  // The config: SessionConfig's defaults, then (paper) SparseD's authors'
  // preset, then the profile's entry (for `layer` where it has one), then
  // the keyword arguments.
  Session(int64_t heads, int64_t kv_heads, int64_t seq_len, int64_t head_dim, const std::string& profile, int layer,
          bool paper, int64_t paper_prefix, const py::kwargs& kwargs)
      : session_(make(heads, kv_heads, seq_len, head_dim, profile, layer, paper, paper_prefix, kwargs)) {}

  // (out, report): out [heads, seq_len, head_dim] float32; report a dict of
  // what ran (step, path, ms, select_ms, density, dense_heads, drift_recall,
  // drift_ms, query_rows).
  py::tuple step(const py::object& q, const py::object& k, const py::object& v) {
    return run(q, k, v, session_.shape().q_len, false);
  }
  // The same over cached_rows() only (cache mode): q, k, v [.., rows, d].
  py::tuple cached_step(const py::object& q, const py::object& k, const py::object& v) {
    return run(q, k, v, static_cast<int64_t>(session_.cached_rows().size()), true);
  }
  void set_decoding_block(int64_t begin, int64_t end) { session_.set_decoding_block(begin, end); }
  void set_query_rows(std::vector<int32_t> rows) { session_.set_query_rows(std::move(rows)); }
  // DPad's geometry moved: the prompt [0, prefix_len), the current block.
  void set_dpad(int64_t prefix_len, int64_t block_start, int64_t block_end) {
    spattn::DpadParams p = session_.config().dpad;
    p.prefix_len = prefix_len;
    p.block_start = block_start;
    p.block_end = block_end;
    session_.set_dpad(p);
  }
  std::vector<int32_t> cached_rows() const { return session_.cached_rows(); }
  int64_t warmup_steps() const { return session_.warmup_steps(); }
  int64_t steps_done() const { return session_.steps_done(); }
  py::dict config() const {
    const spattn::SessionConfig& c = session_.config();
    py::dict d;
    d["policy"] = spattn::policy_name(c.policy);
    d["total_steps"] = c.total_steps;
    d["warmup_steps"] = session_.warmup_steps();
    d["block_size"] = c.block_size;
    d["topk_ratio"] = c.topk_ratio;
    d["pooled_budget"] = c.pooled_budget;
    d["mass_tau"] = c.mass_budget ? py::object(py::float_(c.mass_budget->tau)) : py::object(py::none());
    d["dense_head_share"] = c.mass_budget ? c.mass_budget->dense_head_share : 1.0;
    d["paper_select"] = c.paper_select;
    d["drift_check_every"] = c.drift_check_every;
    d["cache"] = spattn::cache_mode_name(c.cache);
    d["threads"] = c.kernel.threads;
    return d;
  }

 private:
  py::tuple run(const py::object& q, const py::object& k, const py::object& v, int64_t rows, bool cached) {
    const Input qi = input_of(q, "q"), ki = input_of(k, "k"), vi = input_of(v, "v");
    spattn::AttentionShape s = session_.shape();
    s.q_len = rows;
    py::array out = new_output(s, "fp32");
    const spattn::OutputView ov = out_view(out, DType::fp32);
    spattn::StepReport r;
    {
      py::gil_scoped_release nogil;
      r = cached ? session_.cached_step(qi.view, ki.view, vi.view, ov) : session_.step(qi.view, ki.view, vi.view, ov);
    }
    return py::make_tuple(out, report_dict(r));
  }

  static spattn::DiffusionAttention make(int64_t heads, int64_t kv_heads, int64_t seq_len, int64_t head_dim,
                                         const std::string& profile, int layer, bool paper, int64_t paper_prefix,
                                         const py::kwargs& kwargs) {
    const spattn::AttentionShape shape{heads, kv_heads, seq_len, seq_len, head_dim};
    const int64_t steps = kwargs.contains("total_steps") ? kwargs["total_steps"].cast<int64_t>() : 64;
    spattn::SessionConfig c = paper ? spattn::sparsed_paper_config(steps, paper_prefix, seq_len) : spattn::SessionConfig{};
    c.total_steps = steps;
    if (kwargs.contains("policy")) kConfigKeys[0].set(c, kwargs["policy"]);  // the profile entry is per policy
    if (kwargs.contains("cache")) c.cache = spattn::parse_cache_mode(kwargs["cache"].cast<std::string>());
    if (!profile.empty()) {
#if SPATTN_HAS_YAML
      // The entry tuned nearest this shape, the layer's own where it has one
      // (a word on stderr when none fits).
      const spattn::Profile p = spattn::Profile::load_for_machine(profile, /*strict=*/false);
      c = layer >= 0 ? spattn::session_config_for_layer(p, shape, layer, c, spattn::ProfileFit::lenient)
                     : spattn::session_config_from_profile(p, shape, c, spattn::ProfileFit::lenient);
#else
      throw py::value_error("profile: this build has no YAML profile support");
#endif
    }
    for (const auto& [key, value] : kwargs) {
      const std::string name = key.cast<std::string>();
      const ConfigKey* k = nullptr;
      for (const ConfigKey& ck : kConfigKeys)
        if (name == ck.name) k = &ck;
      if (k == nullptr) throw py::type_error("Session: unknown keyword '" + name + "' (known: " + config_key_names() + ")");
      if (profile.empty() || (name != "policy")) k->set(c, value);
    }
    return spattn::DiffusionAttention(shape, c);
  }

  spattn::DiffusionAttention session_;
};

#if SPATTN_HAS_YAML
py::dict entry_dict(const spattn::ProfileEntry& e) {
  py::dict d;
  d["policy"] = e.policy;
  d["block_size"] = e.block_size;
  d["topk_ratio"] = e.topk_ratio;
  d["warmup_fraction"] = e.warmup_fraction;
  d["pooled_budget"] = e.pooled_budget;
  d["mass_tau"] = e.mass_tau;
  d["dense_head_share"] = e.dense_head_share;
  d["drift_check_every"] = e.drift_check_every;
  d["q_tile_rows"] = e.q_tile_rows;
  d["threads"] = e.threads;
  d["dense_ms"] = e.dense_ms;
  d["sparse_ms"] = e.sparse_ms;
  d["speedup"] = e.speedup;
  d["mean_cosine"] = e.mean_cosine;
  d["min_cosine"] = e.min_cosine;
  d["mean_density"] = e.mean_density;
  return d;
}

// What Session(profile=...) would use for this shape: the matching entry
// (None when the profile has none for this head_dim/dtype), whether it fits
// the shape, and why not.
py::dict profile_lookup(const std::string& path, int64_t heads, int64_t kv_heads, int64_t seq_len,
                        int64_t head_dim, int64_t steps, const std::string& dtype, int layer) {
  const spattn::Profile p = spattn::Profile::load_for_machine(path, /*strict=*/false);
  spattn::TunedShape shape{heads, kv_heads > 0 ? kv_heads : heads, seq_len, head_dim, steps,
                           spattn::dtype_name(spattn::parse_dtype(dtype))};
  const spattn::ProfileMatch m = p.match(shape, {}, layer);
  py::dict d;
  d["entry"] = m.entry ? py::object(entry_dict(*m.entry)) : py::object(py::none());
  d["fits"] = m.fits;
  d["why"] = m.why;
  return d;
}

// spattn-tune's search (tune()) on the built-in synthetic workload or a
// folder of captured .npy steps; merges the chosen setting into `out` when
// given. progress(fraction, eta_s, phase) is called with the GIL held.
// spattn-tune --layers: one entry per layer of the trace at npy (layers: "all" or a list).
py::dict tune_model(const std::string& npy, const py::object& layers, int64_t steps, int64_t npy_prompt_len,
                    int64_t npy_steps_per_block, const std::string& dtype, const std::string& cache,
                    bool refresh_first_only, const std::vector<int>& threads, const std::string& out) {
  spattn::LayerTuneOptions o;
  o.npy_dir = npy;
  if (!py::isinstance<py::str>(layers)) o.layers = layers.cast<std::vector<int>>();
  else if (layers.cast<std::string>() != "all") throw py::value_error("layers: 'all' or a list of layer numbers");
  o.steps = steps;
  o.dtype = spattn::parse_dtype(dtype);
  o.cache = spattn::parse_cache_mode(cache);
  o.refresh_first_only = refresh_first_only;
  o.npy_prompt_len = npy_prompt_len;
  o.npy_steps_per_block = npy_steps_per_block;
  if (!threads.empty()) o.kernel.threads = threads.back();
  if (!out.empty()) spattn::check_profile_destination(out);
  spattn::LayerTuneResult r;
  {
    py::gil_scoped_release nogil;
    r = spattn::tune_layers(o);
  }
  py::list entries;
  for (const spattn::ProfileEntry& e : r.entries) entries.append(entry_dict(e));
  py::dict d;
  d["met"] = true;  // every layer has an entry: sparse where one met the bound faster, else dense
  d["entries"] = entries;
  d["sparse_total_ms"] = r.sparse_total_ms;
  d["dense_total_ms"] = r.dense_total_ms;
  d["profile"] = py::none();
  if (!out.empty()) {
    spattn::Profile p;
    p.machine = spattn::MachineInfo::detect();
    p.entries = r.entries;
    p.save_merged(out);
    d["profile"] = out;
  }
  return d;
}

py::dict tune(int64_t seq_len, int64_t heads, int64_t kv_heads, int64_t head_dim, int64_t steps,
              const std::string& npy, int layer, int64_t npy_prompt_len, int64_t npy_steps_per_block,
              const std::string& dtype, double min_mean_cosine, double min_step_cosine,
              const std::vector<int64_t>& block_sizes, const std::vector<int>& threads, int reps, double budget_s,
              const std::string& out, const py::object& progress, const py::object& layers, const std::string& cache,
              bool refresh_first_only) {
  if (!layers.is_none()) {
    if (npy.empty()) throw py::value_error("layers: needs npy (a trace folder)");
    return tune_model(npy, layers, steps, npy_prompt_len, npy_steps_per_block, dtype, cache, refresh_first_only,
                      threads, out);
  }
  spattn::TuneOptions o;
  o.cache = spattn::parse_cache_mode(cache);
  o.refresh_first_only = refresh_first_only;
  o.workload.synthetic = spattn::calibrated_synthetic_config(heads);
  o.workload.synthetic.seq_len = seq_len;
  o.workload.synthetic.kv_heads = kv_heads > 0 ? kv_heads : heads;
  o.workload.synthetic.head_dim = head_dim;
  o.workload.synthetic.steps = steps;
  o.workload.npy_dir = npy;
  o.workload.layer = layer;
  o.workload.npy_prompt_len = npy_prompt_len;
  o.workload.npy_steps_per_block = npy_steps_per_block;
  o.dtype = spattn::parse_dtype(dtype);
  o.steps = steps;
  o.min_mean_cosine = min_mean_cosine;
  o.min_step_cosine = min_step_cosine;
  if (!block_sizes.empty()) o.block_sizes = block_sizes;
  o.threads = threads;
  o.reps = reps;
  o.budget_s = budget_s;
  if (!progress.is_none())
    o.on_progress = [&progress](const spattn::TuneProgress& p) {
      py::gil_scoped_acquire gil;
      progress(p.fraction, p.eta_s, p.phase);
    };
  if (!out.empty()) spattn::check_profile_destination(out);  // before minutes of search
  spattn::TuneResult r;
  {
    py::gil_scoped_release nogil;
    r = spattn::tune(o);
  }
  py::dict d;
  d["met"] = r.met;
  d["note"] = r.note;
  d["entry"] = r.met ? py::object(entry_dict(r.entry)) : py::object(py::none());
  d["dense_step_ms"] = r.dense_step_ms;
  d["elapsed_s"] = r.elapsed_s;
  d["budget_hit"] = r.budget_hit;
  d["profile"] = py::none();
  if (r.met && !out.empty()) {
    spattn::merge_into_file(out, r.entry);
    d["profile"] = out;
  }
  return d;
}
#endif

}  // namespace

PYBIND11_MODULE(_spattn, m) {
  m.doc() = "spattn: hand-vectorized CPU sparse attention (see help(spattn))";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const spattn::OutOfMemory& e) {
      PyErr_SetString(PyExc_MemoryError, e.what());
    } catch (const spattn::Error& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });
  constexpr int64_t kEnd = spattn::AttentionShape::kQOffsetEnd;
  m.def("version", [] { return std::string(spattn::version()); }, "The library's version string.");
  m.def("isa", [] { return std::string(spattn::isa_name(spattn::active_isa())); },
        "The instruction set the kernels run on (SPATTN_ISA may force one).");
  m.def("dense_attention", &dense, py::arg("q"), py::arg("k"), py::arg("v"), py::kw_only(),
        py::arg("causal") = false, py::arg("q_offset") = kEnd, py::arg("scale") = 0.0f,
        py::arg("out_dtype") = "fp32", py::arg("threads") = 0, py::arg("q_tile_rows") = 0,
        py::arg("k_block") = 0,
        "softmax(scale q k^T) v for q [heads, q_len, d], k and v [kv_heads, kv_len, d]; returns "
        "[heads, q_len, d] of out_dtype ('fp32', or 'bf16' as uint16 bits). q_tile_rows / k_block 0: "
        "the tiles the ISA prefers for k's dtype.");
  m.def("dense_attention_with_lse", &dense_with_lse, py::arg("q"), py::arg("k"), py::arg("v"), py::kw_only(),
        py::arg("causal") = false, py::arg("q_offset") = kEnd, py::arg("scale") = 0.0f,
        py::arg("out_dtype") = "fp32", py::arg("threads") = 0, py::arg("kv_splits") = 0,
        "dense_attention that also returns each row's log-sum-exp: (out, lse float32 [heads, q_len]); "
        "the parts merge_attention_states takes.");
  m.def("merge_attention_states", &merge_states, py::arg("outs"), py::arg("lses"), py::kw_only(),
        py::arg("out_dtype") = "fp32", py::arg("threads") = 0,
        "Exact attention over the union of disjoint key sets from each set's (out, lse): returns (out, lse). "
        "A row no part saw is zeros with lse -inf.");
  m.def("cached_attention", &cached, py::arg("q"), py::arg("cache"), py::kw_only(), py::arg("rows") = py::none(),
        py::arg("first") = kEnd, py::arg("causal") = false, py::arg("q_offset") = kEnd, py::arg("scale") = 0.0f,
        py::arg("out_dtype") = "fp32", py::arg("threads") = 0, py::arg("kv_splits") = 0,
        py::arg("return_lse") = false,
        "Attention of q [heads, q_len, d] over every token of a KVCache; the queries are the cache's rows "
        "[first, first + q_len) (first -1: the last q_len, or q_offset when causal) or the listed rows "
        "(ascending). kv_splits: 0 chosen from the shape, 1 none. With return_lse: (out, lse).");
  m.def("cached_block_sparse_attention", &cached_sparse, py::arg("q"), py::arg("cache"), py::arg("mask"),
        py::kw_only(), py::arg("block_size") = 64, py::arg("rows") = py::none(), py::arg("first") = kEnd,
        py::arg("causal") = false, py::arg("q_offset") = kEnd, py::arg("scale") = 0.0f,
        py::arg("out_dtype") = "fp32", py::arg("threads") = 0, py::arg("kv_splits") = 0,
        "cached_attention over the key blocks of a mask over the whole sequence (uint8 [heads, q_blocks, "
        "k_blocks] of the cache's length): each query row uses its position's mask row.");
  py::class_<Cache>(m, "KVCache",
                    "Packed K/V of up to capacity tokens, kept between calls and written in place.")
      .def(py::init<int64_t, int64_t, int64_t, const std::string&, int64_t, int>(), py::arg("kv_heads"),
           py::arg("capacity"), py::arg("head_dim"), py::kw_only(), py::arg("dtype") = "fp32", py::arg("k_block") = 0,
           py::arg("threads") = 0)
      .def("write", &Cache::write, py::arg("first"), py::arg("k"), py::arg("v"),
           "k, v [kv_heads, n, d] to positions [first, first + n) (first <= length: no gaps).")
      .def("write_rows", &Cache::write_rows, py::arg("positions"), py::arg("k"), py::arg("v"),
           "Row i of k, v to positions[i] (ascending, < length).")
      .def("truncate", &Cache::truncate, py::arg("length"))
      .def_property_readonly("length", [](const Cache& c) { return c.get().length(); })
      .def_property_readonly("capacity", [](const Cache& c) { return c.get().capacity(); })
      .def_property_readonly("kv_heads", [](const Cache& c) { return c.get().kv_heads(); })
      .def_property_readonly("head_dim", [](const Cache& c) { return c.get().head_dim(); })
      .def_property_readonly("k_block", [](const Cache& c) { return c.get().k_block(); })
      .def_property_readonly("dtype", [](const Cache& c) { return std::string(spattn::dtype_name(c.get().dtype())); });
  m.def("block_sparse_attention", &block_sparse, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("mask"),
        py::kw_only(), py::arg("block_size") = 64, py::arg("causal") = false, py::arg("q_offset") = kEnd,
        py::arg("scale") = 0.0f, py::arg("out_dtype") = "fp32", py::arg("threads") = 0,
        "Attention over the key blocks mask[h, query_block, key_block] != 0 lists.");
  m.def("unisparse_select", &unisparse, py::arg("q"), py::arg("k"), py::kw_only(), py::arg("causal") = false,
        py::arg("q_offset") = kEnd, py::arg("scale") = 0.0f, py::arg("block_size") = 64,
        py::arg("granularities") = std::vector<int64_t>{16, 64, 256}, py::arg("select") = "threshold",
        py::arg("tau") = 0.95, py::arg("topk_ratio") = 0.1, py::arg("min_blocks") = 1, py::arg("threads") = 0,
        "UniSparse block selection; returns the mask as uint8 [heads, q_blocks, k_blocks].");
  m.def("window_sink_mask", &window_sink, py::arg("heads"), py::arg("q_len"), py::arg("kv_len"), py::kw_only(),
        py::arg("block_size") = 64, py::arg("sink_tokens") = 64, py::arg("window_tokens") = 512,
        py::arg("causal") = false, py::arg("q_offset") = kEnd,
        "Attention sinks plus a local band, as a uint8 [heads, q_blocks, k_blocks] mask.");
#if SPATTN_HAS_YAML
  m.def("tune", &tune, py::kw_only(), py::arg("seq_len") = 4096, py::arg("heads") = 8, py::arg("kv_heads") = 0,
        py::arg("head_dim") = 128, py::arg("steps") = 64, py::arg("npy") = "", py::arg("layer") = -1,
        py::arg("npy_prompt_len") = 0, py::arg("npy_steps_per_block") = 0, py::arg("dtype") = "fp32",
        py::arg("min_mean_cosine") = 0.99, py::arg("min_step_cosine") = 0.98,
        py::arg("block_sizes") = std::vector<int64_t>{}, py::arg("threads") = std::vector<int>{},
        py::arg("reps") = 5, py::arg("budget_s") = 120.0, py::arg("out") = "", py::arg("progress") = py::none(),
        py::arg("layers") = py::none(), py::arg("cache") = "none", py::arg("refresh_first_only") = false,
        "spattn-tune's search: the fastest SparseD setting whose whole run stays within the cosine bounds of "
        "dense attention, on the built-in workload (seq_len, heads, ...) or the .npy steps in npy (layer). "
        "Returns a dict (met, entry, note, dense_step_ms, elapsed_s, budget_hit, profile); with out, merges "
        "the entry into that profile file, which Session(profile=...) then reads. layers='all' (or a list) with npy: "
        "one entry per layer, as spattn-tune --layers (dict: entries, sparse_total_ms, dense_total_ms, profile); "
        "cache: the session's cache mode (spattn-tune --cache).");
  m.def("profile_lookup", &profile_lookup, py::arg("path"), py::kw_only(), py::arg("heads"),
        py::arg("kv_heads") = 0, py::arg("seq_len"), py::arg("head_dim"), py::arg("steps") = 0,
        py::arg("dtype") = "fp32", py::arg("layer") = -1,
        "The profile entry nearest this shape (dict: entry or None, fits, why), as Session(profile=...) "
        "picks it; a profile of another machine is read with a warning on stderr.");
#endif
  py::class_<Session>(m, "Session", "One attention layer of a diffusion model, stepped once per denoising step.")
      .def(py::init<int64_t, int64_t, int64_t, int64_t, const std::string&, int, bool, int64_t, const py::kwargs&>(),
           py::arg("heads"), py::arg("kv_heads"), py::arg("seq_len"), py::arg("head_dim"), py::kw_only(),
           py::arg("profile") = "", py::arg("layer") = -1, py::arg("paper") = false, py::arg("paper_prefix_len") = 0,
           "Keyword arguments set SessionConfig's fields by their C / profile names: policy (dense, sparsed, "
           "unisparse, dpad, dpad+sparsed, window), total_steps, warmup_fraction, warmup_steps, refresh_every, "
           "block_size, topk_ratio, pooled_budget, mass_tau (None: off), max_block_share, dense_head_share, "
           "record_on_new_block, paper_select, paper_prefix_len, drift_check_every, drift_sample_blocks, "
           "drift_min_recall, unisparse_tau, unisparse_select, window_sink_tokens, window_tokens, dpad_rule, "
           "dpad_prefix_len, dpad_block_start, dpad_block_end, dpad_window, dpad_k_sigma, dpad_scale, dpad_sigma, "
           "dpad_seed, cache (none, block, dual, rows), threads, q_tile_rows, check_finite. Applied in that "
           "order after paper=True (SparseD's authors' preset for paper_prefix_len prompt tokens) and after "
           "profile (a spattn-tune YAML file: the entry nearest this shape, for `layer` its own where it has "
           "one; a profile's per-layer 'dense' entry makes the layer dense).")
      .def("step", &Session::step, py::arg("q"), py::arg("k"), py::arg("v"),
           "Runs the next step (with a cache: a refresh): returns (out float32 [heads, seq_len, head_dim], report).")
      .def("cached_step", &Session::cached_step, py::arg("q"), py::arg("k"), py::arg("v"),
           "A cached step over cached_rows() only: q [heads, rows, d], k and v [kv_heads, rows, d]; returns "
           "(out [heads, rows, d], report).")
      .def("set_decoding_block", &Session::set_decoding_block, py::arg("begin"), py::arg("end"))
      .def("set_query_rows", &Session::set_query_rows, py::arg("rows"))
      .def("set_dpad", &Session::set_dpad, py::arg("prefix_len"), py::arg("block_start"), py::arg("block_end"),
           "DPad policies: the prompt [0, prefix_len) and the current block [block_start, block_end) moved.")
      .def_property_readonly("cached_rows", &Session::cached_rows)
      .def_property_readonly("warmup_steps", &Session::warmup_steps)
      .def_property_readonly("steps_done", &Session::steps_done)
      .def_property_readonly("config", &Session::config);
}
