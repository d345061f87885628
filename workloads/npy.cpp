// NumPy .npy reading and writing (fp32 and fp16, C order) and the reader for
// trace folders of captured Q/K/V (stepXXXX/[layerL/]{q,k,v}.npy).
#include <algorithm>
#include <bit>
#include <cctype>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "spattn/error.hpp"
#include "spattn/lab/workload.hpp"

namespace spattn {
namespace {

namespace fs = std::filesystem;

[[noreturn]] void npy_error(const std::string& path, const std::string& why) {
  throw Error("spattn: load_npy: '" + path + "': " + why);
}

// IEEE half -> float, exact for every value (subnormals, inf, NaN included).
float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);  // inf or NaN (payload kept)
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);  // normal: rebias 15 -> 127
  } else if (mant == 0) {
    bits = sign;  // signed zero
  } else {
    // Subnormal half: mant * 2^-24, a normal float.
    const float value = std::ldexp(static_cast<float>(mant), -24);
    return sign ? -value : value;
  }
  return std::bit_cast<float>(bits);
}

uint32_t read_le32(const unsigned char* p) {
  return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24);
}

// A parser for the Python dict literal of a .npy header:
// {'descr': '<f4', 'fortran_order': False, 'shape': (4, 4096, 128), }
class HeaderParser {
 public:
  HeaderParser(const std::string& path, const std::string& text) : path_(path), s_(text) {}

  void parse(std::string& descr, bool& fortran, std::vector<int64_t>& shape) {
    bool have_descr = false, have_fortran = false, have_shape = false;
    expect('{');
    while (true) {
      skip_ws();
      if (peek() == '}') {
        ++i_;
        break;
      }
      const std::string key = parse_string();
      expect(':');
      if (key == "descr") {
        descr = parse_string();
        have_descr = true;
      } else if (key == "fortran_order") {
        fortran = parse_bool();
        have_fortran = true;
      } else if (key == "shape") {
        shape = parse_shape();
        have_shape = true;
      } else {
        fail("unexpected key '" + key + "'");
      }
      skip_ws();
      if (peek() == ',') {
        ++i_;
      } else if (peek() != '}') {
        fail("expected ',' or '}'");
      }
    }
    skip_ws();
    if (i_ != s_.size()) fail("trailing characters after the dict");
    if (!have_descr) fail("missing key 'descr'");
    if (!have_fortran) fail("missing key 'fortran_order'");
    if (!have_shape) fail("missing key 'shape'");
  }

 private:
  [[noreturn]] void fail(const std::string& why) const {
    npy_error(path_,
              "malformed header (" + why + " at character " + std::to_string(i_) + "): " + s_);
  }
  void skip_ws() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  char peek() {
    skip_ws();
    if (i_ >= s_.size()) fail("unexpected end");
    return s_[i_];
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++i_;
  }
  std::string parse_string() {
    const char quote = peek();
    if (quote != '\'' && quote != '"') fail("expected a quoted string");
    const size_t end = s_.find(quote, i_ + 1);
    if (end == std::string::npos) fail("unterminated string");
    std::string out = s_.substr(i_ + 1, end - i_ - 1);
    i_ = end + 1;
    return out;
  }
  bool parse_bool() {
    skip_ws();
    if (s_.compare(i_, 4, "True") == 0) {
      i_ += 4;
      return true;
    }
    if (s_.compare(i_, 5, "False") == 0) {
      i_ += 5;
      return false;
    }
    fail("expected True or False");
  }
  std::vector<int64_t> parse_shape() {
    std::vector<int64_t> shape;
    expect('(');
    while (true) {
      if (peek() == ')') {
        ++i_;
        return shape;
      }
      if (!std::isdigit(static_cast<unsigned char>(peek()))) fail("expected a dimension");
      int64_t n = 0;
      while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) {
        if (n > (std::numeric_limits<int64_t>::max() - 9) / 10) fail("dimension too large");
        n = n * 10 + (s_[i_++] - '0');
      }
      if (i_ < s_.size() && s_[i_] == 'L') ++i_;  // Python 2 long suffix
      shape.push_back(n);
      if (peek() == ',') {
        ++i_;
      } else if (peek() != ')') {
        fail("expected ',' or ')' in shape");
      }
    }
  }

  const std::string& path_;
  const std::string& s_;
  size_t i_ = 0;
};

