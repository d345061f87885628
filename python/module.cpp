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
#include <string>
#include <vector>

#include "spattn/config.h"
#include "spattn/session.hpp"
#include "spattn/spattn.hpp"
#if SPATTN_HAS_YAML
#include "spattn/profile.hpp"
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

py::array dense(const py::array& q, const py::array& k, const py::array& v, bool causal, int64_t q_offset, float scale,
                const std::string& out_dtype, int threads, int64_t q_tile_rows, int64_t k_block) {
  const spattn::InputView qv = view_of(q, "q"), kv = view_of(k, "k"), vv = view_of(v, "v");
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

py::array block_sparse(const py::array& q, const py::array& k, const py::array& v, const py::array& mask,
                       int64_t block_size, bool causal, int64_t q_offset, float scale, const std::string& out_dtype,
                       int threads) {
  const spattn::InputView qv = view_of(q, "q"), kv = view_of(k, "k"), vv = view_of(v, "v");
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

py::array unisparse(const py::array& q, const py::array& k, bool causal, int64_t q_offset, float scale,
                    int64_t block_size, const std::vector<int64_t>& granularities, const std::string& select,
                    double tau, double topk_ratio, int64_t min_blocks, int threads) {
  const spattn::InputView qv = view_of(q, "q"), kv = view_of(k, "k");
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
class Session {
 public:
  Session(int64_t heads, int64_t kv_heads, int64_t seq_len, int64_t head_dim, const std::string& policy,
          int64_t total_steps, double warmup_fraction, int64_t block_size, double topk_ratio, const std::string& profile,
          int threads)
      : session_(make(heads, kv_heads, seq_len, head_dim, policy, total_steps, warmup_fraction, block_size, topk_ratio,
                      profile, threads)) {}

  // (out, report): out [heads, seq_len, head_dim] float32; report a dict of
  // what ran (path, ms, select_ms, density, dense_heads, step).
  py::tuple step(const py::array& q, const py::array& k, const py::array& v) {
    const spattn::InputView qv = view_of(q, "q"), kv = view_of(k, "k"), vv = view_of(v, "v");
    const spattn::AttentionShape& s = session_.shape();
    py::array out = new_output(s, "fp32");
    const spattn::OutputView ov = out_view(out, DType::fp32);
    spattn::StepReport r;
    {
      py::gil_scoped_release nogil;
      r = session_.step(qv, kv, vv, ov);
    }
    py::dict report;
    report["step"] = r.step;
    report["path"] = spattn::step_path_name(r.path);
    report["ms"] = r.ms;
    report["select_ms"] = r.select_ms;
    report["density"] = r.density;
    report["dense_heads"] = r.dense_heads;
    return py::make_tuple(out, report);
  }
  void set_decoding_block(int64_t begin, int64_t end) { session_.set_decoding_block(begin, end); }
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
    d["mass_budget_tau"] = c.mass_budget ? py::object(py::float_(c.mass_budget->tau)) : py::object(py::none());
    d["threads"] = c.kernel.threads;
    return d;
  }

 private:
  static spattn::DiffusionAttention make(int64_t heads, int64_t kv_heads, int64_t seq_len, int64_t head_dim,
                                         const std::string& policy, int64_t total_steps, double warmup_fraction,
                                         int64_t block_size, double topk_ratio, const std::string& profile,
                                         int threads) {
    const spattn::AttentionShape shape{heads, kv_heads, seq_len, seq_len, head_dim};
    spattn::SessionConfig c;
    c.policy = spattn::parse_policy(policy);
    c.total_steps = total_steps;
    c.warmup_fraction = warmup_fraction;
    c.block_size = block_size;
    c.topk_ratio = topk_ratio;
    c.kernel.threads = threads;
    if (!profile.empty()) {
#if SPATTN_HAS_YAML
      // The entry tuned nearest this shape (a word on stderr when none fits).
      c = spattn::session_config_from_profile(spattn::Profile::load_for_machine(profile, /*strict=*/false), shape, c,
                                              spattn::ProfileFit::lenient);
#else
      throw py::value_error("profile: this build has no YAML profile support");
#endif
    }
    return spattn::DiffusionAttention(shape, c);
  }

  spattn::DiffusionAttention session_;
};

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
        py::arg("out_dtype") = "fp32", py::arg("threads") = 0, py::arg("q_tile_rows") = 64,
        py::arg("k_block") = 64,
        "softmax(scale q k^T) v for q [heads, q_len, d], k and v [kv_heads, kv_len, d]; returns "
        "[heads, q_len, d] of out_dtype ('fp32', or 'bf16' as uint16 bits).");
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
  py::class_<Session>(m, "Session", "One attention layer of a diffusion model, stepped once per denoising step.")
      .def(py::init<int64_t, int64_t, int64_t, int64_t, const std::string&, int64_t, double, int64_t, double,
                    const std::string&, int>(),
           py::arg("heads"), py::arg("kv_heads"), py::arg("seq_len"), py::arg("head_dim"), py::kw_only(),
           py::arg("policy") = "sparsed", py::arg("total_steps") = 64, py::arg("warmup_fraction") = 0.2,
           py::arg("block_size") = 64, py::arg("topk_ratio") = 0.1, py::arg("profile") = "",
           py::arg("threads") = 0,
           "policy: dense, sparsed, unisparse, dpad, dpad+sparsed, window; profile: a spattn-tune YAML file "
           "whose entry nearest this shape sets block size, budget and warmup.")
      .def("step", &Session::step, py::arg("q"), py::arg("k"), py::arg("v"),
           "Runs the next step: returns (out float32 [heads, seq_len, head_dim], report dict).")
      .def("set_decoding_block", &Session::set_decoding_block, py::arg("begin"), py::arg("end"))
      .def_property_readonly("warmup_steps", &Session::warmup_steps)
      .def_property_readonly("steps_done", &Session::steps_done)
      .def_property_readonly("config", &Session::config);
}
