#pragma once
// The library's one thread pool entry: every parallel loop of spattn (the
// engine's loop over (head, query block) work items, packing, selection,
// compaction) runs through parallel_for. It is the only place that uses
// OpenMP, so thread counts, NUMA binding and scheduling are decided once.
//
// Every item is computed by exactly one thread and no item depends on how
// items are split, so results do not depend on the thread count.
#include <cstdint>

#include "kernels/engine/function_ref.hpp"
#include "kernels/numa_placement.hpp"

namespace spattn::detail {

enum class Schedule {
  contiguous,  // one contiguous range per thread (OpenMP static): cheap, NUMA-friendly
  dynamic,     // items handed out one at a time: for items of uneven cost
};

// OpenMP's default team size (OMP_NUM_THREADS or the cores available).
int default_threads();

// Calls body(begin, end) over [0, n) on `threads` threads. With contiguous
// scheduling each thread gets one call (its share, possibly empty ones are
// skipped), so body can allocate its scratch once per call; with dynamic
// scheduling body sees one item per call. With a plan of several NUMA nodes
// each thread first binds to the node its share belongs to.
void parallel_for(int threads, int64_t n, FunctionRef<void(int64_t begin, int64_t end)> body,
                  Schedule schedule = Schedule::contiguous, const NumaPlan* numa = nullptr);

}  // namespace spattn::detail
