#include "dispatch/cpu_features.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#elif defined(__aarch64__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

namespace spattn::detail {
namespace {

#if defined(__x86_64__) || defined(__i386__)
uint64_t read_xcr0() {
  uint32_t lo = 0, hi = 0;
  // xgetbv with ecx = 0; written as asm so this file needs no -mxsave.
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

// Linux hands out AMX tile data (8 KiB of XSAVE state per thread) only to a
// process that asks: ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA. Refused (an
// old kernel, a seccomp policy) means no AMX, not a crash at the first tile
// instruction.
bool request_tile_data() {
#if defined(__linux__) && defined(__x86_64__)
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}

CpuFeatures detect() {
  CpuFeatures f;
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
  const bool fma = ecx & (1u << 12);
  const bool osxsave = ecx & (1u << 27);
  if (!osxsave) return f;
  const uint64_t xcr0 = read_xcr0();
  const bool ymm_os = (xcr0 & 0x6) == 0x6;           // SSE + AVX state
  f.f16c = ymm_os && (ecx & (1u << 28)) && (ecx & (1u << 29));  // AVX and F16C
  const bool zmm_os = (xcr0 & 0xE6) == 0xE6;         // + opmask, ZMM_Hi256, Hi16_ZMM
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  const bool avx2 = ebx & (1u << 5);
  const bool avx512f = ebx & (1u << 16), avx512dq = ebx & (1u << 17);
  const bool avx512bw = ebx & (1u << 30), avx512vl = ebx & (1u << 31);
  f.avx2_fma = ymm_os && avx2 && fma;
  f.avx512 = f.avx2_fma && zmm_os && avx512f && avx512dq && avx512bw && avx512vl;
  __cpuid_count(7, 1, eax, ebx, ecx, edx);
  f.avx512_bf16 = f.avx512 && (eax & (1u << 5));
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  const bool amx_bf16 = edx & (1u << 22), amx_tile = edx & (1u << 24);
  const bool tile_os = (xcr0 & 0x60000) == 0x60000;  // XTILECFG + XTILEDATA
  f.amx = f.avx512_bf16 && amx_bf16 && amx_tile && tile_os && request_tile_data();
  return f;
}
#elif defined(__aarch64__)
CpuFeatures detect() {
  CpuFeatures f;
  f.neon = (getauxval(AT_HWCAP) & HWCAP_ASIMD) != 0;
#ifndef HWCAP2_BF16
#define HWCAP2_BF16 (1 << 14)  // older kernel headers
#endif
  f.neon_bf16 = f.neon && (getauxval(AT_HWCAP2) & HWCAP2_BF16) != 0;
  return f;
}
#else
CpuFeatures detect() { return {}; }
#endif

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

}  // namespace spattn::detail
