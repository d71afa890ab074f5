// The op table. Each op is declared once (ops.h) with a typed argument struct; backends register
// kernels for it per (backend, variant) from their own files with HG_REGISTER_KERNEL. The front
// end of an op (core/ops_*.cpp) checks arguments once, allocates outputs and calls run(), which
// picks the kernel for impl="auto"|"handwritten"|"vendor", records what ran, and times it.
//
// Rules:
// - a variant that is not registered is an error (NotImplementedError), never a silent fallback;
// - where no vendor library covers an op, its row in the op table (ops.h) says why, and the
//   kernel that runs is reported as "<handwritten name> (vendor fallback: <why>)"; an op a vendor
//   library family covers falls back the same way when the build found no such library (the
//   library's wrapper says so with HG_REGISTER_VENDOR_LIBRARY);
// - a backend may register handwritten *alternates* of an op (HG_REGISTER_ALTERNATE: other tile
//   sizes, a small-problem kernel). impl="handwritten" always runs the registered (default)
//   handwritten kernel, so results stay deterministic; alternates run only when chosen by "auto"
//   or forced by name (force_kernel, for tests and benches);
// - "auto" on a tunable op (pure: outputs depend on inputs only) warms and times (best of up to
//   kTuneRounds runs) every candidate of the backend once per shape key (default handwritten,
//   each alternate, vendor), remembers the fastest (its variant, kernel name and every
//   candidate's time; on a CPU with 2+ threads OpenBLAS only when it beats the fastest
//   handwritten candidate by kCpuVendorMargin, see prefer_one_pool) and runs it; later calls
//   with that key cost one map lookup. On other ops it takes the default handwritten kernel.
// Candidates are numbered per backend: 0 = default handwritten, 1 = vendor, 2 + i = alternate i.
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "device.h"
#include "errors.h"

namespace hg {

namespace cpu {
int num_threads();  // the CPU backend's thread count (cpu/blas.cpp; always built)
}  // namespace cpu

// impl="auto" tuning: timed rounds over the candidates (each keeps its fastest run); later
// rounds are skipped once one round takes longer than kLongTuneRoundMs.
constexpr int kTuneRounds = 3;
constexpr double kLongTuneRoundMs = 50.0;
// CPU, 2+ threads: OpenBLAS must be this much faster than hipgrad's best kernel to be chosen
// (OpKernels::prefer_one_pool says why).
constexpr double kCpuVendorMargin = 0.15;

enum class Backend : int8_t { cpu = 0, gpu = 1 };
enum class Variant : int8_t { handwritten = 0, vendor = 1 };
enum class Impl : int8_t { automatic, handwritten, vendor };

// Which vendor library family covers an op on a backend (the op table's vendor columns).
enum class VendorLib : int8_t { none, blas, dnn };
enum class GpuPlatform : int8_t { amd, nvidia };
struct VendorCover {
  VendorLib lib = VendorLib::none;
  const char* why = nullptr;         // lib none: why impl="vendor" runs the handwritten kernel
  const char* why_amd = nullptr;     // lib set: why the library's op is not used, on AMD / NVIDIA
  const char* why_nvidia = nullptr;  //   (nullptr: the wrapper registers a vendor kernel)
};
// A vendor library wrapper (csrc/hip/vendor/) says whether this build found its library; ops of
// that family fall back with "<name> was not found when hipgrad was built" when it did not.
void register_vendor_library(Backend b, VendorLib lib, GpuPlatform platform, const char* name,
                             bool found);

Impl parse_impl(const std::string& s);  // "auto" | "handwritten" | "vendor"; ValueError otherwise
const char* impl_name(Impl impl);
const char* backend_name(Backend b);
const char* variant_name(Variant v);
inline Backend backend_of(Device d) { return d.is_cpu() ? Backend::cpu : Backend::gpu; }

// What one dispatched op call ran. `impl` names the kernel or library call.
struct RunRecord {
  std::string op;
  std::string impl;
  std::string key;
  std::string device;
  std::string phase;  // the caller's trace context (e.g. "forward", "backward")
  std::string layer;
  double start_us = 0.0;  // steady clock, microseconds
  double ms = 0.0;        // kernel time: CPU wall clock; GPU device events when tuning or tracing
  int64_t bytes_allocated = 0;  // bytes allocated on the device since the previous record
  int64_t live_bytes = 0;       // bytes held by live tensors on the device after the op
  bool tuning = false;          // a timing run of impl="auto", not the result
};
const RunRecord& last_run();  // this thread's latest op call
void record_run(RunRecord rec);

// The phase trace (hipgrad.trace): while on, every op call is appended to a buffer.
// Costs one relaxed atomic load per op when off.
bool trace_enabled();
void trace_start();
std::vector<RunRecord> trace_stop();
void trace_set_context(std::string phase, std::string layer);
std::pair<std::string, std::string> trace_context();
double steady_us();

// One row of build_info()["kernels"]. `alternate`: a handwritten alternate (run only by "auto" or
// when forced), not the kernel impl="handwritten" runs.
struct KernelDescription {
  std::string op, backend, variant, kernel, note;
  bool alternate = false;
};

class OpKernelsBase {
 public:
  OpKernelsBase(const char* op, bool tunable, VendorCover cpu, VendorCover gpu);
  virtual ~OpKernelsBase() = default;
  const std::string& op() const { return op_; }
  std::vector<KernelDescription> describe() const;
  bool supports(Backend b, Variant v) const;
  // Remembered auto choices: key ("<device>|<shape key>") -> what won and what each candidate took.
  using Timings = std::vector<std::pair<std::string, double>>;  // kernel name -> ms
  struct Choice {
    Variant variant = Variant::handwritten;  // the winner's variant
    double ms[2] = {0.0, 0.0};  // default handwritten's and vendor's times (0: not a candidate)
    std::string kernel;         // the winner's kernel name
    Timings candidates;         // every candidate timed for this key
    int candidate = 0;          // the winner's candidate id (see the top of this file)
  };
  std::map<std::string, Choice> choices() const;
  void clear_choices();
  void set_choice(const std::string& key, Variant v, double ms_h, double ms_v);  // from a cache file
  // From a cache file: the candidate named `kernel` wins for `key`. False (nothing set) when no
  // candidate of that name is registered for the key's backend.
  bool set_choice(const std::string& key, const std::string& kernel, const Timings& candidates);

