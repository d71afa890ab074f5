#include "device.h"

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>

namespace hg {
namespace {

// CPU memory: 64-byte aligned blocks straight from the C library, with byte counts kept so the
// inference/training memory comparison works on the CPU too.
class CpuBackend final : public DeviceBackend {
 public:
  std::string name() const override { return "cpu"; }

  void* allocate(size_t nbytes, int) override {
    void* p = nullptr;
    const size_t rounded = (nbytes + 63) / 64 * 64;
    if (posix_memalign(&p, 64, rounded == 0 ? 64 : rounded) != 0 || p == nullptr)
      fail(ErrorKind::memory, "cpu: cannot allocate ", nbytes, " bytes");
    if (poison_allocations()) std::memset(p, 0xFF, nbytes);
    std::lock_guard<std::mutex> lock(mu_);
    sizes_[p] = nbytes;
    stats_.current += nbytes;
    stats_.reserved += nbytes;
    stats_.allocations += 1;
    stats_.allocated_total += nbytes;
    if (stats_.current > stats_.peak) stats_.peak = stats_.current;
    return p;
  }

  void deallocate(void* p, int) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = sizes_.find(p);
      if (it != sizes_.end()) {
        stats_.current -= it->second;
        stats_.reserved -= it->second;
        sizes_.erase(it);
      }
    }
    std::free(p);
  }

  void copy(void* dst, Device, const void* src, Device, size_t nbytes) override {
    std::memcpy(dst, src, nbytes);
  }
  void memset_zero(void* p, size_t nbytes, int) override { std::memset(p, 0, nbytes); }
  void synchronize(int) override {}
  MemoryStats memory_stats(int) override {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }
  void reset_peak_memory_stats(int) override {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.peak = stats_.current;
  }

 private:
  std::mutex mu_;
  MemoryStats stats_;
  std::unordered_map<void*, size_t> sizes_;
};

struct GpuRegistry {
  DeviceBackend* backend = nullptr;
  int count = 0;
  std::string reason = "hipgrad was built without a GPU backend (HIPGRAD_GPU=off)";
};

GpuRegistry& gpu_registry() {
  static GpuRegistry r;
  return r;
}

}  // namespace

double DeviceBackend::time_ms(int index, const std::function<void()>& fn) {
  synchronize(index);
  const auto t0 = std::chrono::steady_clock::now();
  fn();
  synchronize(index);
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

bool& poison_allocations() {
  static bool poison = false;
  return poison;
}

DeviceBackend& cpu_backend() {
  static CpuBackend* be = new CpuBackend();  // never destroyed: tensors may outlive statics
  return *be;
}

void register_gpu_backend(DeviceBackend* backend, int device_count, std::string reason) {
  GpuRegistry& r = gpu_registry();
  r.backend = backend;
  r.count = device_count;
  r.reason = std::move(reason);
}

int gpu_device_count() { return gpu_registry().backend ? gpu_registry().count : 0; }

std::string gpu_unavailable_reason() { return gpu_device_count() > 0 ? "" : gpu_registry().reason; }

DeviceBackend& gpu_backend() {
  GpuRegistry& r = gpu_registry();
  if (!r.backend || r.count == 0) fail(ErrorKind::value, "no GPU device is usable: ", r.reason);
  return *r.backend;
}

DeviceBackend& backend_for(Device d) {
  if (d.is_cpu()) return cpu_backend();
  DeviceBackend& be = gpu_backend();
  HG_REQUIRE(d.index >= 0 && d.index < gpu_registry().count, "device gpu:", d.index,
             " does not exist; ", gpu_registry().count, " GPU(s) visible");
  return be;
}

namespace {
GpuProbe (*g_gpu_probe)() = nullptr;
}  // namespace

void register_gpu_probe(GpuProbe (*probe)()) { g_gpu_probe = probe; }

GpuProbe gpu_probe() { return g_gpu_probe ? g_gpu_probe() : GpuProbe{}; }

std::vector<std::string> device_list() {
  std::vector<std::string> out{"cpu"};
  for (int i = 0; i < gpu_device_count(); ++i) out.push_back("gpu:" + std::to_string(i));
  return out;
}

}  // namespace hg
