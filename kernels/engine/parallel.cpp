// parallel_for: the OpenMP region of the library (see parallel.hpp).
#include "kernels/engine/parallel.hpp"

#include <omp.h>

#include <algorithm>

namespace spattn::detail {

int default_threads() { return omp_get_max_threads(); }

void parallel_for(int threads, int64_t n, FunctionRef<void(int64_t, int64_t)> body, Schedule schedule,
                  const NumaPlan* numa) {
  if (n <= 0) return;
  // One thread, or one item: no parallel region (its start costs microseconds).
  if ((threads <= 1 || n == 1) && (numa == nullptr || numa->nodes <= 1)) {
    if (schedule == Schedule::contiguous) {
      body(0, n);
    } else {
      for (int64_t i = 0; i < n; ++i) body(i, i + 1);
    }
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    if (numa != nullptr && numa->nodes > 1) bind_thread_to_node(numa->node_of_thread(t, nt));
    if (schedule == Schedule::contiguous) {
      // The split OpenMP's static schedule makes: the first n % nt threads
      // get one item more.
      const int64_t base = n / nt, extra = n % nt;
      const int64_t begin = t * base + std::min<int64_t>(t, extra);
      const int64_t end = begin + base + (t < extra ? 1 : 0);
      if (begin < end) body(begin, end);
    } else {
#pragma omp for schedule(dynamic, 1)
      for (int64_t i = 0; i < n; ++i) body(i, i + 1);
    }
  }
}

}  // namespace spattn::detail