  // Every call on the kernel's backend runs the candidate named `kernel`, whatever its impl
  // (tests, benches). False when the op has no such kernel. clear_forced(b) undoes it;
  // forced_kernel(b) is "" when none is forced.
  bool force_kernel(const std::string& kernel);
  void clear_forced(Backend b);
  std::string forced_kernel(Backend b) const;

 protected:
  struct Slot {
    const char* name = nullptr;
    const void* fn = nullptr;
  };
  Slot slots_[2][2];
  std::vector<Slot> alternates_[2];
  std::string op_;
  bool tunable_;
  VendorCover vendor_[2];
  mutable std::mutex mu_;
  std::map<std::string, Choice> choices_;
  std::atomic<int> forced_[2] = {-1, -1};  // candidate id, -1: none

  void add_alternate_slot(Backend b, const char* name, const void* fn);
  // Why impl="vendor" runs the handwritten kernel on backend b; nullptr when it does not (a vendor
  // kernel is registered, or nothing says why there is none).
  const char* vendor_fallback(Backend b) const;
  // The slot behind a candidate id and how it is reported; throws NotImplementedError when missing.
  const Slot& slot_for(Backend b, int candidate, std::string* reported) const;
  std::vector<int> candidates(Backend b) const;  // what "auto" times, default handwritten first
  int find_candidate(Backend b, const std::string& kernel) const;  // -1: none of that name
  int resolve(Backend b, Impl impl, const std::string& key, bool* tune) const;
  void remember(Backend b, const std::string& key, int best, const std::vector<int>& ids,
                const std::vector<double>& ms);
};

std::vector<OpKernelsBase*>& all_ops();
// HIPGRAD_IMPL, read once; Impl::automatic when unset; a ValueError naming the variable (on every
// call) when it names no impl. hipgrad's import calls it, so a typo fails there.
Impl impl_override();

template <class Args>
class OpKernels : public OpKernelsBase {
 public:
  using Fn = void (*)(const Args&);
  using OpKernelsBase::OpKernelsBase;

  void add(Backend b, Variant v, const char* name, Fn fn) {
    slots_[int(b)][int(v)].name = name;
    slots_[int(b)][int(v)].fn = reinterpret_cast<const void*>(fn);
  }
  // Another handwritten candidate for "auto"; adding the same fn again renames it.
  void add_alternate(Backend b, const char* name, Fn fn) {
    add_alternate_slot(b, name, reinterpret_cast<const void*>(fn));
  }