bool has_qkv(const fs::path& dir) {
  std::error_code ec;
  for (const char* name : {"q.npy", "k.npy", "v.npy"})
    if (!fs::is_regular_file(dir / name, ec)) return false;
  return true;
}

// Natural order: digit runs compare as numbers, so step2 < step10.
bool natural_less(const std::string& a, const std::string& b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    const bool da = std::isdigit(static_cast<unsigned char>(a[i]));
    const bool db = std::isdigit(static_cast<unsigned char>(b[j]));
    if (da && db) {
      size_t ie = i, je = j;
      while (ie < a.size() && std::isdigit(static_cast<unsigned char>(a[ie]))) ++ie;
      while (je < b.size() && std::isdigit(static_cast<unsigned char>(b[je]))) ++je;
      // Compare without leading zeros, by length then digits.
      size_t is = i, js = j;
      while (is + 1 < ie && a[is] == '0') ++is;
      while (js + 1 < je && b[js] == '0') ++js;
      if (ie - is != je - js) return ie - is < je - js;
      const int c = a.compare(is, ie - is, b, js, je - js);
      if (c != 0) return c < 0;
      i = ie;
      j = je;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i;
      ++j;
    }
  }
  if (a.size() - i != b.size() - j) return a.size() - i < b.size() - j;
  return a < b;
}

// Subfolders of dir (names, natural order) that hold q/k/v.npy.
std::vector<std::string> qkv_subfolders(const fs::path& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec))
    if (entry.is_directory(ec) && has_qkv(entry.path()))
      names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end(), natural_less);
  return names;
}

