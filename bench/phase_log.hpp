#pragma once
// spattn-compare --phases: the library's phase times (spattn/phase_times.hpp)
// per timed method, summed over the repetitions, printed per repetition.
#include <algorithm>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "spattn/phase_times.hpp"

namespace spattn::bench {

class PhaseLog {
 public:
  explicit PhaseLog(bool on) : on_(on) {
    enable_phase_times(on);
    take_phase_times();  // drop what ran before
  }
  ~PhaseLog() { enable_phase_times(false); }
  PhaseLog(const PhaseLog&) = delete;
  PhaseLog& operator=(const PhaseLog&) = delete;
  bool on() const { return on_; }

  // Phases since the last call (warm-ups: call it before timing) are dropped.
  void skip() {
    if (on_) take_phase_times();
  }
  // Phases since the last call, added to method's.
  void add(const std::string& method) {
    if (!on_) return;
    std::vector<PhaseTime>* into = nullptr;
    for (auto& [name, phases] : methods_)
      if (name == method) into = &phases;
    if (into == nullptr) into = &methods_.emplace_back(method, std::vector<PhaseTime>{}).second;
    for (const PhaseTime& p : take_phase_times()) {
      PhaseTime* same = nullptr;
      for (PhaseTime& q : *into)
        if (q.name == p.name) same = &q;
      if (same == nullptr) same = &into->emplace_back(PhaseTime{p.name, 0.0, 0});
      same->ms += p.ms;
      same->calls += p.calls;
    }
  }
  // One block per method: each phase's ms and calls per repetition, nested
  // phases indented under their outer phase; then clears.
  void print(int reps) {
    if (!on_ || methods_.empty()) return;
    std::printf("  phases, ms per rep (wall time on the calling thread; an outer phase includes its inner ones):\n");
    for (const auto& [method, phases] : methods_) {
      std::printf("    %s\n", method.c_str());
      for (const PhaseTime& p : phases) {
        const size_t slash = p.name.rfind('/');
        const int depth = static_cast<int>(std::count(p.name.begin(), p.name.end(), '/'));
        const std::string leaf = slash == std::string::npos ? p.name : p.name.substr(slash + 1);
        std::printf("      %*s%-*s %10.2f  (%g calls)\n", 2 * depth, "", 36 - 2 * depth, leaf.c_str(),
                    p.ms / reps, static_cast<double>(p.calls) / reps);
      }
    }
    methods_.clear();
  }

 private:
  bool on_;
  std::vector<std::pair<std::string, std::vector<PhaseTime>>> methods_;
};

}  // namespace spattn::bench
