// Chooses the ISA once (best supported, or SPATTN_ISA) and hands out its table.
#include <atomic>
#include <cstdlib>
#include <string>

#include "dispatch/cpu_features.hpp"
#include "dispatch/kernel_table.hpp"
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
#endif
#if defined(__aarch64__)
    case Isa::neon:
      return f.neon ? &kernel_table_neon() : nullptr;
#endif
    default:
      (void)f;
      return nullptr;
  }
}

namespace {

const KernelTable* choose_initial() {
  if (const char* env = std::getenv("SPATTN_ISA"); env != nullptr && *env != '\0') {
    Isa isa = Isa::scalar;
    try {
      isa = parse_isa(env);
    } catch (const Error&) {
      throw Error(std::string("spattn: SPATTN_ISA=") + env + ": not an ISA name (scalar, avx2, avx512 or neon)");
    }
    const KernelTable* t = kernel_table_for(isa);
    if (t == nullptr) {
      throw Error(std::string("spattn: SPATTN_ISA=") + env +
                  ": this CPU or build does not support that ISA (supported: " +
                  [] {
                    std::string s;
                    for (Isa i : supported_isas()) s += std::string(s.empty() ? "" : ", ") + isa_name(i);
                    return s;
                  }() +
                  ")");
    }
    return t;
  }
  const std::vector<Isa> all = supported_isas();
  return kernel_table_for(all.back());
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
  }
  return "unknown";
}

Isa parse_isa(std::string_view name) {
  for (Isa i : {Isa::scalar, Isa::avx2, Isa::avx512, Isa::neon})
    if (name == isa_name(i)) return i;
  throw_bad_argument("parse_isa", "isa", std::string(name), "expected scalar, avx2, avx512 or neon");
}

bool isa_supported(Isa isa) { return detail::kernel_table_for(isa) != nullptr; }

std::vector<Isa> supported_isas() {
  std::vector<Isa> out;
  for (Isa i : {Isa::scalar, Isa::neon, Isa::avx2, Isa::avx512})
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