// The number a name ends in, or -1.
int64_t trailing_number(const std::string& name) {
  size_t e = name.size(), b = e;
  while (b > 0 && std::isdigit(static_cast<unsigned char>(name[b - 1]))) --b;
  if (b == e || e - b > 15) return -1;
  return std::stoll(name.substr(b));
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

NpyArray parse_npy(std::span<const std::byte> data, const std::string& path) {
  // Every check below runs on the bytes actually present before anything is
  // allocated from header values, so a lying header cannot ask for gigabytes.
  const auto* bytes = reinterpret_cast<const unsigned char*>(data.data());
  const size_t size = data.size();
  static const unsigned char kMagic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (size < 6 || std::memcmp(bytes, kMagic, 6) != 0)
    npy_error(path, "bad magic: not a NumPy .npy file (expected \\x93NUMPY)");
  if (size < 10) npy_error(path, "malformed header: file ends inside the preamble");
  const int major = bytes[6], minor = bytes[7];
  size_t header_len = 0, header_start = 0;
  if (major == 1) {
    header_len = size_t(bytes[8]) | (size_t(bytes[9]) << 8);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (size < 12) npy_error(path, "malformed header: file ends inside the preamble");
    header_len = read_le32(bytes + 8);
    header_start = 12;
  } else {
    npy_error(path, "unsupported format version " + std::to_string(major) + "." +
                        std::to_string(minor) + " (supported: 1.0, 2.0, 3.0)");
  }
  if (size - header_start < header_len)
    npy_error(path, "malformed header: header length " + std::to_string(header_len) +
                        " runs past the end of the file (" + std::to_string(size) + " bytes)");
  const std::string header(reinterpret_cast<const char*>(bytes + header_start), header_len);

  std::string descr;
  bool fortran = false;
  std::vector<int64_t> shape;
  HeaderParser(path, header).parse(descr, fortran, shape);

  size_t item = 0;
  bool bf16 = false;
  if (descr == "<f4" || (descr == "=f4" && std::endian::native == std::endian::little)) {
    item = 4;
  } else if (descr == "<f2" || (descr == "=f2" && std::endian::native == std::endian::little)) {
    item = 2;
  } else if (descr == "<V2" || descr == "|V2" || descr == "V2" || descr == "bfloat16") {
    // bfloat16 as numpy writes it through ml_dtypes: np.save records the
    // 2-byte void code ('<V2' / '|V2'), the usual header workaround writes
    // 'bfloat16'. A 2-byte void array is read as bfloat16 (as Keras does).
    item = 2;
    bf16 = true;
  } else {
    npy_error(path, "unsupported dtype '" + descr +
                        "' (supported, little-endian: '<f4' float32, '<f2' float16, and bfloat16 as "
                        "'<V2' / '|V2' / 'bfloat16')");
  }
  if (fortran) npy_error(path, "fortran_order True is not supported (C order only)");

  size_t count = 1;
  for (int64_t n : shape) {
    if (n != 0 && count > std::numeric_limits<size_t>::max() / 8 / static_cast<size_t>(n))
      npy_error(path, "malformed header: shape " + shape_string(shape) + " is too large");
    count *= static_cast<size_t>(n);
  }
  const size_t data_start = header_start + header_len;
  const size_t expected = count * item, actual = size - data_start;
  if (actual < expected)
    npy_error(path, "truncated data: shape " + shape_string(shape) + " of '" + descr + "' needs " +
                        std::to_string(expected) + " bytes, found " + std::to_string(actual));

  NpyArray out;
  out.shape = std::move(shape);
  out.data.resize(count);
  const unsigned char* p = bytes + data_start;
  if (item == 4) {
    for (size_t i = 0; i < count; ++i) out.data[i] = std::bit_cast<float>(read_le32(p + 4 * i));
  } else {
    for (size_t i = 0; i < count; ++i) {
      const auto bits = static_cast<uint16_t>(p[2 * i] | (p[2 * i + 1] << 8));
      out.data[i] = bf16 ? std::bit_cast<float>(static_cast<uint32_t>(bits) << 16) : half_to_float(bits);
    }
  }
  return out;
}

NpyArray load_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) npy_error(path, "cannot open file (missing or unreadable)");
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) npy_error(path, "read error");
  return parse_npy(std::as_bytes(std::span<const char>(bytes)), path);
}

void save_npy(const std::string& path, const std::vector<int64_t>& shape, const float* data) {
  size_t count = 1;
  std::string dims;
  for (int64_t n : shape) {
    if (n < 0)
      throw_bad_argument("save_npy", "shape", shape_string(shape), "dimensions must be >= 0");
    count *= static_cast<size_t>(n);
    dims += std::to_string(n) + ", ";
  }
  if (shape.size() > 1)
    dims.resize(dims.size() - 2);  // (4, 5)
  else if (shape.size() == 1)
    dims.resize(dims.size() - 1);  // (4,)
  if (count > 0 && data == nullptr)
    throw_bad_argument("save_npy", "data", "nullptr", "must not be null");
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  // Pad with spaces so the data starts on a multiple of 64 bytes; end with '\n'.
  const bool v2 = header.size() + 1 + 10 > 65535;
  const size_t preamble = v2 ? 12 : 10;
  const size_t total = (preamble + header.size() + 1 + 63) / 64 * 64;
  header.append(total - preamble - header.size() - 1, ' ');
  header.push_back('\n');

  std::string out;
  out.reserve(total + count * 4);
  out.append("\x93NUMPY", 6);
  out.push_back(static_cast<char>(v2 ? 2 : 1));
  out.push_back(0);
  const size_t len = header.size();
  for (size_t b = 0; b < (v2 ? 4u : 2u); ++b)
    out.push_back(static_cast<char>((len >> (8 * b)) & 0xff));
  out += header;
  for (size_t i = 0; i < count; ++i) {
    const uint32_t bits = std::bit_cast<uint32_t>(data[i]);
    for (int b = 0; b < 4; ++b) out.push_back(static_cast<char>((bits >> (8 * b)) & 0xff));
  }
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw Error("spattn: save_npy: '" + path + "': cannot open file for writing");
  f.write(out.data(), static_cast<std::streamsize>(out.size()));
  f.close();
  if (!f) throw Error("spattn: save_npy: '" + path + "': write failed");
}

