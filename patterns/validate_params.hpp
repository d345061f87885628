#pragma once
// Parameter checks of the pattern policies, shared by the policy functions
// (prefix "params.") and SessionConfig::validate (prefix "unisparse." /
// "window."), so a session refuses bad parameters when it is built rather
// than at its first sparse step. Each throws spattn::Error naming the field.
#include <string>

#include "spattn/patterns.hpp"

namespace spattn::detail {

void validate_unisparse_params(const char* where, const std::string& prefix, const UnisparseParams& p);
// A BlockMass's fields and table size (the selections read it by rows).
void validate_block_mass(const char* where, const BlockMass& mass);
void validate_window_sink_params(const char* where, const std::string& prefix,
                                 const WindowSinkParams& p);

}  // namespace spattn::detail
