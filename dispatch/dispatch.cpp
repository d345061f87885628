// Chooses the ISA once (best supported, or SPATTN_ISA) and hands out its table.
#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "dispatch/cpu_features.hpp"
#include "kernels/kernel_table.hpp"
#include "spattn/error.hpp"
#include "spattn/isa.hpp"

namespace spattn {
namespace detail {

const KernelTable* kernel_table_for(Isa isa) {
  const CpuFeatures& f = cpu_features();
  switch (isa) {
    case Isa::scalar:
      return &kernel_table_scalar();
#if defined(__x86_64__)
    case Isa::avx2:
      return f.avx2_fma ? &kernel_table_avx2() : nullptr;
    case Isa::avx512:
      return f.avx512 ? &kernel_table_avx512() : nullptr;
    case Isa::avx512_bf16:
      return f.avx512_bf16 ? &kernel_table_avx512_bf16() : nullptr;
    case Isa::amx:
      return f.amx ? &kernel_table_amx() : nullptr;
#endif
#if defined(__aarch64__)
    case Isa::neon:
      return f.neon ? &kernel_table_neon() : nullptr;
    case Isa::neon_bf16:
      return f.neon_bf16 ? &kernel_table_neon_bf16() : nullptr;
#endif
    default:
      (void)f;
      return nullptr;
  }
}

namespace {

std::string supported_list() {
  std::string s;
  for (Isa i : supported_isas()) s += std::string(s.empty() ? "" : ", ") + isa_name(i);
  return s;
}

bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' && std::string(v) != "0";
}

// SPATTN_ISA names a path (any case). A name that is not an ISA, or one this
// CPU or build cannot run, is reported once on stderr and the best supported
// path is used instead; with SPATTN_ISA_STRICT=1 it is an Error at every
// kernel call instead (the tools check it at start and exit 1).
const KernelTable* choose_initial() {
  const std::vector<Isa> all = supported_isas();
  const KernelTable* best = kernel_table_for(all.back());
  const char* env = std::getenv("SPATTN_ISA");
  if (env == nullptr || *env == '\0') return best;
  std::string why;
  const KernelTable* t = nullptr;
  try {
    t = kernel_table_for(parse_isa(env));
    if (t == nullptr) why = "this CPU or build does not support that ISA (supported: " + supported_list() + ")";
  } catch (const Error&) {
    why = "not an ISA name (scalar, avx2, avx512, avx512_bf16, amx, neon or neon_bf16)";
  }
  if (t != nullptr) return t;
  if (env_flag("SPATTN_ISA_STRICT")) throw Error(std::string("spattn: SPATTN_ISA=") + env + ": " + why);
  std::fprintf(stderr, "spattn: warning: SPATTN_ISA=%s: %s; using %s instead (SPATTN_ISA_STRICT=1 makes this an error)\n",
               env, why.c_str(), isa_name(best->isa));
  return best;
}

std::atomic<const KernelTable*>& active_slot() {
  static std::atomic<const KernelTable*> slot{choose_initial()};
  return slot;
}

}  // namespace

const KernelTable& active_kernels() { return *active_slot().load(std::memory_order_acquire); }

}  // namespace detail

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::scalar: return "scalar";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
    case Isa::neon: return "neon";
    case Isa::avx512_bf16: return "avx512_bf16";
    case Isa::amx: return "amx";
    case Isa::neon_bf16: return "neon_bf16";
  }
  return "unknown";
}

Isa parse_isa(std::string_view name) {
  std::string lower(name);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (Isa i : {Isa::scalar, Isa::avx2, Isa::avx512, Isa::avx512_bf16, Isa::amx, Isa::neon, Isa::neon_bf16})
    if (lower == isa_name(i)) return i;
  throw_bad_argument("parse_isa", "isa", std::string(name),
                     "expected scalar, avx2, avx512, avx512_bf16, amx, neon or neon_bf16");
}

bool isa_supported(Isa isa) { return detail::kernel_table_for(isa) != nullptr; }

std::vector<Isa> supported_isas() {
  std::vector<Isa> out;
  for (Isa i : {Isa::scalar, Isa::neon, Isa::neon_bf16, Isa::avx2, Isa::avx512, Isa::avx512_bf16, Isa::amx})
    if (isa_supported(i)) out.push_back(i);
  return out;
}

Isa active_isa() { return detail::active_kernels().isa; }

void set_isa(Isa isa) {
  const detail::KernelTable* t = detail::kernel_table_for(isa);
  if (t == nullptr)
    throw_bad_argument("set_isa", "isa", isa_name(isa), "not supported by this CPU or build");
  detail::active_slot().store(t, std::memory_order_release);
}

}  // namespace spattn