  void run(Device dev, Impl impl, const Args& args, const std::string& key) {
    const Backend b = backend_of(dev);
    const int forced = forced_[int(b)].load(std::memory_order_relaxed);
    if (forced >= 0) {
      run_one(dev, forced, args, key, false, false);
      return;
    }
    bool tune = false;
    // The best CPU kernel depends on the thread count (OpenBLAS vs our OpenMP GEMM at 1 and 2
    // threads), so CPU choices are remembered per count.
    const std::string threads =
        b == Backend::cpu ? "threads=" + std::to_string(cpu::num_threads()) + "," : "";
    const std::string full_key = dev.str() + "|" + threads + key;
    const int pick = resolve(b, impl, full_key, &tune);
    if (tune) {
      // Warm each candidate once, then time them round-robin (recorded as tuning runs) and keep
      // each one's fastest run: kTuneRounds rounds while a round is short, one when it is long,
      // so a moment of noise on a shared machine does not decide. Then the winner runs once
      // more as the call's result (tunable kernels are pure).
      const std::vector<int> ids = candidates(b);
      std::vector<double> ms(ids.size(), 0.0);
      for (int id : ids) run_one(dev, id, args, key, true, true);
      for (int round = 0; round < kTuneRounds; ++round) {
        double total = 0.0;
        for (size_t i = 0; i < ids.size(); ++i) {
          const double t = run_one(dev, ids[i], args, key, true, true);
          ms[i] = round == 0 ? t : std::min(ms[i], t);
          total += t;
        }
        if (total > kLongTuneRoundMs) break;
      }
      size_t best = 0;
      for (size_t i = 1; i < ids.size(); ++i)
        if (ms[i] < ms[best]) best = i;
      best = prefer_one_pool(b, ids, ms, best);
      remember(b, full_key, ids[best], ids, ms);
      run_one(dev, ids[best], args, key, false, false);
      return;
    }
    run_one(dev, pick, args, key, false, false);
  }

 private:
  // On the CPU with more than one thread, OpenBLAS (candidate 1) runs on its own pthread pool
  // beside hipgrad's OpenMP one; in a chain of ops the two pools' idle threads spin while the
  // other works, which a kernel timed on its own does not show (the MLP's 256x10 layer: 0.05 ms
  // handwritten vs 0.07-0.21 ms OpenBLAS inside the engine at 2 threads, after OpenBLAS had won
  // the isolated timing by 1%). So there the vendor must beat the fastest handwritten candidate
  // by kCpuVendorMargin; within it the handwritten one is kept.
  static size_t prefer_one_pool(Backend b, const std::vector<int>& ids,
                                const std::vector<double>& ms, size_t best) {
    if (b != Backend::cpu || ids[best] != 1 || cpu::num_threads() < 2) return best;
    size_t own = best;
    for (size_t i = 0; i < ids.size(); ++i)
      if (ids[i] != 1 && (own == best || ms[i] < ms[own])) own = i;
    return own != best && ms[own] <= ms[best] * (1.0 + kCpuVendorMargin) ? own : best;
  }

  // Runs one candidate on its device and records it. On a GPU the time is the device's (events
  // around the kernel, waited for) when it matters -- tuning or tracing; otherwise GPU work stays
  // asynchronous and the record's ms is the host's time to queue it.
  double run_one(Device dev, int candidate, const Args& args, const std::string& key, bool timed,
                 bool tuning_run) {
    std::string reported;
    const Slot& s = slot_for(backend_of(dev), candidate, &reported);
    const bool tracing = trace_enabled();
    const Fn fn = reinterpret_cast<Fn>(s.fn);
    const double t0 = steady_us();
    RunRecord rec;
    if (dev.is_gpu()) {
      DeviceBackend& backend = backend_for(dev);
      backend.make_current(dev.index);
      if (timed || tracing) {
        rec.ms = backend.time_ms(dev.index, [&] { fn(args); });  // device events, waited for
      } else {
        fn(args);  // stays asynchronous: ms is the host's time to queue the work
        rec.ms = (steady_us() - t0) / 1000.0;
      }
    } else {
      fn(args);
      rec.ms = (steady_us() - t0) / 1000.0;
    }
    rec.op = op_;
    rec.impl = std::move(reported);
    rec.key = key;
    rec.device = dev.str();
    rec.start_us = t0;
    rec.tuning = tuning_run;
    if (tracing) {
      const MemoryStats m = backend_for(dev).memory_stats(dev.index);
      rec.live_bytes = static_cast<int64_t>(m.current);
      rec.bytes_allocated = static_cast<int64_t>(m.allocated_total);  // made a delta in record_run
    }
    const double ms = rec.ms;
    record_run(std::move(rec));
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
// HG_REGISTER_ALTERNATE(gemm_op, gpu, "gpu.gemm_tiled_64x64", &gemm_tiled_64x64);
#define HG_REGISTER_ALTERNATE(op_accessor, backend, name, fn)                                  \
  static const bool HG_CONCAT(hg_alternate_, __LINE__) =                                    \
      (::hg::op_accessor().add_alternate(::hg::Backend::backend, name, fn), true)
// HG_REGISTER_VENDOR_LIBRARY(gpu, dnn, amd, "MIOpen", true);
#define HG_REGISTER_VENDOR_LIBRARY(backend, lib, platform, name, found)                           \
  static const bool HG_CONCAT(hg_vendor_library_, __LINE__) =                                    \
      (::hg::register_vendor_library(::hg::Backend::backend, ::hg::VendorLib::lib,                \
                                     ::hg::GpuPlatform::platform, name, found),                 \
       true)
