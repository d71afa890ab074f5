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

void OpKernelsBase::set_choice(const std::string& key, Variant v, double ms_h, double ms_v) {
  std::lock_guard<std::mutex> lock(mu_);
  choices_[key] = Choice{v, {ms_h, ms_v}};
}

Impl impl_override() {
  static const Impl value = [] {
    const char* env = std::getenv("HIPGRAD_IMPL");
    if (!env || !*env) return Impl::automatic;
    try {
      return parse_impl(env);
    } catch (const Error&) {
      return Impl::automatic;  // reported by hipgrad.build_info()["impl_override_error"]
    }
  }();
  return value;
}

std::vector<OpKernelsBase*>& all_ops() {
  static std::vector<OpKernelsBase*> ops;
  return ops;
}

OpKernelsBase::OpKernelsBase(const char* op, bool tunable) : op_(op), tunable_(tunable) {
  all_ops().push_back(this);
}

bool OpKernelsBase::supports(Backend b, Variant v) const {
  const Slot& s = slots_[int(b)][int(v)];
  if (s.fn) return true;
  return s.fallback_why && slots_[int(b)][int(Variant::handwritten)].fn;
}

const OpKernelsBase::Slot& OpKernelsBase::slot_for(Backend b, Variant v, std::string* reported) const {
  const Slot& s = slots_[int(b)][int(v)];
  if (s.fn) {
    *reported = s.name;
    return s;
  }
  const Slot& hand = slots_[int(b)][int(Variant::handwritten)];
  if (s.fallback_why && hand.fn) {
    *reported = std::string(hand.name) + " (vendor fallback: " + s.fallback_why + ")";
    return hand;
  }
  fail(ErrorKind::not_implemented, op_, ": no ", variant_name(v), " kernel is registered for the ",
       backend_name(b), " backend in this build");
}

Variant OpKernelsBase::resolve(Backend b, Impl impl, const std::string& key, bool* tune) const {
  *tune = false;
  if (impl == Impl::automatic) impl = impl_override();
  if (impl == Impl::handwritten) return Variant::handwritten;
  if (impl == Impl::vendor) return Variant::vendor;
  const bool both = slots_[int(b)][0].fn && slots_[int(b)][1].fn;
  if (!tunable_ || !both) return slots_[int(b)][0].fn ? Variant::handwritten : Variant::vendor;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = choices_.find(key);  // key: "<device>|<shape key>"
  if (it != choices_.end()) return it->second.variant;
  *tune = true;
  return Variant::handwritten;
}

void OpKernelsBase::remember(const std::string& key, Variant v, const double ms[2]) {
  std::lock_guard<std::mutex> lock(mu_);
  choices_[key] = Choice{v, {ms[0], ms[1]}};
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
      if (s.fn) {
        out.push_back({op_, backend_name(b), variant_name(v), s.name, ""});
      } else if (s.fallback_why && hand.fn) {
        out.push_back({op_, backend_name(b), variant_name(v), hand.name,
                       std::string("vendor fallback: ") + s.fallback_why});
      }
    }
  }
  return out;
}

}  // namespace hg
