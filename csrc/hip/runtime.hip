// The GPU runtime layer: status errors, one stream per device, device properties, and the GPU
// DeviceBackend with its caching allocator, registered with hg::register_gpu_backend at load.
//
// Caching allocator (one per device; the idea of PyTorch's, without block splitting):
//   - requests are rounded up to bins: small ones (<= 1 MiB) to 512 bytes, large ones to 2 MiB;
//   - a freed block goes to its pool's free list; a request takes a cached block of its bin
//     (small pool: the exact bin; large pool: the smallest block at most 25% larger);
//   - hipMalloc only on a miss; on out-of-memory the cache is returned to the device and the
//     hipMalloc retried once, then MemoryError names the request and the device's free/total;
//   - all hipgrad work is queued on one stream per device, so a block freed while a kernel still
//     uses it is only handed to work queued after that kernel: no events are needed.
// Stats: current = bytes requested by live tensors, peak = highest current since the last reset,
// reserved = bytes held from the device (live + cached), allocations = requests served,
// allocated_total = bytes requested since the start.
// With hg::poison_allocations() every block handed out is filled with 0xFF bytes (NaN floats).
//
// Tests: tests/gpu/test_runtime.py (runs where a GPU is visible); .ci/build_gpu_flavours.sh
// checks that both flavours build and report "no device" cleanly on a machine without one.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "../core/build_facts.h"
#include "../core/device.h"
#include "runtime.h"

namespace hg::gpu {

[[noreturn]] void throw_runtime_error(hipError_t status, const char* call, const char* location) {
  (void)hipGetLastError();  // the runtime also records the error; clear it for the next check
  throw BackendError(HG_GPU_LIBRARY, static_cast<long long>(status), call, location,
                     cat(hipGetErrorName(status), ": ", hipGetErrorString(status)));
}

bool sync_debug() {
  static const bool on = [] {
    const char* v = std::getenv("HIPGRAD_SYNC_DEBUG");
    return v != nullptr && std::string(v) == "1";
  }();
  return on;
}

namespace {
constexpr int kMaxDevices = 64;

void require_device_index(int device) {
  HG_REQUIRE(device >= 0 && device < kMaxDevices, "gpu device index must be in [0, ", kMaxDevices,
             "), got ", device);
}
}  // namespace

hipStream_t stream(int device) {
  static std::atomic<hipStream_t> streams[kMaxDevices] = {};
  static std::mutex mu;
  if (device < 0) HG_GPU_CHECK(hipGetDevice(&device));
  require_device_index(device);
  hipStream_t s = streams[device].load(std::memory_order_acquire);
  if (s != nullptr) return s;
  std::lock_guard<std::mutex> lock(mu);
  s = streams[device].load(std::memory_order_relaxed);
  if (s == nullptr) {
    DeviceGuard guard(device);
    HG_GPU_CHECK(hipStreamCreateWithFlags(&s, hipStreamNonBlocking));
    streams[device].store(s, std::memory_order_release);
  }
  return s;
}

DeviceGuard::DeviceGuard(int device) {
  int current = 0;
  HG_GPU_CHECK(hipGetDevice(&current));
  if (current != device) {
    HG_GPU_CHECK(hipSetDevice(device));
    previous_ = current;
  }
}

DeviceGuard::~DeviceGuard() {
  if (previous_ >= 0) (void)hipSetDevice(previous_);  // a destructor must not throw
}

const DeviceInfo& device_info(int device) {
  static std::unique_ptr<DeviceInfo> infos[kMaxDevices];
  static std::mutex mu;
  require_device_index(device);
  std::lock_guard<std::mutex> lock(mu);
  if (!infos[device]) {
    hipDeviceProp_t p{};
    HG_GPU_CHECK(hipGetDeviceProperties(&p, device));
    auto info = std::make_unique<DeviceInfo>();
    info->name = p.name;
#if defined(HIPGRAD_PLATFORM_AMD)
    info->arch = p.gcnArchName;
#else
    info->arch = cat("sm_", p.major, p.minor);
#endif
    info->warp_size = p.warpSize;
    info->multiprocessors = p.multiProcessorCount;
    info->max_threads_per_block = p.maxThreadsPerBlock;
    info->shared_mem_per_block = p.sharedMemPerBlock;
    info->total_memory = p.totalGlobalMem;
    infos[device] = std::move(info);
  }
  return *infos[device];
}

unsigned grid_for(int64_t n, int block) {
  const int64_t wanted = (n + block - 1) / block;
  const int64_t enough = int64_t(device_info(0).multiprocessors) * 32;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min(wanted, enough)));
}

