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

namespace {
BackendPolicy& policy_of(Backend b) {
  static BackendPolicy policies[2];
  return policies[int(b)];
}
}  // namespace

void set_backend_policy(Backend b, BackendPolicy policy) { policy_of(b) = policy; }
const BackendPolicy& backend_policy(Backend b) { return policy_of(b); }

OpKernelsBase::OpKernelsBase(const char* op, bool tunable, VendorCover cpu, VendorCover gpu)
    : op_(op), tunable_(tunable), vendor_cover_{cpu, gpu} {}

const char* OpKernelsBase::vendor_fallback(Backend b) const {
  if (vendor_[int(b)].fn) return nullptr;
  const VendorCover& c = vendor_cover_[int(b)];
  if (c.lib == VendorLib::none) return c.why;
  const VendorLibraryState& s = vendor_library(b, c.lib);
  if (!s.registered) return nullptr;
  if (!s.missing.empty()) return s.missing.c_str();
  return s.platform == GpuPlatform::amd ? c.why_amd : c.why_nvidia;
}

bool OpKernelsBase::supports(Backend b, Variant v) const {
  if (v == Variant::handwritten) return handwritten_[int(b)].fn != nullptr;
  return vendor_[int(b)].fn || (vendor_fallback(b) && handwritten_[int(b)].fn);
}

void OpKernelsBase::add_slot(Backend b, KernelRole role, const char* name, const void* fn) {
  if (role == KernelRole::handwritten || role == KernelRole::vendor) {
    Slot& s = role == KernelRole::vendor ? vendor_[int(b)] : handwritten_[int(b)];
    s = Slot{name, fn};
    return;
  }
  std::vector<Slot>& list = role == KernelRole::alternate ? alternates_[int(b)] : references_[int(b)];
  for (Slot& s : list)
    if (s.fn == fn) {
      s.name = name;
      return;
    }
  list.push_back(Slot{name, fn});
}

const OpKernelsBase::Slot& OpKernelsBase::slot_for(Backend b, Candidate c,
                                                    std::string* reported) const {
  switch (c.role) {
    case KernelRole::alternate:
    case KernelRole::reference: {
      const Slot& s = (c.role == KernelRole::alternate ? alternates_ : references_)[int(b)].at(
          size_t(c.index));
      *reported = s.name;
      return s;
    }
    case KernelRole::handwritten:
    case KernelRole::vendor:
      break;
  }
  const bool vendor = c.role == KernelRole::vendor;
  const Slot& s = vendor ? vendor_[int(b)] : handwritten_[int(b)];
  if (s.fn) {
    *reported = s.name;
    return s;
  }
  const Slot& hand = handwritten_[int(b)];
  const char* why = vendor ? vendor_fallback(b) : nullptr;
  if (why && hand.fn) {
    *reported = std::string(hand.name) + " (vendor fallback: " + why + ")";
    return hand;
  }
  fail(ErrorKind::not_implemented, op_, ": no ", vendor ? "vendor" : "handwritten",
       " kernel is registered for the ", backend_name(b), " backend in this build");
}

std::vector<Candidate> OpKernelsBase::candidates(Backend b) const {
  std::vector<Candidate> ids;
  if (handwritten_[int(b)].fn) ids.push_back({KernelRole::handwritten});
  for (size_t i = 0; i < alternates_[int(b)].size(); ++i)
    ids.push_back({KernelRole::alternate, int(i)});
  if (vendor_[int(b)].fn) ids.push_back({KernelRole::vendor});
  return ids;
}

bool OpKernelsBase::find_candidate(Backend b, const std::string& kernel, bool with_references,
                                   Candidate* found) const {
  std::string name;
  for (const Candidate& c : candidates(b)) {
    slot_for(b, c, &name);
    if (kernel == name) {
      *found = c;
      return true;
    }
  }
  if (!with_references) return false;
  for (size_t i = 0; i < references_[int(b)].size(); ++i)
    if (kernel == references_[int(b)][i].name) {
      *found = {KernelRole::reference, int(i)};
      return true;
    }
  return false;
}

bool OpKernelsBase::forced(Backend b, Candidate* c) const {
  if (!any_forced_[int(b)].load(std::memory_order_relaxed)) return false;
  std::lock_guard<std::mutex> lock(mu_);
  if (!any_forced_[int(b)].load(std::memory_order_relaxed)) return false;
  *c = forced_[int(b)];
  return true;
}

