#pragma once
// JSON output of the spattn tools, through nlohmann-json (Debian's
// nlohmann-json3-dev): strings are escaped by the library, non-finite numbers
// are written as null, keys keep the order they were added in.
#include <cmath>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "spattn/config.h"
#include "spattn/error.hpp"

namespace spattn::cli {

using Json = nlohmann::ordered_json;

// A number, or null when it is NaN or infinite (JSON has neither).
inline Json number(double x) { return std::isfinite(x) ? Json(x) : Json(nullptr); }

// Writes j (indented) to path, an object with the tool's name and version
// added; throws spattn::Error naming the file when it cannot be written.
inline void write_json_file(const std::string& path, const char* tool, Json j) {
  if (j.is_object()) {
    j["tool"] = tool;
    j["version"] = SPATTN_VERSION_STRING;
  }
  std::ofstream out(path);
  out << j.dump(2) << '\n';
  if (!out) throw Error(std::string(tool) + ": cannot write " + path);
}

}  // namespace spattn::cli