namespace {

constexpr size_t kSmallLimit = size_t(1) << 20;  // requests up to 1 MiB use the small pool
constexpr size_t kSmallRound = 512;
constexpr size_t kLargeRound = size_t(2) << 20;

size_t round_to_bin(size_t nbytes) {
  const size_t n = nbytes == 0 ? 1 : nbytes;
  const size_t unit = n <= kSmallLimit ? kSmallRound : kLargeRound;
  return (n + unit - 1) / unit * unit;
}

class CachingAllocator {
 public:
  explicit CachingAllocator(int device) : device_(device) {}

  void* allocate(size_t nbytes) {
    const size_t size = round_to_bin(nbytes);
    void* p = nullptr;
    size_t block = size;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!take_cached(size, &p, &block)) p = device_malloc(size);
      live_[p] = Live{block, nbytes};
      stats_.current += nbytes;
      stats_.allocations += 1;
      stats_.allocated_total += nbytes;
      if (stats_.current > stats_.peak) stats_.peak = stats_.current;
    }
    if (poison_allocations()) {
      DeviceGuard guard(device_);
      HG_GPU_CHECK(hipMemsetAsync(p, 0xFF, block, stream(device_)));
    }
    return p;
  }

  // Called from tensor destructors: never throws and never calls the runtime.
  void release(void* p) noexcept {
    if (p == nullptr) return;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(p);
    if (it == live_.end()) return;
    stats_.current -= it->second.requested;
    const size_t block = it->second.block;
    live_.erase(it);
    if (block <= kSmallLimit) small_free_[block].push_back(p);
    else large_free_.emplace(block, p);
  }

  MemoryStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

  void reset_peak() {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.peak = stats_.current;
  }

  void empty_cache() {
    std::lock_guard<std::mutex> lock(mu_);
    free_cached();
  }

 private:
  struct Live {
    size_t block;      // bytes of the device block
    size_t requested;  // bytes the caller asked for
  };

  bool take_cached(size_t size, void** p, size_t* block) {
    if (size <= kSmallLimit) {
      auto it = small_free_.find(size);
      if (it == small_free_.end() || it->second.empty()) return false;
      *p = it->second.back();
      it->second.pop_back();
      *block = size;
      return true;
    }
    auto it = large_free_.lower_bound(size);
    if (it == large_free_.end() || it->first > size + size / 4) return false;
    *p = it->second;
    *block = it->first;
    large_free_.erase(it);
    return true;
  }

  // hipMalloc; on out-of-memory returns the cache to the device and tries once more.
  void* device_malloc(size_t size) {
    DeviceGuard guard(device_);
    void* p = nullptr;
    hipError_t st = hipMalloc(&p, size);
    if (st == hipErrorOutOfMemory) {
      (void)hipGetLastError();
      free_cached();
      st = hipMalloc(&p, size);
    }
    if (st == hipErrorOutOfMemory) {
      (void)hipGetLastError();
      size_t free_b = 0, total_b = 0;
      (void)hipMemGetInfo(&free_b, &total_b);
      (void)hipGetLastError();
      fail(ErrorKind::memory, "gpu:", device_, ": out of memory allocating ", size,
           " bytes; the device has ", free_b, " bytes free of ", total_b, "; hipgrad holds ",
           stats_.current, " bytes in live tensors and ", stats_.reserved,
           " bytes reserved (its cache was already returned to the device)");
    }
    if (st != hipSuccess) throw_runtime_error(st, "hipMalloc(&p, size)", HG_LOCATION);
    stats_.reserved += size;
    return p;
  }

  // hipFree waits for the device, so blocks still used by queued kernels are safe to free.
  void free_cached() {
    DeviceGuard guard(device_);
    for (auto& [size, blocks] : small_free_) {
      for (void* p : blocks) {
        HG_GPU_CHECK(hipFree(p));
        stats_.reserved -= size;
      }
    }
    small_free_.clear();
    for (auto& [size, p] : large_free_) {
      HG_GPU_CHECK(hipFree(p));
      stats_.reserved -= size;
    }
    large_free_.clear();
  }

  const int device_;
  std::mutex mu_;
  std::unordered_map<void*, Live> live_;
  std::map<size_t, std::vector<void*>> small_free_;
  std::multimap<size_t, void*> large_free_;
  MemoryStats stats_;
};

class GpuBackend final : public DeviceBackend {
 public:
  explicit GpuBackend(int count) {
    for (int i = 0; i < count; ++i) allocators_.push_back(std::make_unique<CachingAllocator>(i));
  }

  std::string name() const override { return device_info(0).name; }
  void* allocate(size_t nbytes, int index) override { return alloc(index).allocate(nbytes); }
  void deallocate(void* p, int index) override {
    if (index >= 0 && index < int(allocators_.size())) allocators_[index]->release(p);
  }

