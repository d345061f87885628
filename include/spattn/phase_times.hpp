#pragma once
// Where a call's time goes: wall time per phase of the library's calls
// (packing K/V, converting q, the attention loop, selection passes), summed
// over the calls made while enabled. For benchmarks and tuning
// (`spattn-compare --phases`). Off by default; a disabled phase costs one
// relaxed atomic load. Phases are timed on the calling thread around whole
// parallel regions, so a phase's time is wall time, not CPU time.
//
// Names are paths: a phase started inside another is recorded as
// "outer/inner" (e.g. "unisparse_select/estimate g16/pack_kv"), and an outer
// phase's time includes its inner ones.
#include <cstdint>
#include <string>
#include <vector>

namespace spattn {

struct PhaseTime {
  std::string name;   // the phase's path
  double ms = 0.0;    // wall time summed over its calls
  int64_t calls = 0;  // how many times it ran
};

// Turns phase timing on or off for the whole process (any thread).
void enable_phase_times(bool on);
// The phases timed since the last take, in the order first seen, and resets them.
std::vector<PhaseTime> take_phase_times();

}  // namespace spattn
