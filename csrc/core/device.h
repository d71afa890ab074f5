// Devices: the memory, copy and synchronisation interface every backend implements. The CPU
// backend is always registered; the GPU backend registers itself when compiled in and a device
// answers (see hip/runtime.hip).
#pragma once
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "tensor.h"

namespace hg {

struct MemoryStats {
  size_t current = 0;     // bytes held by live tensors
  size_t peak = 0;        // highest `current` since the last reset
  size_t reserved = 0;    // bytes held from the system (allocator caches included)
  size_t allocations = 0; // number of allocations served
  size_t allocated_total = 0;  // bytes handed out since start (never decreases)
};

class DeviceBackend {
 public:
  virtual ~DeviceBackend() = default;
  virtual std::string name() const = 0;  // e.g. "cpu", "NVIDIA H100 80GB HBM3"
  virtual void* allocate(size_t nbytes, int index) = 0;   // MemoryError when it cannot
  virtual void deallocate(void* p, int index) = 0;
  // Copy `nbytes` between two devices of which at least one is this backend's.
  virtual void copy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t nbytes) = 0;
  virtual void memset_zero(void* p, size_t nbytes, int index) = 0;
  virtual void synchronize(int index) = 0;
  virtual MemoryStats memory_stats(int index) = 0;
  virtual void reset_peak_memory_stats(int index) = 0;
  virtual void empty_cache(int index) { (void)index; }
  // Runs `fn` (which queues work on the device) and returns the device time it took in ms:
  // GPU: events recorded on the device's stream before and after, waited for; CPU: the steady
  // clock around the call. Work queued before the call is not counted.
  virtual double time_ms(int index, const std::function<void()>& fn);
  // Makes device `index` the current one of the calling thread, so kernels launched next run
  // there (on its stream). The dispatcher calls it before every GPU kernel. CPU: nothing to do.
  virtual void make_current(int index) { (void)index; }
};

DeviceBackend& cpu_backend();
// The GPU backend, or a ValueError saying why none is usable.
DeviceBackend& gpu_backend();
DeviceBackend& backend_for(Device d);

// Tests switch this on: every new block is filled with 0xFF bytes (NaN as float32), so an
// element a kernel forgot to write shows up. Allocators must honour it.
bool& poison_allocations();

// Called once by a compiled-in GPU backend at load time.
void register_gpu_backend(DeviceBackend* backend, int device_count, std::string unavailable_reason);
int gpu_device_count();
std::string gpu_unavailable_reason();  // empty when a GPU is usable
std::vector<std::string> device_list();  // "cpu", then "gpu:0", ...

// What the GPU runtime reports, for hipgrad.device_info() and `hipgrad doctor`: its versions and
// every device it sees, usable by hipgrad or not (an AMD device whose architecture this build
// lacks is listed with its arch). A compiled-in GPU backend registers the query at load.
struct GpuDeviceProperties {
  std::string name;
  std::string arch;             // "gfx90a:sramecc+:xnack-", "sm_90"
  int warp_size = 0;
  int multiprocessors = 0;
  int max_threads_per_block = 0;
  size_t shared_mem_per_block = 0;
  size_t total_memory = 0;
  long long free_memory = -1;   // -1 where the runtime could not say
};
struct GpuProbe {
  bool compiled = false;        // false: a build without a GPU backend (the rest is empty)
  std::string runtime_version;  // "5.2.21153", "13.0"
  std::string driver_version;   // as the runtime reports it; "unknown" when it cannot
  std::string count_error;      // the device count query's error; "" when it answered
  std::vector<GpuDeviceProperties> devices;
};
void register_gpu_probe(GpuProbe (*probe)());
GpuProbe gpu_probe();

}  // namespace hg
