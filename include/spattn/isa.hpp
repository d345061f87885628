#pragma once
// Instruction-set paths. The best one the CPU supports is chosen once at first
// use; SPATTN_ISA=scalar|avx2|avx512|avx512_bf16|amx|neon|neon_bf16 (any
// case) or set_isa() forces one.
// A SPATTN_ISA this CPU cannot run is reported once on stderr and the best
// path used; with SPATTN_ISA_STRICT=1 every kernel call throws spattn::Error
// instead.
#include <string_view>
#include <vector>

namespace spattn {

// avx512_bf16 is avx512 plus bf16 dot products (vdpbf16ps): its fp32 kernels
// are avx512's; bf16 K/V run on the bf16 kernels instead of being widened.
// amx is avx512_bf16 with the bf16 QK and PV products of full 16-row tiles
// on AMX-BF16 tiles (Linux must grant the process tile state; see
// dispatch/cpu_features.cpp). neon_bf16 is neon plus Arm's BFDOT (the CPU
// reports bf16 in HWCAP2): neon's fp32 kernels, bf16 K/V on the bf16 kernels.
enum class Isa { scalar, avx2, avx512, neon, avx512_bf16, amx, neon_bf16 };

const char* isa_name(Isa isa);
// Parses "scalar", "avx2", "avx512", "avx512_bf16", "amx", "neon" or "neon_bf16" in any case; throws spattn::Error otherwise.
Isa parse_isa(std::string_view name);
// Whether this build contains the path and this CPU can run it.
bool isa_supported(Isa isa);
// Every path usable here, best last.
std::vector<Isa> supported_isas();
// The path kernels use now.
Isa active_isa();
// Forces a path for the whole process; throws spattn::Error if unsupported here.
void set_isa(Isa isa);

}  // namespace spattn