  void copy(void* dst, Device dd, const void* src, Device sd, size_t nbytes) override {
    if (nbytes == 0) return;
    if (sd.is_cpu()) {
      // The host source may be freed as soon as this returns: CUDA stages pageable memory before
      // returning; HIP does not promise that, so wait there.
      DeviceGuard guard(dd.index);
      HG_GPU_CHECK(hipMemcpyAsync(dst, src, nbytes, hipMemcpyHostToDevice, stream(dd.index)));
#if defined(HIPGRAD_PLATFORM_AMD)
      HG_GPU_CHECK(hipStreamSynchronize(stream(dd.index)));
#endif
    } else if (dd.is_cpu()) {
      DeviceGuard guard(sd.index);
      HG_GPU_CHECK(hipMemcpyAsync(dst, src, nbytes, hipMemcpyDeviceToHost, stream(sd.index)));
      HG_GPU_CHECK(hipStreamSynchronize(stream(sd.index)));
    } else {
      if (sd.index != dd.index) HG_GPU_CHECK(hipStreamSynchronize(stream(sd.index)));
      DeviceGuard guard(dd.index);
      HG_GPU_CHECK(hipMemcpyAsync(dst, src, nbytes, hipMemcpyDeviceToDevice, stream(dd.index)));
      if (sd.index != dd.index) HG_GPU_CHECK(hipStreamSynchronize(stream(dd.index)));
    }
  }

  void memset_zero(void* p, size_t nbytes, int index) override {
    if (nbytes == 0) return;
    DeviceGuard guard(index);
    HG_GPU_CHECK(hipMemsetAsync(p, 0, nbytes, stream(index)));
  }

  void synchronize(int index) override {
    DeviceGuard guard(index);
    HG_GPU_CHECK(hipStreamSynchronize(stream(index)));
  }

  // Events on the device's stream: the time between them is the device's, without the launch
  // latency and host overhead that a host clock around a synchronisation would add.
  double time_ms(int index, const std::function<void()>& fn) override {
    DeviceGuard guard(index);
    hipEvent_t start = nullptr, stop = nullptr;
    HG_GPU_CHECK(hipEventCreate(&start));
    struct Events {
      hipEvent_t* a; hipEvent_t* b;
      ~Events() { if (*a) (void)hipEventDestroy(*a); if (*b) (void)hipEventDestroy(*b); }
    } cleanup{&start, &stop};
    HG_GPU_CHECK(hipEventCreate(&stop));
    HG_GPU_CHECK(hipEventRecord(start, stream(index)));
    fn();
    HG_GPU_CHECK(hipEventRecord(stop, stream(index)));
    HG_GPU_CHECK(hipEventSynchronize(stop));
    float ms = 0.f;
    HG_GPU_CHECK(hipEventElapsedTime(&ms, start, stop));
    return double(ms);
  }

  void make_current(int index) override {
    int current = -1;
    HG_GPU_CHECK(hipGetDevice(&current));
    if (current != index) HG_GPU_CHECK(hipSetDevice(index));
  }

  MemoryStats memory_stats(int index) override { return alloc(index).stats(); }
  void reset_peak_memory_stats(int index) override { alloc(index).reset_peak(); }
  void empty_cache(int index) override { alloc(index).empty_cache(); }

 private:
  CachingAllocator& alloc(int index) {
    HG_REQUIRE(index >= 0 && index < int(allocators_.size()), "device gpu:", index,
               " does not exist; ", allocators_.size(), " GPU(s) visible");
    return *allocators_[index];
  }
  std::vector<std::unique_ptr<CachingAllocator>> allocators_;
};

GpuBackend* g_backend = nullptr;  // created at load, never destroyed (tensors outlive statics)

std::string version_text(int v) {
#if defined(HIPGRAD_PLATFORM_AMD)
  return cat(v / 10000000, ".", v / 100000 % 100, ".", v % 100000);  // e.g. 50221153 -> 5.2.21153
#else
  return cat(v / 1000, ".", v % 1000 / 10);  // e.g. 13000 -> 13.0
#endif
}

std::string runtime_version() {
  int v = 0;
  if (hipRuntimeGetVersion(&v) != hipSuccess) {
    (void)hipGetLastError();
    return "unknown";
  }
  return version_text(v);
}

