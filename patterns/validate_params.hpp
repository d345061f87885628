#pragma once
// Parameter checks of the pattern policies, shared by the policy functions
// (prefix "params.") and SessionConfig::validate (prefix "unisparse." /
// "window."), so a session refuses bad parameters when it is built rather
// than at its first sparse step. Each throws spattn::Error naming the field.
#include <cstdio>
#include <string>

#include "spattn/patterns.hpp"

namespace spattn::detail {

// A parameter's value in messages: shortest "%g" form.
inline std::string fmt_param(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

void validate_unisparse_params(const char* where, const std::string& prefix, const UnisparseParams& p);
// A BlockMass's fields and table size (the selections read it by rows).
void validate_block_mass(const char* where, const BlockMass& mass);
// The session's selections (pooled, mass budget, paper preset) take
// bidirectional masses only: throws spattn::Error for a causal one.
void refuse_causal_mass(const char* where, const BlockMass& mass);
// DPad's keep rule (rule, window, and sigma or k_sigma / scale); the block
// geometry is checked where it is used (dpad_kept_tokens).
void validate_dpad_rule(const char* where, const std::string& prefix, const DpadParams& p);
void validate_window_sink_params(const char* where, const std::string& prefix,
                                 const WindowSinkParams& p);

}  // namespace spattn::detail
