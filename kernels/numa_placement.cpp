// NUMA placement (see numa_placement.hpp).
#include "spattn/config.h"
#include "kernels/numa_placement.hpp"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <cstdint>
#include <new>
#include <vector>

#if SPATTN_HAS_NUMA
#include <numa.h>
#endif

namespace spattn::detail {

constexpr std::align_val_t kLine{64};
void LineAlignedDelete::operator()(float* p) const noexcept { ::operator delete[](p, kLine); }
LineAlignedFloats new_line_aligned_floats(size_t floats) {
  return LineAlignedFloats(new (kLine) float[floats]);  // not value-initialized
}

namespace {
std::atomic<int> g_simulated_nodes{0};

// Buffers of earlier calls (packed keys, a widened or packed V, a selection
// pass's pools and estimates), kept for the next call: a fresh allocation of
// that size is an mmap (or a heap range glibc gave back) whose pages fault in
// on first touch, which costs more than the work on it in some VMs (a fault
// took about 8 us on the 2-core CI VM: UniSparse's selection at N 8K spent
// half its time faulting in its pools and pooled plans). Calls in a row
// (chunked prefill, a session's steps, a benchmark) want the same sizes
// again. Two tiers, each keeping the largest recently freed buffers:
//  - large (>= 32 MiB): at most 2, the plans of long sequences;
//  - mid (1 MiB .. 32 MiB): at most 16 buffers and 64 MiB in all.
// Smaller buffers are freed: they cost few faults, and small shapes (the
// soak test's included, whose memory check samples RSS) never see the cache
// (with a 64 KiB floor, the cache's buffers raised TSan's allocator
// footprint in the soak test past its 8 MiB slack).
class BufferCache {
 public:
  // A kept buffer of at least `floats` and at most twice that, or a new one.
  LineAlignedFloats take(size_t floats, size_t& capacity) {
    if (Tier* tier = tier_for(floats)) {
      const std::lock_guard<std::mutex> lock(mutex_);
      for (Slot& s : tier->slots)
        if (s.data && s.floats >= floats && s.floats <= 2 * floats) {
          capacity = s.floats;
          tier->bytes -= s.floats * sizeof(float);
          return std::move(s.data);
        }
    }
    capacity = floats;
    return new_line_aligned_floats(floats);
  }
  size_t bytes() {
    const std::lock_guard<std::mutex> lock(mutex_);
    return large_.bytes + mid_.bytes;
  }
  void trim() {
    const std::lock_guard<std::mutex> lock(mutex_);
    for (Tier* t : {&large_, &mid_}) {
      for (Slot& s : t->slots) s.data.reset();
      t->bytes = 0;
    }
  }
  // Keeps buf in an empty slot, else in place of smaller kept ones (within
  // the tier's byte budget); a buffer smaller than every kept one is freed.
  void give(LineAlignedFloats buf, size_t floats) {
    Tier* tier = tier_for(floats);
    if (tier == nullptr) return;  // freed here
    const size_t bytes = floats * sizeof(float);
    const std::lock_guard<std::mutex> lock(mutex_);
    while (true) {
      Slot* smallest = nullptr;
      Slot* empty = nullptr;
      for (Slot& s : tier->slots) {
        if (!s.data) empty = empty != nullptr ? empty : &s;
        else if (smallest == nullptr || s.floats < smallest->floats) smallest = &s;
      }
      if (empty != nullptr && tier->bytes + bytes <= tier->max_bytes) {
        empty->data = std::move(buf);
        empty->floats = floats;
        tier->bytes += bytes;
        return;
      }
      if (smallest == nullptr || smallest->floats >= floats) return;  // keep the larger ones
      tier->bytes -= smallest->floats * sizeof(float);
      smallest->data.reset();
    }
  }

 private:
  struct Slot {
    LineAlignedFloats data;
    size_t floats = 0;
  };
  struct Tier {
    size_t min_bytes, max_bytes;
    std::vector<Slot> slots;
    size_t bytes = 0;  // kept
  };
  Tier* tier_for(size_t floats) {
    const size_t bytes = floats * sizeof(float);
    if (bytes >= large_.min_bytes) return &large_;
    return bytes >= mid_.min_bytes ? &mid_ : nullptr;
  }
  std::mutex mutex_;
  Tier large_{size_t{32} << 20, SIZE_MAX, std::vector<Slot>(2)};
  Tier mid_{size_t{1} << 20, size_t{64} << 20, std::vector<Slot>(16)};
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

size_t buffer_cache_bytes() { return buffer_cache().bytes(); }
void trim_buffer_cache() { buffer_cache().trim(); }

CachedFloats::CachedFloats(size_t floats) : floats_(floats) { data_ = buffer_cache().take(floats, capacity_); }

CachedFloats::~CachedFloats() {
  if (data_) buffer_cache().give(std::move(data_), capacity_);
}

CachedFloats& CachedFloats::operator=(CachedFloats&& o) noexcept {
  if (this != &o) {
    if (data_) buffer_cache().give(std::move(data_), capacity_);
    data_ = std::move(o.data_);
    floats_ = o.floats_;
    capacity_ = o.capacity_;
  }
  return *this;
}

HeadBuffers::~HeadBuffers() {
#if SPATTN_HAS_NUMA
  if (on_nodes_)
    for (float* p : parts_) numa_free(p, std::max<size_t>(bytes_per_head_, 1));
#endif
  if (single_) buffer_cache().give(std::move(single_), single_floats_);
}

}  // namespace spattn::detail
