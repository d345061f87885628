#pragma once
// Wall-clock timing of the lab and the tools: one run, and the median
// of repeated runs (the one statistic every tool reports; machines are noisy).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <vector>

namespace spattn::lab {

template <class F>
double time_ms(F&& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// NaN for no values; the mean of the two middle values for an even count.
inline double median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

template <class F>
double median_ms(int reps, F&& f) {
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) t.push_back(time_ms(f));
  return median(std::move(t));
}

}  // namespace spattn::lab
