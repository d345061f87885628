#pragma once
// A .npy writer for uint8 arrays ('|u1', C order, format 1.0): the block
// masks spattn-compare exports. workloads/npy.cpp writes float32 only, and a
// mask of 0/1 bytes is 4x smaller and reads back in NumPy/PyTorch as is.
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "spattn/error.hpp"

namespace spattn::bench {

inline void save_npy_u8(const std::string& path, const std::vector<int64_t>& shape, const uint8_t* data) {
  std::string dict = "{'descr': '|u1', 'fortran_order': False, 'shape': (";
  int64_t count = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    dict += std::to_string(shape[i]) + (shape.size() == 1 || i + 1 < shape.size() ? ", " : "");
    count *= shape[i];
  }
  dict += "), }";
  // The format wants the data to start on a 64-byte boundary and the header
  // to end in '\n'; 10 bytes of preamble precede it.
  const size_t total = (10 + dict.size() + 1 + 63) / 64 * 64;
  dict.append(total - 10 - dict.size() - 1, ' ');
  dict += '\n';
  if (dict.size() > 65535) throw Error("spattn: save_npy_u8: '" + path + "': header too long");
  std::ofstream out(path, std::ios::binary);
  const unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                                 static_cast<unsigned char>(dict.size() & 0xff),
                                 static_cast<unsigned char>(dict.size() >> 8)};
  out.write(reinterpret_cast<const char*>(pre), sizeof pre);
  out.write(dict.data(), static_cast<std::streamsize>(dict.size()));
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(count));
  if (!out) throw Error("spattn: save_npy_u8: '" + path + "': cannot write the file");
}

}  // namespace spattn::bench
