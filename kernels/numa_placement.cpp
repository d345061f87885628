// NUMA placement (see numa_placement.hpp).
#include "spattn/config.h"
#include "kernels/numa_placement.hpp"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <new>

#if SPATTN_HAS_NUMA
#include <numa.h>
#endif

namespace spattn::detail {
namespace {
std::atomic<int> g_simulated_nodes{0};

// The buffers of the last call's plan (packed keys, a widened or packed V),
// kept for the next call: a fresh allocation of that size is an mmap whose
// pages fault in on first touch, which costs more than packing itself in
// some VMs, and calls in a row (chunked prefill, a session's steps, a
// benchmark) want the same sizes again. At most kSlots buffers are kept (the
// largest recently freed).
// Only buffers of at least kMinBytes are kept: glibc serves every allocation
// that large with a fresh mmap (its largest mmap threshold), while smaller
// ones come back from its heap without new page faults; so small shapes (and
// the soak test's memory check) never see the cache.
class BufferCache {
 public:
  static constexpr int kSlots = 2;
  static constexpr size_t kMinBytes = size_t{32} << 20;
  // A kept buffer of at least `floats` and at most twice that, or a new one.
  std::unique_ptr<float[]> take(size_t floats, size_t& capacity) {
    if (floats * sizeof(float) >= kMinBytes) {
      const std::lock_guard<std::mutex> lock(mutex_);
      for (Slot& s : slots_)
        if (s.data && s.floats >= floats && s.floats <= 2 * floats) {
          capacity = s.floats;
          return std::move(s.data);
        }
    }
    capacity = floats;
    return std::unique_ptr<float[]>(new float[floats]);  // not value-initialized
  }
  // Keeps buf in an empty slot, else in place of the smallest kept one.
  void give(std::unique_ptr<float[]> buf, size_t floats) {
    if (floats * sizeof(float) < kMinBytes) return;  // freed here
    const std::lock_guard<std::mutex> lock(mutex_);
    Slot* target = &slots_[0];
    for (Slot& s : slots_) {
      if (!s.data) {
        target = &s;
        break;
      }
      if (s.floats < target->floats) target = &s;
    }
    if (target->data && target->floats > floats) return;  // keep the larger ones
    target->data = std::move(buf);
    target->floats = floats;
  }

 private:
  struct Slot {
    std::unique_ptr<float[]> data;
    size_t floats = 0;
  };
  std::mutex mutex_;
  Slot slots_[kSlots];
};

BufferCache& buffer_cache() {
  static BufferCache cache;
  return cache;
}
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
  single_ = buffer_cache().take(static_cast<size_t>(kv_heads * floats_per_head), single_floats_);
  for (int64_t h = 0; h < kv_heads; ++h) parts_[h] = single_.get() + h * floats_per_head;
}

HeadBuffers::~HeadBuffers() {
#if SPATTN_HAS_NUMA
  if (on_nodes_)
    for (float* p : parts_) numa_free(p, std::max<size_t>(bytes_per_head_, 1));
#endif
  if (single_) buffer_cache().give(std::move(single_), single_floats_);
}

}  // namespace spattn::detail
