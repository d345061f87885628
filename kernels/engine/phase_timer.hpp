#pragma once
// PhaseTimer: the library side of spattn/phase_times.hpp. Put one at the top
// of a scope; with timing off it does nothing but read one atomic flag.
#include <atomic>
#include <chrono>

#include "spattn/phase_times.hpp"

namespace spattn::detail {

extern std::atomic<bool> g_phase_times_on;

class PhaseTimer {
 public:
  // name: copied into this thread's phase path when timing is on.
  explicit PhaseTimer(const char* name) : PhaseTimer(name, -1) {}
  // name and a number, recorded as "name<number>" (e.g. "estimate g", 16).
  PhaseTimer(const char* name, int64_t number) {
    if (g_phase_times_on.load(std::memory_order_relaxed)) start(name, number);
  }
  ~PhaseTimer() {
    if (on_) stop();
  }
  PhaseTimer(const PhaseTimer&) = delete;
  PhaseTimer& operator=(const PhaseTimer&) = delete;

 private:
  void start(const char* name, int64_t number);
  void stop();
  bool on_ = false;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace spattn::detail
