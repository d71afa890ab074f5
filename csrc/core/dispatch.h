// The op table. Each op is declared once (ops.h) with a typed argument struct; backends register
// kernels for it per (backend, variant) from their own files with HG_REGISTER_KERNEL. The front
// end of an op (core/ops_*.cpp) checks arguments once, allocates outputs and calls run(), which
// picks the kernel for impl="auto"|"handwritten"|"vendor", records what ran, and times it.
//
// Rules:
// - a variant that is not registered is an error (NotImplementedError), never a silent fallback;
// - where no vendor library covers an op, the backend file says so with fallback(), and the
//   kernel that runs is reported as "<handwritten name> (vendor fallback: <why>)";
// - "auto" on a tunable op (pure: outputs depend on inputs only) times both variants once per
//   shape key and remembers the faster; on other ops it takes the handwritten kernel.
#pragma once
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "device.h"
#include "errors.h"

namespace hg {

enum class Backend : int8_t { cpu = 0, gpu = 1 };
enum class Variant : int8_t { handwritten = 0, vendor = 1 };
enum class Impl : int8_t { automatic, handwritten, vendor };

Impl parse_impl(const std::string& s);  // "auto" | "handwritten" | "vendor"; ValueError otherwise
const char* backend_name(Backend b);
const char* variant_name(Variant v);
inline Backend backend_of(Device d) { return d.is_cpu() ? Backend::cpu : Backend::gpu; }

// What one dispatched op call ran. `impl` names the kernel or library call.
struct RunRecord {
  std::string op;
  std::string impl;
  std::string key;
  std::string device;
  double ms = 0.0;
};
const RunRecord& last_run();  // this thread's latest op call
using TraceHook = void (*)(const RunRecord&);
void set_trace_hook(TraceHook hook);  // nullptr switches it off
void record_run(RunRecord rec);

// One row of build_info()["kernels"] / tuning_report().
struct KernelDescription {
  std::string op, backend, variant, kernel, note;
};

class OpKernelsBase {
 public:
  explicit OpKernelsBase(const char* op, bool tunable);
  virtual ~OpKernelsBase() = default;
  const std::string& op() const { return op_; }
  std::vector<KernelDescription> describe() const;
  bool supports(Backend b, Variant v) const;
  // Remembered auto choices: key -> (variant, time of each variant in ms).
  struct Choice {
    Variant variant;
    double ms[2];
  };
  std::map<std::string, Choice> choices() const;
  void clear_choices();

 protected:
  struct Slot {
    const char* name = nullptr;
    const void* fn = nullptr;
    const char* fallback_why = nullptr;  // set: this variant runs the handwritten kernel
  };
  Slot slots_[2][2];
  std::string op_;
  bool tunable_;
  mutable std::mutex mu_;
  std::map<std::string, Choice> choices_;

  // The variant to run and how it is reported; throws NotImplementedError when missing.
  const Slot& slot_for(Backend b, Variant v, std::string* reported) const;
  Variant resolve(Backend b, Impl impl, const std::string& key, bool* tune) const;
  void remember(const std::string& key, Variant v, const double ms[2]);
};

std::vector<OpKernelsBase*>& all_ops();
Impl impl_override();  // HIPGRAD_IMPL, read once; Impl::automatic when unset

template <class Args>
class OpKernels : public OpKernelsBase {
 public:
  using Fn = void (*)(const Args&);
  using OpKernelsBase::OpKernelsBase;

  void add(Backend b, Variant v, const char* name, Fn fn) {
    slots_[int(b)][int(v)].name = name;
    slots_[int(b)][int(v)].fn = reinterpret_cast<const void*>(fn);
  }
  void fallback(Backend b, Variant v, const char* why) { slots_[int(b)][int(v)].fallback_why = why; }

  void run(Device dev, Impl impl, const Args& args, const std::string& key) {
    const Backend b = backend_of(dev);
    bool tune = false;
    const Variant v = resolve(b, impl, dev.str() + "|" + key, &tune);
    if (tune) {
      // Warm each candidate once, then time one run of each; the winner runs last so its output
      // is the one left behind (tunable kernels are pure, so the extra runs change nothing).
      double ms[2];
      for (Variant t : {Variant::vendor, Variant::handwritten}) time_once(dev, t, args, key);
      for (Variant t : {Variant::vendor, Variant::handwritten}) ms[int(t)] = time_once(dev, t, args, key);
      const Variant best = ms[0] <= ms[1] ? Variant::handwritten : Variant::vendor;
      remember(dev.str() + "|" + key, best, ms);
      if (best == Variant::vendor) time_once(dev, best, args, key);
      return;
    }
    time_once(dev, v, args, key);
  }

 private:
  double time_once(Device dev, Variant v, const Args& args, const std::string& key) {
    std::string reported;
    const Slot& s = slot_for(backend_of(dev), v, &reported);
    const auto t0 = std::chrono::steady_clock::now();
    reinterpret_cast<Fn>(s.fn)(args);
    if (dev.is_gpu()) backend_for(dev).synchronize(dev.index);
    const auto t1 = std::chrono::steady_clock::now();
    const double ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
    record_run(RunRecord{op_, reported, key, dev.str(), ms});
    return ms;
  }
};

}  // namespace hg

#define HG_CONCAT2(a, b) a##b
#define HG_CONCAT(a, b) HG_CONCAT2(a, b)
// HG_REGISTER_KERNEL(gemm_op, cpu, handwritten, "cpu.gemm_packed_avx512", &gemm_cpu_packed);
#define HG_REGISTER_KERNEL(op_accessor, backend, variant, name, fn)                          \
  static const bool HG_CONCAT(hg_registered_, __LINE__) =                                   \
      (::hg::op_accessor().add(::hg::Backend::backend, ::hg::Variant::variant, name, fn), true)
// HG_REGISTER_FALLBACK(activation_op, cpu, vendor, "no BLAS routine computes activations");
#define HG_REGISTER_FALLBACK(op_accessor, backend, variant, why)                               \
  static const bool HG_CONCAT(hg_fallback_, __LINE__) =                                     \
      (::hg::op_accessor().fallback(::hg::Backend::backend, ::hg::Variant::variant, why), true)
