// GPU runtime helpers shared by every kernel file: device properties, a device guard, scratch
// memory from the caching allocator, launch sizing and the switch that selects the simple v0
// reference kernels. Definitions in runtime.hip. Include after platform.h (it includes it).
//
// Kernels run on hg::gpu::stream() -- the stream of the current device. The op argument structs
// carry raw pointers and no device: the dispatcher makes the inputs' device current first
// (DeviceBackend::make_current), so an op on gpu:1 tensors runs on gpu:1 and its stream.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "platform.h"

namespace hg::gpu {

// What hipgrad reads from the device's properties (the subset both runtimes define alike).
struct DeviceInfo {
  std::string name;      // "NVIDIA H100 80GB HBM3", "AMD Instinct MI250X"
  std::string arch;      // "sm_90", "gfx90a:sramecc+:xnack-"
  int warp_size = 0;     // 32 on NVIDIA and RDNA, 64 on gfx9/CDNA
  int multiprocessors = 0;
  int max_threads_per_block = 0;
  size_t shared_mem_per_block = 0;
  size_t total_memory = 0;
};
const DeviceInfo& device_info(int device = 0);  // cached after the first query

// Makes `device` current for its scope and restores the previous device after.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

// Device scratch memory (split-K partial sums and the like) from the current device's allocator.
// Freed at scope exit; reuse is ordered on the stream, so no synchronisation is needed.
class Scratch {
 public:
  explicit Scratch(size_t nbytes);
  ~Scratch();
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  float* floats() const { return static_cast<float*>(data_); }

 private:
  void* data_ = nullptr;
  int device_ = 0;
};

// Blocks for a grid-stride loop over n items: enough to fill the device, never above the limit.
unsigned grid_for(int64_t n, int block);

}  // namespace hg::gpu
