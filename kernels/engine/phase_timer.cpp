// Phase timing (see spattn/phase_times.hpp and phase_timer.hpp).
#include "kernels/engine/phase_timer.hpp"

#include <algorithm>
#include <mutex>
#include <string>
#include <vector>

namespace spattn::detail {

std::atomic<bool> g_phase_times_on{false};

namespace {

std::mutex g_mutex;
std::vector<PhaseTime>& recorded() {  // guarded by g_mutex
  static std::vector<PhaseTime> phases;
  return phases;
}
// The entry of this path, made (in the order phases start, so that an outer
// phase comes before its inner ones) if new. Under g_mutex.
PhaseTime& entry(const std::string& path) {
  std::vector<PhaseTime>& phases = recorded();
  auto it = std::find_if(phases.begin(), phases.end(), [&](const PhaseTime& p) { return p.name == path; });
  return it != phases.end() ? *it : phases.emplace_back(PhaseTime{path, 0.0, 0});
}
// The path of the phases open on this thread ("a/b/c"), and where each
// level's name begins in it.
thread_local std::string t_path;
thread_local std::vector<size_t> t_starts;

}  // namespace

void PhaseTimer::start(const char* name, int64_t number) {
  on_ = true;
  t_starts.push_back(t_path.size());
  if (!t_path.empty()) t_path += '/';
  t_path += name;
  if (number >= 0) t_path += std::to_string(number);
  {
    const std::lock_guard<std::mutex> lock(g_mutex);
    entry(t_path);
  }
  t0_ = std::chrono::steady_clock::now();
}

void PhaseTimer::stop() {
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0_).count();
  {
    const std::lock_guard<std::mutex> lock(g_mutex);
    PhaseTime& p = entry(t_path);  // made at start unless taken since
    p.ms += ms;
    ++p.calls;
  }
  t_path.resize(t_starts.back());
  t_starts.pop_back();
}

}  // namespace spattn::detail

namespace spattn {

void enable_phase_times(bool on) { detail::g_phase_times_on.store(on, std::memory_order_relaxed); }

std::vector<PhaseTime> take_phase_times() {
  const std::lock_guard<std::mutex> lock(detail::g_mutex);
  std::vector<PhaseTime> out;
  out.swap(detail::recorded());
  return out;
}

}  // namespace spattn