// Every device the runtime reports, queried afresh (no device needs to be usable): a failing
// query leaves its fields empty rather than throwing, since `hipgrad doctor` reports them.
GpuProbe probe_runtime() {
  GpuProbe out;
  out.compiled = true;
  out.runtime_version = runtime_version();
  int v = 0;
  if (hipDriverGetVersion(&v) == hipSuccess) {
    out.driver_version = v > 0 ? version_text(v) : "none (no driver loaded)";
  } else {
    (void)hipGetLastError();
    out.driver_version = "unknown";
  }
  int n = 0;
  const hipError_t st = hipGetDeviceCount(&n);
  if (st != hipSuccess) {
    (void)hipGetLastError();
    out.count_error = cat(hipGetErrorName(st), ": ", hipGetErrorString(st));
    return out;
  }
  for (int i = 0; i < n && i < kMaxDevices; ++i) {
    hipDeviceProp_t p{};
    GpuDeviceProperties d;
    if (hipGetDeviceProperties(&p, i) != hipSuccess) {
      (void)hipGetLastError();
      out.devices.push_back(d);
      continue;
    }
    d.name = p.name;
#if defined(HIPGRAD_PLATFORM_AMD)
    d.arch = p.gcnArchName;
#else
    d.arch = cat("sm_", p.major, p.minor);
#endif
    d.warp_size = p.warpSize;
    d.multiprocessors = p.multiProcessorCount;
    d.max_threads_per_block = p.maxThreadsPerBlock;
    d.shared_mem_per_block = p.sharedMemPerBlock;
    d.total_memory = p.totalGlobalMem;
    int previous = -1;
    size_t free_bytes = 0, total_bytes = 0;
    if (hipGetDevice(&previous) == hipSuccess && hipSetDevice(i) == hipSuccess &&
        hipMemGetInfo(&free_bytes, &total_bytes) == hipSuccess) {
      d.free_memory = static_cast<long long>(free_bytes);
    }
    (void)hipGetLastError();
    if (previous >= 0) (void)hipSetDevice(previous);
    out.devices.push_back(d);
  }
  return out;
}

// The devices hipgrad can use; 0 with `reason` set when none. Any error of the device count means
// "no GPU": CUDA without a driver returns cudaErrorInsufficientDriver and leaves the count unset.
int usable_devices(std::string* reason) {
  int n = 0;
  const hipError_t st = hipGetDeviceCount(&n);
  if (st != hipSuccess) {
    (void)hipGetLastError();
    // HIP 5.2's error strings are the names; say what the name means where that happens.
    std::string text = hipGetErrorString(st);
    const std::string name = hipGetErrorName(st);
    if (text == name) {
      text = st == hipErrorNoDevice ? "no " HG_GPU_LIBRARY "-capable device is detected"
                                    : "the device count query failed";
    }
    if (st == hipErrorInsufficientDriver)
      text += ": no driver is loaded, or it is older than the runtime";
    *reason = cat(HG_GPU_LIBRARY, " runtime: ", text, " (", name, ")");
    return 0;
  }
  if (n <= 0) {
    *reason = cat(HG_GPU_LIBRARY, " runtime: no device found (the device count is 0)");
    return 0;
  }
#if defined(HIPGRAD_PLATFORM_AMD) && defined(HIPGRAD_GPU_ARCHS)
  // AMD code objects run only on the architecture they were compiled for (no JIT as with PTX).
  const std::string arch = device_info(0).arch.substr(0, device_info(0).arch.find(':'));
  const std::string built = HIPGRAD_GPU_ARCHS;
  if (("," + built + ",").find("," + arch + ",") == std::string::npos) {
    *reason = cat("gpu:0 is ", arch, " but hipgrad was compiled for ", built,
                  "; rebuild with -DHIPGRAD_HIP_ARCHS=", arch);
    return 0;
  }
#endif
  return n;
}

const bool g_registered = [] {
  register_gpu_probe(&probe_runtime);
  add_build_fact("gpu.platform", HIPGRAD_GPU_PLATFORM);
  add_build_fact("gpu.runtime_version", runtime_version());
#if defined(HIPGRAD_GPU_ARCHS)
  add_build_fact("gpu.archs", HIPGRAD_GPU_ARCHS);
#endif
  std::string reason;
  int count = 0;
  try {
    count = usable_devices(&reason);
    if (count > 0) {
      const DeviceInfo& d = device_info(0);
      add_build_fact("gpu.device", d.name);
      add_build_fact("gpu.arch", d.arch);
      add_build_fact("gpu.warp_size", std::to_string(d.warp_size));
      add_build_fact("gpu.device_count", std::to_string(count));
      g_backend = new GpuBackend(count);
    }
  } catch (const std::exception& e) {  // a failing runtime at load means "no GPU", not a crash
    count = 0;
    reason = cat(HG_GPU_LIBRARY, " runtime: ", e.what());
  }
  register_gpu_backend(g_backend, count, reason);
  return true;
}();

}  // namespace

Scratch::Scratch(size_t nbytes) {
  HG_REQUIRE(g_backend != nullptr, "no GPU device is usable");
  HG_GPU_CHECK(hipGetDevice(&device_));
  data_ = g_backend->allocate(nbytes, device_);
}

Scratch::~Scratch() { g_backend->deallocate(data_, device_); }

}  // namespace hg::gpu
