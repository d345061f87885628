#pragma once
// What the CPU can run, read once from cpuid/xgetbv (x86) or HWCAP (aarch64).
namespace spattn::detail {

struct CpuFeatures {
  bool avx2_fma = false;  // AVX2 + FMA, with OS support for YMM state
  bool avx512 = false;    // AVX-512 F/BW/DQ/VL, with OS support for ZMM state
  bool f16c = false;         // vcvtph2ps (fp16 -> fp32), with OS support for YMM state
  bool avx512_bf16 = false;  // that plus AVX512_BF16 (vdpbf16ps, vcvtneps2bf16)
  // avx512_bf16 plus AMX-TILE and AMX-BF16, the OS saving tile state (XCR0)
  // and this process granted it (arch_prctl ARCH_REQ_XCOMP_PERM).
  bool amx = false;
  bool neon = false;      // aarch64 Advanced SIMD
  bool neon_bf16 = false; // that plus BFDOT / BFCVT (HWCAP2_BF16)
};

const CpuFeatures& cpu_features();

}  // namespace spattn::detail
