#pragma once
// NUMA placement for the OpenMP framework. On a machine with several nodes,
// kv heads are split into contiguous ranges, one per node; each head's packed
// K (and a copy of its V) lives on its node, and the threads whose static
// share of (head, query block) items covers those heads run on that node.
// With one node (or without libnuma) nothing changes: one buffer, first
// touched by the threads that pack it.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace spattn::detail {

struct NumaPlan {
  int nodes = 1;  // logical nodes in use; 1 = no placement
  // Contiguous ranges: the same split the static schedule gives the threads.
  int node_of_kv_head(int64_t kvh, int64_t kv_heads) const {
    return static_cast<int>(kvh * nodes / kv_heads);
  }
  int node_of_thread(int thread, int threads) const { return thread * nodes / threads; }
};

// min(configured nodes, threads, kv_heads) nodes, or the simulated count.
NumaPlan numa_plan(int threads, int64_t kv_heads);
// Nodes libnuma reports (1 without libnuma or when numa_available() fails).
int numa_configured_nodes();
// Runs the calling thread on the physical node behind a logical one.
void bind_thread_to_node(int logical_node);
// Tests exercise the multi-node path on a one-node machine: logical node n
// maps to physical node n % numa_configured_nodes(). 0 turns it off.
void set_simulated_numa_nodes(int nodes);

// Floats starting on a cache line (64 bytes; new float[] gives 16): the
// kernels read packed keys and values in rows of whole lines, and a row that
// straddles two lines costs every vector load and AMX tile row two.
struct LineAlignedDelete {
  void operator()(float* p) const noexcept;
};
using LineAlignedFloats = std::unique_ptr<float[], LineAlignedDelete>;
LineAlignedFloats new_line_aligned_floats(size_t floats);  // uninitialized

// The plans' buffer cache: the bytes it keeps now (at most two large buffers
// plus the mid tier's 64 MiB), and freeing them all (for tests: the cache's
// bound has its own test).
size_t buffer_cache_bytes();
void trim_buffer_cache();

// Uninitialized floats from the buffer cache of the plans (see
// numa_placement.cpp), given back to it when destroyed: the scratch of
// passes that calls in a row need again at the same size.
class CachedFloats {
 public:
  CachedFloats() = default;
  explicit CachedFloats(size_t floats);
  ~CachedFloats();
  CachedFloats(CachedFloats&&) noexcept = default;
  CachedFloats& operator=(CachedFloats&& o) noexcept;
  float* data() const { return data_.get(); }
  size_t size() const { return floats_; }

 private:
  LineAlignedFloats data_;
  size_t floats_ = 0, capacity_ = 0;
};

// One float buffer per kv head, on its node (numa_alloc_onnode) when the plan
// has several nodes, else parts of one uninitialized allocation (reused from
// an earlier call's plan when one of a fitting size was kept: see
// numa_placement.cpp). Never zeroed: the writers fill every element.
class HeadBuffers {
 public:
  HeadBuffers(const NumaPlan& plan, int64_t kv_heads, int64_t floats_per_head);
  ~HeadBuffers();
  HeadBuffers(const HeadBuffers&) = delete;
  HeadBuffers& operator=(const HeadBuffers&) = delete;
  float* head(int64_t kvh) const { return parts_[static_cast<size_t>(kvh)]; }

 private:
  std::vector<float*> parts_;
  LineAlignedFloats single_;
  size_t single_floats_ = 0;
  [[maybe_unused]] size_t bytes_per_head_ = 0;  // used only with libnuma
  [[maybe_unused]] bool on_nodes_ = false;
};

}  // namespace spattn::detail
