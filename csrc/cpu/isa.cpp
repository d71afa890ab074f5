// Run-time choice of the CPU instruction set (see isa.h).
#include "isa.h"

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <vector>

#include "../core/build_facts.h"
#include "../core/errors.h"

namespace hg::cpu {

namespace {

CpuIsa detect() {
#if defined(__x86_64__) || defined(_M_X64)
  __builtin_cpu_init();  // we may run from a static initializer, before the runtime's own init
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("fma"))
    return CpuIsa::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return CpuIsa::avx2;
#endif
  return CpuIsa::generic;
}

bool detect_avx512_vnni() {
#if defined(__x86_64__) || defined(_M_X64)
  return detect() == CpuIsa::avx512 && __builtin_cpu_supports("avx512vnni");
#else
  return false;
#endif
}

// *vnni: whether the name lets the avx512 kernels use VNNI ("avx512_novnni" does not).
bool parse(const std::string& name, CpuIsa* out, bool* vnni) {
  *vnni = name != "avx512_novnni";
  if (!*vnni) {
    *out = CpuIsa::avx512;
    return true;
  }
  for (CpuIsa isa : {CpuIsa::generic, CpuIsa::avx2, CpuIsa::avx512})
    if (name == cpu_isa_name(isa)) {
      *out = isa;
      return true;
    }
  return false;
}

struct State {
  std::mutex mu;
  CpuIsa detected = detect();
  bool vnni_detected = detect_avx512_vnni();
  std::atomic<CpuIsa> current{detected};
  std::atomic<bool> vnni_allowed{true};
  std::vector<void (*)()> listeners;
  std::string env_error;  // why HIPGRAD_CPU_ISA was not applied; check_cpu_isa_env raises it
  State() {
    CpuIsa wanted;
    bool vnni;
    const char* env = std::getenv("HIPGRAD_CPU_ISA");
    // No exception from a static initializer: a bad value is kept in env_error and raised by
    // check_cpu_isa_env (at hipgrad's import).
    if (env && *env) {
      if (!parse(env, &wanted, &vnni)) {
        env_error = cat("HIPGRAD_CPU_ISA must be 'generic', 'avx2', 'avx512' or 'avx512_novnni' "
                        "(or unset), got '", env, "'");
      } else if (wanted > detected) {
        env_error = cat("HIPGRAD_CPU_ISA is '", env, "' but this CPU supports up to '",
                        cpu_isa_name(detected), "'");
      } else {
        current.store(wanted);
        vnni_allowed.store(vnni);
      }
    }
    publish();
  }
  bool vnni() const {
    return vnni_detected && vnni_allowed.load() && current.load() == CpuIsa::avx512;
  }
  void publish() const {
    add_build_fact("cpu.isa", cpu_isa_name(current.load()));
    add_build_fact("cpu.isa_detected", cpu_isa_name(detected));
    add_build_fact("cpu.avx512_vnni", vnni() ? "on" : (vnni_detected ? "off" : "absent"));
  }
};

State& state() {
  static State s;
  return s;
}

}  // namespace

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::avx512: return "avx512";
    case CpuIsa::avx2: return "avx2";
    default: return "generic";
  }
}

CpuIsa detected_cpu_isa() { return state().detected; }
CpuIsa cpu_isa() { return state().current.load(); }
bool cpu_avx512_vnni() { return state().vnni(); }

void check_cpu_isa_env() {
  const State& s = state();
  HG_REQUIRE(s.env_error.empty(), s.env_error);
}

void set_cpu_isa(const std::string& name) {
  State& s = state();
  CpuIsa wanted;
  bool vnni;
  HG_REQUIRE(parse(name, &wanted, &vnni),
             "set_cpu_isa: isa must be \"generic\", \"avx2\", \"avx512\" or \"avx512_novnni\", "
             "got \"", name, "\"");
  HG_REQUIRE(wanted <= s.detected, "set_cpu_isa: this CPU supports up to \"",
             cpu_isa_name(s.detected), "\", so isa cannot be \"", name, "\"");
  std::vector<void (*)()> listeners;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    s.current.store(wanted);
    s.vnni_allowed.store(vnni);
    s.publish();
    listeners = s.listeners;
  }
  for (auto* fn : listeners) fn();
}

void on_cpu_isa_change(void (*listener)()) {
  State& s = state();
  {
    std::lock_guard<std::mutex> lock(s.mu);
    s.listeners.push_back(listener);
  }
  listener();
}

}  // namespace hg::cpu
