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
std::atomic<TraceHook> g_trace_hook{nullptr};
}  // namespace

const RunRecord& last_run() { return t_last_run; }
void set_trace_hook(TraceHook hook) { g_trace_hook.store(hook); }
void record_run(RunRecord rec) {
  if (TraceHook hook = g_trace_hook.load()) hook(rec);
  t_last_run = std::move(rec);
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
