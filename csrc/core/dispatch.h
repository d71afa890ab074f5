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
// - a backend may register *reference* kernels (HG_REGISTER_REFERENCE: the simple v0 GPU kernels
//   the fast ones are checked and timed against); they run only when forced by name;
// - "auto" on a tunable op (pure: outputs depend on inputs only) warms and times (best of up to
//   kTuneRounds runs) every candidate of the backend once per shape key (default handwritten,
//   each alternate, vendor), remembers the fastest (its variant, kernel name and every
//   candidate's time; the backend's policy may prefer another, see BackendPolicy) and runs it;
//   later calls with that key cost one map lookup. On other ops it takes the default
//   handwritten kernel.
// A Candidate names one kernel by its role (KernelRole) and, for alternates and references, its
// place among them.
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

// impl="auto" tuning: timed rounds over the candidates (each keeps its fastest run); later
// rounds are skipped once one round takes longer than kLongTuneRoundMs.
constexpr int kTuneRounds = 3;
constexpr double kLongTuneRoundMs = 50.0;

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

// One row of build_info()["kernels"]. `alternate`: not the kernel impl="handwritten" runs (a
// handwritten alternate, or a reference kernel).
struct KernelDescription {
  std::string op, backend, variant, kernel, note;
  bool alternate = false;
};

// What a registered kernel is to its op on one backend.
enum class KernelRole : int8_t {
  handwritten,  // the default handwritten kernel: what impl="handwritten" runs
  vendor,       // the vendor library's: what impl="vendor" runs
  alternate,    // another handwritten kernel (tile sizes, a small-problem kernel): timed by "auto"
  reference,    // a simple reference kernel (v0): runs only when forced by name
};

// One kernel of an op on one backend, as "auto", force_kernel and the tuning cache name it.
struct Candidate {
  KernelRole role = KernelRole::handwritten;
  int index = 0;  // alternate / reference: which one, in registration order
  bool operator==(const Candidate& o) const { return role == o.role && index == o.index; }
  bool operator!=(const Candidate& o) const { return !(*this == o); }
};