std::vector<std::string> list_npy_steps(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw Error("spattn: list_npy_steps: '" + dir + "': not a directory");
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (!entry.is_directory(ec)) continue;
    if (has_qkv(entry.path()) || !qkv_subfolders(entry.path()).empty())
      names.push_back(entry.path().filename().string());
  }
  if (ec) throw Error("spattn: list_npy_steps: '" + dir + "': " + ec.message());
  std::sort(names.begin(), names.end(), natural_less);
  std::vector<std::string> out;
  for (const std::string& n : names) out.push_back((fs::path(dir) / n).string());
  return out;
}

std::vector<int> list_npy_layers(const std::string& dir) {
  const std::vector<std::string> steps = list_npy_steps(dir);
  if (steps.empty()) throw Error("spattn: list_npy_layers: '" + dir + "': no stepXXXX folders");
  std::vector<int> layers;
  for (const std::string& n : qkv_subfolders(steps.front())) layers.push_back(static_cast<int>(trailing_number(n)));
  std::sort(layers.begin(), layers.end());
  return layers;
}

NpyStep load_npy_step(const std::string& step_dir, int layer) {
  const std::string where = "spattn: load_npy_step: '" + step_dir + "': ";
  std::error_code ec;
  if (!fs::is_directory(step_dir, ec)) throw Error(where + "not a directory");
  fs::path folder = step_dir;
  const std::vector<std::string> layers = qkv_subfolders(folder);
  if (layer < 0 && has_qkv(folder)) {
    // q/k/v right here.
  } else if (layers.empty()) {
    throw Error(where + (layer < 0 ? "no q.npy, k.npy, v.npy here or in a layer subfolder"
                                   : "no layer subfolders (asked for layer " +
                                         std::to_string(layer) + ")"));
  } else if (layer < 0) {
    folder /= layers.front();
  } else {
    const auto it = std::find_if(layers.begin(), layers.end(),
                                 [&](const std::string& n) { return trailing_number(n) == layer; });
    if (it == layers.end()) {
      std::string names;
      for (const std::string& n : layers) names += (names.empty() ? "" : ", ") + n;
      throw Error(where + "no layer " + std::to_string(layer) + " (layer folders: " + names + ")");
    }
    folder /= *it;
  }
  NpyArray q = load_npy((folder / "q.npy").string());
  NpyArray k = load_npy((folder / "k.npy").string());
  NpyArray v = load_npy((folder / "v.npy").string());
  const std::string in = "spattn: load_npy_step: '" + folder.string() + "': ";
  for (const auto* a : {&q, &k, &v})
    if (a->shape.size() != 3)
      throw Error(in +
                  (a == &q   ? "q"
                   : a == &k ? "k"
                             : "v") +
                  " has shape " + shape_string(a->shape) +
                  ", expected rank 3 [heads][tokens][head_dim]");
  if (k.shape != v.shape)
    throw Error(in + "k shape " + shape_string(k.shape) + " and v shape " + shape_string(v.shape) +
                " differ");
  if (q.shape[2] != k.shape[2])
    throw Error(in + "q head_dim " + std::to_string(q.shape[2]) + " and k head_dim " +
                std::to_string(k.shape[2]) + " differ");
  if (k.shape[0] == 0 || q.shape[0] % k.shape[0] != 0)
    throw Error(in + "k heads " + std::to_string(k.shape[0]) + " must divide q heads " +
                std::to_string(q.shape[0]));
  NpyStep step;
  step.shape = AttentionShape{q.shape[0], k.shape[0], q.shape[1], k.shape[1], q.shape[2], 0.0f};
  step.shape.validate();
  step.q = std::move(q.data);
  step.k = std::move(k.data);
  step.v = std::move(v.data);
  return step;
}

}  // namespace spattn