Candidate OpKernelsBase::resolve(Backend b, Impl impl, const std::string& key, bool* tune) const {
  *tune = false;
  if (impl == Impl::automatic) impl = impl_override();
  if (impl == Impl::handwritten) return {KernelRole::handwritten};
  if (impl == Impl::vendor) return {KernelRole::vendor};
  const Candidate fallback{handwritten_[int(b)].fn ? KernelRole::handwritten : KernelRole::vendor};
  if (!tunable_ || candidates(b).size() < 2) return fallback;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = choices_.find(key);  // key: "<device>|<shape key>"
  if (it != choices_.end()) return it->second.winner;
  *tune = true;
  return fallback;
}

namespace {
Backend backend_of_key(const std::string& key) {
  return key.compare(0, 3, "gpu") == 0 ? Backend::gpu : Backend::cpu;
}
}  // namespace

void OpKernelsBase::remember(Backend b, const std::string& key, Candidate best,
                             const std::vector<Candidate>& ids, const std::vector<double>& ms) {
  Choice c;
  c.winner = best;
  c.variant = best.role == KernelRole::vendor ? Variant::vendor : Variant::handwritten;
  std::string name;
  for (size_t i = 0; i < ids.size(); ++i) {
    slot_for(b, ids[i], &name);
    c.candidates.emplace_back(name, ms[i]);
    if (ids[i].role == KernelRole::handwritten) c.ms[int(Variant::handwritten)] = ms[i];
    if (ids[i].role == KernelRole::vendor) c.ms[int(Variant::vendor)] = ms[i];
    if (ids[i] == best) c.kernel = name;
  }
  std::lock_guard<std::mutex> lock(mu_);
  choices_[key] = std::move(c);
}

bool OpKernelsBase::set_choice(const std::string& key, const std::string& kernel,
                               const Timings& timings) {
  const Backend b = backend_of_key(key);
  Candidate id;
  if (!find_candidate(b, kernel, false, &id)) return false;
  Choice c;
  c.winner = id;
  c.variant = id.role == KernelRole::vendor ? Variant::vendor : Variant::handwritten;
  c.kernel = kernel;
  c.candidates = timings;
  for (const auto& [name, ms] : timings) {
    Candidate t;
    if (!find_candidate(b, name, false, &t)) continue;
    if (t.role == KernelRole::handwritten) c.ms[int(Variant::handwritten)] = ms;
    if (t.role == KernelRole::vendor) c.ms[int(Variant::vendor)] = ms;
  }
  std::lock_guard<std::mutex> lock(mu_);
  choices_[key] = std::move(c);
  return true;
}

bool OpKernelsBase::force_kernel(const std::string& kernel) {
  for (Backend b : {Backend::cpu, Backend::gpu}) {
    Candidate id;
    if (find_candidate(b, kernel, true, &id)) {
      std::lock_guard<std::mutex> lock(mu_);
      forced_[int(b)] = id;
      any_forced_[int(b)].store(true);
      return true;
    }
  }
  return false;
}

void OpKernelsBase::clear_forced(Backend b) {
  std::lock_guard<std::mutex> lock(mu_);
  any_forced_[int(b)].store(false);
}

std::string OpKernelsBase::forced_kernel(Backend b) const {
  Candidate id;
  if (!forced(b, &id)) return "";
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
    const Slot& hand = handwritten_[int(b)];
    if (hand.fn) out.push_back({op_, backend_name(b), "handwritten", hand.name, ""});
    for (const Slot& a : alternates_[int(b)])
      out.push_back({op_, backend_name(b), "handwritten", a.name,
                     "alternate: run by impl='auto' when fastest", true});
    for (const Slot& r : references_[int(b)])
      out.push_back({op_, backend_name(b), "handwritten", r.name,
                     "reference: runs only when forced by name", true});
    const char* why = vendor_fallback(b);
    if (vendor_[int(b)].fn) {
      out.push_back({op_, backend_name(b), "vendor", vendor_[int(b)].name, ""});
    } else if (why && hand.fn) {
      out.push_back({op_, backend_name(b), "vendor", hand.name,
                     std::string("vendor fallback: ") + why});
    }
  }
  return out;
}

}  // namespace hg