// A backend's say in dispatch (each backend registers its own; none: the defaults).
struct BackendPolicy {
  // State the backend's fastest kernel depends on, as a prefix of the tuning key (the CPU: its
  // thread count, "threads=2,"). nullptr: none.
  std::string (*key_prefix)() = nullptr;
  // impl="auto": which of the timed candidates to run, given the fastest (index into ids / ms).
  // nullptr: the fastest.
  size_t (*choose)(const std::vector<Candidate>& ids, const std::vector<double>& ms,
                   size_t fastest) = nullptr;
};
void set_backend_policy(Backend b, BackendPolicy policy);
const BackendPolicy& backend_policy(Backend b);

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
    Candidate winner;
  };
  std::map<std::string, Choice> choices() const;
  void clear_choices();
  // From a cache file: the candidate named `kernel` wins for `key`. False (nothing set) when no
  // candidate of that name is registered for the key's backend.
  bool set_choice(const std::string& key, const std::string& kernel, const Timings& candidates);

  // Every call on the kernel's backend runs the kernel named `kernel` (any role, reference
  // kernels included), whatever its impl (tests, benches). False when the op has no such kernel.
  // clear_forced(b) undoes it; forced_kernel(b) is "" when none is forced.
  bool force_kernel(const std::string& kernel);
  void clear_forced(Backend b);
  std::string forced_kernel(Backend b) const;

 protected:
  struct Slot {
    const char* name = nullptr;
    const void* fn = nullptr;
  };
  Slot handwritten_[2], vendor_[2];
  std::vector<Slot> alternates_[2], references_[2];
  std::string op_;
  bool tunable_;
  VendorCover vendor_cover_[2];
  mutable std::mutex mu_;
  std::map<std::string, Choice> choices_;
  std::atomic<bool> any_forced_[2] = {false, false};
  Candidate forced_[2];  // under mu_, meaningful while any_forced_

  void add_slot(Backend b, KernelRole role, const char* name, const void* fn);
  // Why impl="vendor" runs the handwritten kernel on backend b; nullptr when it does not (a vendor
  // kernel is registered, or nothing says why there is none).
  const char* vendor_fallback(Backend b) const;
  // The slot behind a candidate and how it is reported; throws NotImplementedError when missing.
  const Slot& slot_for(Backend b, Candidate c, std::string* reported) const;
  std::vector<Candidate> candidates(Backend b) const;  // what "auto" times, default handwritten first
  // The candidate named `kernel`; with_references: reference kernels too. False when none.
  bool find_candidate(Backend b, const std::string& kernel, bool with_references,
                      Candidate* found) const;
  bool forced(Backend b, Candidate* c) const;
  Candidate resolve(Backend b, Impl impl, const std::string& key, bool* tune) const;
  void remember(Backend b, const std::string& key, Candidate best,
                const std::vector<Candidate>& ids, const std::vector<double>& ms);
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

  // The default handwritten (Variant::handwritten) or the vendor kernel; a second add replaces it.
  void add(Backend b, Variant v, const char* name, Fn fn) {
    add_slot(b, v == Variant::vendor ? KernelRole::vendor : KernelRole::handwritten, name,
             reinterpret_cast<const void*>(fn));
  }
  // Another handwritten candidate for "auto"; adding the same fn again renames it.
  void add_alternate(Backend b, const char* name, Fn fn) {
    add_slot(b, KernelRole::alternate, name, reinterpret_cast<const void*>(fn));
  }
  // A reference kernel, run only when forced by name; adding the same fn again renames it.
  void add_reference(Backend b, const char* name, Fn fn) {
    add_slot(b, KernelRole::reference, name, reinterpret_cast<const void*>(fn));
  }

  // Whether run(dev, impl, ., key) would time the candidates now (impl="auto", the key not yet
  // tuned): a front end whose call is not pure (out= aliasing an input it reads) makes it pure
  // for that call.
  bool would_tune(Device dev, Impl impl, const std::string& key) const {
    const Backend b = backend_of(dev);
    Candidate pick;
    if (forced(b, &pick)) return false;
    const BackendPolicy& policy = backend_policy(b);
    bool tune = false;
    resolve(b, impl, dev.str() + "|" + (policy.key_prefix ? policy.key_prefix() : std::string()) + key,
            &tune);
    return tune;
  }

  void run(Device dev, Impl impl, const Args& args, const std::string& key) {
    const Backend b = backend_of(dev);
    Candidate pick;
    if (forced(b, &pick)) {
      run_one(dev, pick, args, key, false, false);
      return;
    }
    bool tune = false;
    const BackendPolicy& policy = backend_policy(b);
    const std::string full_key =
        dev.str() + "|" + (policy.key_prefix ? policy.key_prefix() : std::string()) + key;
    pick = resolve(b, impl, full_key, &tune);
    if (tune) {
      // Warm each candidate once, then time them round-robin (recorded as tuning runs) and keep
      // each one's fastest run: kTuneRounds rounds while a round is short, one when it is long,
      // so a moment of noise on a shared machine does not decide. Then the winner runs once
      // more as the call's result (tunable kernels are pure).
      const std::vector<Candidate> ids = candidates(b);
      std::vector<double> ms(ids.size(), 0.0);
      for (const Candidate& id : ids) run_one(dev, id, args, key, true, true);
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
      if (policy.choose) best = policy.choose(ids, ms, best);
      remember(b, full_key, ids[best], ids, ms);
      run_one(dev, ids[best], args, key, false, false);
      return;
    }
    run_one(dev, pick, args, key, false, false);
  }

 private:
  // Runs one candidate on its device and records it. On a GPU the time is the device's (events
  // around the kernel, waited for) when it matters -- tuning or tracing; otherwise GPU work stays
  // asynchronous and the record's ms is the host's time to queue it.
  double run_one(Device dev, Candidate candidate, const Args& args, const std::string& key,
                 bool timed, bool tuning_run) {
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
// HG_REGISTER_REFERENCE(gemm_op, gpu, "gpu.gemm_v0", &gemm_v0);
#define HG_REGISTER_REFERENCE(op_accessor, backend, name, fn)                                  \
  static const bool HG_CONCAT(hg_reference_, __LINE__) =                                    \
      (::hg::op_accessor().add_reference(::hg::Backend::backend, name, fn), true)
// HG_REGISTER_VENDOR_LIBRARY(gpu, dnn, amd, "MIOpen", true);
#define HG_REGISTER_VENDOR_LIBRARY(backend, lib, platform, name, found)                           \
  static const bool HG_CONCAT(hg_vendor_library_, __LINE__) =                                    \
      (::hg::register_vendor_library(::hg::Backend::backend, ::hg::VendorLib::lib,                \
                                     ::hg::GpuPlatform::platform, name, found),                 \
       true)
