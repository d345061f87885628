// NUMA placement (see numa_placement.hpp).
#include "spattn/config.h"
#include "kernels/numa_placement.hpp"

#include <algorithm>
#include <atomic>
#include <new>

#if SPATTN_HAS_NUMA
#include <numa.h>
#endif

namespace spattn::detail {
namespace {
std::atomic<int> g_simulated_nodes{0};
}  // namespace

int numa_configured_nodes() {
#if SPATTN_HAS_NUMA
  static const int nodes = numa_available() < 0 ? 1 : std::max(1, numa_num_configured_nodes());
  return nodes;
#else
  return 1;
#endif
}

void set_simulated_numa_nodes(int nodes) { g_simulated_nodes.store(std::max(0, nodes)); }

NumaPlan numa_plan(int threads, int64_t kv_heads) {
  const int sim = g_simulated_nodes.load();
  const int avail = sim > 0 ? sim : numa_configured_nodes();
  NumaPlan p;
  p.nodes = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>({avail, threads, kv_heads})));
  return p;
}

void bind_thread_to_node(int logical_node) {
#if SPATTN_HAS_NUMA
  if (numa_configured_nodes() > 1 || g_simulated_nodes.load() > 0)
    if (numa_available() >= 0) (void)numa_run_on_node(logical_node % numa_configured_nodes());
#else
  (void)logical_node;
#endif
}

HeadBuffers::HeadBuffers(const NumaPlan& plan, int64_t kv_heads, int64_t floats_per_head)
    : parts_(static_cast<size_t>(kv_heads), nullptr),
      bytes_per_head_(static_cast<size_t>(floats_per_head) * sizeof(float)) {
#if SPATTN_HAS_NUMA
  if (plan.nodes > 1 && numa_available() >= 0) {
    on_nodes_ = true;
    for (int64_t h = 0; h < kv_heads; ++h) {
      const int node = plan.node_of_kv_head(h, kv_heads) % numa_configured_nodes();
      void* p = numa_alloc_onnode(std::max<size_t>(bytes_per_head_, 1), node);
      if (p == nullptr) {
        for (int64_t j = 0; j < h; ++j) numa_free(parts_[j], std::max<size_t>(bytes_per_head_, 1));
        throw std::bad_alloc();
      }
      parts_[h] = static_cast<float*>(p);
    }
    return;
  }
#else
  (void)plan;
#endif
  single_.reset(new float[static_cast<size_t>(kv_heads * floats_per_head)]);  // not value-initialized
  for (int64_t h = 0; h < kv_heads; ++h) parts_[h] = single_.get() + h * floats_per_head;
}

HeadBuffers::~HeadBuffers() {
#if SPATTN_HAS_NUMA
  if (on_nodes_)
    for (float* p : parts_) numa_free(p, std::max<size_t>(bytes_per_head_, 1));
#endif
}

}  // namespace spattn::detail
