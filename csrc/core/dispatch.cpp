#include "dispatch.h"

#include <atomic>
#include <cstdlib>

namespace hg {

Impl parse_impl(const std::string& s) {
  if (s == "auto") return Impl::automatic;
  if (s == "handwritten") return Impl::handwritten;
  if (s == "vendor") return Impl::vendor;
  fail(ErrorKind::value, "impl must be 'auto', 'handwritten' or 'vendor', got '", s, "'");
}

const char* impl_name(Impl impl) {
  switch (impl) {
    case Impl::automatic: return "auto";
    case Impl::handwritten: return "handwritten";
    case Impl::vendor: return "vendor";
  }
  return "?";
}

const char* backend_name(Backend b) { return b == Backend::cpu ? "cpu" : "gpu"; }
const char* variant_name(Variant v) { return v == Variant::handwritten ? "handwritten" : "vendor"; }

namespace {
thread_local RunRecord t_last_run;
thread_local std::string t_phase, t_layer;
std::atomic<bool> g_tracing{false};
std::mutex g_trace_mu;
std::vector<RunRecord> g_trace;
std::map<std::string, int64_t> g_trace_allocated;  // device -> allocated_total at its last record
}  // namespace

double steady_us() {
  return std::chrono::duration<double, std::micro>(
             std::chrono::steady_clock::now().time_since_epoch()).count();
}

const RunRecord& last_run() { return t_last_run; }

void record_run(RunRecord rec) {
  if (g_tracing.load(std::memory_order_relaxed)) {
    rec.phase = t_phase;
    rec.layer = t_layer;
    std::lock_guard<std::mutex> lock(g_trace_mu);
    auto [it, fresh] = g_trace_allocated.try_emplace(rec.device, rec.bytes_allocated);
    const int64_t total = rec.bytes_allocated;
    rec.bytes_allocated = fresh ? 0 : total - it->second;
    it->second = total;
    g_trace.push_back(rec);
  }
  t_last_run = std::move(rec);
}

bool trace_enabled() { return g_tracing.load(std::memory_order_relaxed); }

void trace_start() {
  std::lock_guard<std::mutex> lock(g_trace_mu);
  g_trace.clear();
  g_trace_allocated.clear();
  for (const std::string& name : device_list()) {  // allocations before the trace are not counted
    const Device d = Device::parse(name);
    g_trace_allocated[name] = static_cast<int64_t>(backend_for(d).memory_stats(d.index).allocated_total);
  }
  g_tracing.store(true);
}

std::vector<RunRecord> trace_stop() {
  g_tracing.store(false);
  std::lock_guard<std::mutex> lock(g_trace_mu);
  return std::move(g_trace);
}

void trace_set_context(std::string phase, std::string layer) {
  t_phase = std::move(phase);
  t_layer = std::move(layer);
}

std::pair<std::string, std::string> trace_context() { return {t_phase, t_layer}; }

Impl impl_override() {
  struct Override {
    Impl impl = Impl::automatic;
    std::string error;  // set for a value that names no impl
  };
  static const Override value = [] {
    Override o;
    const char* env = std::getenv("HIPGRAD_IMPL");
    if (!env || !*env) return o;
    try {
      o.impl = parse_impl(env);
    } catch (const Error&) {
      o.error = cat("HIPGRAD_IMPL must be 'auto', 'handwritten' or 'vendor' (or unset), got '", env, "'");
    }
    return o;
  }();
  HG_REQUIRE(value.error.empty(), value.error);
  return value.impl;
}

namespace {
struct VendorLibraryState {
  bool registered = false;
  GpuPlatform platform = GpuPlatform::amd;
  std::string missing;  // "<name> was not found when hipgrad was built", or "" when found
};
VendorLibraryState& vendor_library(Backend b, VendorLib lib) {
  static VendorLibraryState states[2][3];
  return states[int(b)][int(lib)];
}
}  // namespace

void register_vendor_library(Backend b, VendorLib lib, GpuPlatform platform, const char* name,
                             bool found) {
  VendorLibraryState& s = vendor_library(b, lib);
  s.registered = true;
  s.platform = platform;
  s.missing = found ? "" : std::string(name) + " was not found when hipgrad was built";
}

OpKernelsBase::OpKernelsBase(const char* op, bool tunable, VendorCover cpu, VendorCover gpu)
    : op_(op), tunable_(tunable), vendor_{cpu, gpu} {}

const char* OpKernelsBase::vendor_fallback(Backend b) const {
  if (slots_[int(b)][int(Variant::vendor)].fn) return nullptr;
  const VendorCover& c = vendor_[int(b)];
  if (c.lib == VendorLib::none) return c.why;
  const VendorLibraryState& s = vendor_library(b, c.lib);
  if (!s.registered) return nullptr;
  if (!s.missing.empty()) return s.missing.c_str();
  return s.platform == GpuPlatform::amd ? c.why_amd : c.why_nvidia;
}

bool OpKernelsBase::supports(Backend b, Variant v) const {
  const Slot& s = slots_[int(b)][int(v)];
  if (s.fn) return true;
  return v == Variant::vendor && vendor_fallback(b) && slots_[int(b)][int(Variant::handwritten)].fn;
}

void OpKernelsBase::add_alternate_slot(Backend b, const char* name, const void* fn) {
  for (Slot& s : alternates_[int(b)])
    if (s.fn == fn) {
      s.name = name;
      return;
    }
  alternates_[int(b)].push_back(Slot{name, fn});
}

const OpKernelsBase::Slot& OpKernelsBase::slot_for(Backend b, int candidate,
                                                    std::string* reported) const {
  if (candidate >= 2) {
    const Slot& s = alternates_[int(b)].at(size_t(candidate - 2));
    *reported = s.name;
    return s;
  }
  const Variant v = Variant(candidate);
  const Slot& s = slots_[int(b)][int(v)];
  if (s.fn) {
    *reported = s.name;
    return s;
  }
  const Slot& hand = slots_[int(b)][int(Variant::handwritten)];
  const char* why = v == Variant::vendor ? vendor_fallback(b) : nullptr;
  if (why && hand.fn) {
    *reported = std::string(hand.name) + " (vendor fallback: " + why + ")";
    return hand;
  }
  fail(ErrorKind::not_implemented, op_, ": no ", variant_name(v), " kernel is registered for the ",
       backend_name(b), " backend in this build");
}

std::vector<int> OpKernelsBase::candidates(Backend b) const {
  std::vector<int> ids;
  if (slots_[int(b)][0].fn) ids.push_back(0);
  for (size_t i = 0; i < alternates_[int(b)].size(); ++i) ids.push_back(int(i) + 2);
  if (slots_[int(b)][1].fn) ids.push_back(1);
  return ids;
}

int OpKernelsBase::find_candidate(Backend b, const std::string& kernel) const {
  for (int id : candidates(b)) {
    const Slot& s = id >= 2 ? alternates_[int(b)][size_t(id - 2)] : slots_[int(b)][id];
    if (kernel == s.name) return id;
  }
  return -1;
}

int OpKernelsBase::resolve(Backend b, Impl impl, const std::string& key, bool* tune) const {
  *tune = false;
  if (impl == Impl::automatic) impl = impl_override();
  if (impl == Impl::handwritten) return int(Variant::handwritten);
  if (impl == Impl::vendor) return int(Variant::vendor);
  const int fallback = slots_[int(b)][0].fn ? 0 : 1;
  const size_t count = (slots_[int(b)][0].fn ? 1 : 0) + (slots_[int(b)][1].fn ? 1 : 0) +
                       alternates_[int(b)].size();
  if (!tunable_ || count < 2) return fallback;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = choices_.find(key);  // key: "<device>|<shape key>"
  if (it != choices_.end()) return it->second.candidate;
  *tune = true;
  return fallback;
}

namespace {
Backend backend_of_key(const std::string& key) {
  return key.compare(0, 3, "gpu") == 0 ? Backend::gpu : Backend::cpu;
}
}  // namespace

void OpKernelsBase::remember(Backend b, const std::string& key, int best,
                             const std::vector<int>& ids, const std::vector<double>& ms) {
  Choice c;
  c.candidate = best;
  c.variant = best == 1 ? Variant::vendor : Variant::handwritten;
  std::string name;
  for (size_t i = 0; i < ids.size(); ++i) {
    slot_for(b, ids[i], &name);
    c.candidates.emplace_back(name, ms[i]);
    if (ids[i] < 2) c.ms[ids[i]] = ms[i];
    if (ids[i] == best) c.kernel = name;
  }
  std::lock_guard<std::mutex> lock(mu_);
  choices_[key] = std::move(c);
}

void OpKernelsBase::set_choice(const std::string& key, Variant v, double ms_h, double ms_v) {
  const Backend b = backend_of_key(key);
  Choice c;
  c.variant = v;
  c.candidate = int(v);
  c.ms[0] = ms_h, c.ms[1] = ms_v;
  std::string name;
  for (Variant t : {Variant::handwritten, Variant::vendor}) {
    if (!slots_[int(b)][int(t)].fn) continue;
    slot_for(b, int(t), &name);
    c.candidates.emplace_back(name, c.ms[int(t)]);
    if (t == v) c.kernel = name;
  }
  std::lock_guard<std::mutex> lock(mu_);
  choices_[key] = std::move(c);
}

bool OpKernelsBase::set_choice(const std::string& key, const std::string& kernel,
                               const Timings& timings) {
  const Backend b = backend_of_key(key);
  const int id = find_candidate(b, kernel);
  if (id < 0) return false;
  Choice c;
  c.candidate = id;
  c.variant = id == 1 ? Variant::vendor : Variant::handwritten;
  c.kernel = kernel;
  c.candidates = timings;
  for (const auto& [name, ms] : timings) {
    const int t = find_candidate(b, name);
    if (t == 0 || t == 1) c.ms[t] = ms;
  }
  std::lock_guard<std::mutex> lock(mu_);
  choices_[key] = std::move(c);
  return true;
}

bool OpKernelsBase::force_kernel(const std::string& kernel) {
  for (Backend b : {Backend::cpu, Backend::gpu}) {
    const int id = find_candidate(b, kernel);
    if (id >= 0) {
      forced_[int(b)].store(id);
      return true;
    }
  }
  return false;
}

void OpKernelsBase::clear_forced(Backend b) { forced_[int(b)].store(-1); }

std::string OpKernelsBase::forced_kernel(Backend b) const {
  const int id = forced_[int(b)].load();
  if (id < 0) return "";
  std::string name;
  slot_for(b, id, &name);
  return name;
}

std::map<std::string, OpKernelsBase::Choice> OpKernelsBase::choices() const {
  std::lock_guard<std::mutex> lock(mu_);
  return choices_;
}

void OpKernelsBase::clear_choices() {
  std::lock_guard<std::mutex> lock(mu_);
  choices_.clear();
}

std::vector<KernelDescription> OpKernelsBase::describe() const {
  std::vector<KernelDescription> out;
  for (Backend b : {Backend::cpu, Backend::gpu}) {
    for (Variant v : {Variant::handwritten, Variant::vendor}) {
      const Slot& s = slots_[int(b)][int(v)];
      const Slot& hand = slots_[int(b)][0];
      const char* why = v == Variant::vendor ? vendor_fallback(b) : nullptr;
      if (s.fn) {
        out.push_back({op_, backend_name(b), variant_name(v), s.name, ""});
      } else if (why && hand.fn) {
        out.push_back({op_, backend_name(b), variant_name(v), hand.name,
                       std::string("vendor fallback: ") + why});
      }
      if (v != Variant::handwritten) continue;
      for (const Slot& a : alternates_[int(b)])
        out.push_back({op_, backend_name(b), variant_name(v), a.name,
                       "alternate: run by impl='auto' when fastest", true});
    }
  }
  return out;
}

}  // namespace hg
