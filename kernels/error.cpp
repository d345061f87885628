#include "spattn/error.hpp"

namespace spattn {

void throw_bad_argument(const char* where, const char* arg, const std::string& value,
                        const std::string& why) {
  throw Error(std::string("spattn: ") + where + ": argument '" + arg + "' = " + value + ": " + why);
}

}  // namespace spattn
