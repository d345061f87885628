#pragma once
// spattn::Error: every bad argument at the API boundary raises one, and its
// message names the argument and the value that was refused.
#include <stdexcept>
#include <string>

namespace spattn {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// "spattn: <where>: argument '<arg>' = <value>: <why>"
[[noreturn]] void throw_bad_argument(const char* where, const char* arg, const std::string& value,
                                     const std::string& why);

}  // namespace spattn
