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

// Memory for a call could not be had (the shape is valid, the machine too
// small). The C API reports it as SPATTN_ERROR_OUT_OF_MEMORY.
class OutOfMemory : public Error {
 public:
  using Error::Error;
};

// "spattn: <where>: argument '<arg>' = <value>: <why>"
[[noreturn]] void throw_bad_argument(const char* where, const char* arg, const std::string& value,
                                     const std::string& why);

}  // namespace spattn
