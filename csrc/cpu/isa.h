// The CPU instruction set the handwritten kernels use, chosen at run time so one build runs on
// any x86-64: the widest of avx512 (F+VL+BW+DQ with FMA) / avx2 (with FMA) / generic that this
// CPU supports. HIPGRAD_CPU_ISA=avx2 (or set_cpu_isa) narrows the choice, so tests and benches
// can run every ISA's kernels on one machine. The choice is reported as build fact "cpu.isa".
// AVX512-VNNI (vpdpbusd, for the INT8 kernels) rides on avx512: in use when this CPU has it and
// the ISA is avx512; the name "avx512_novnni" selects avx512 without it (build fact
// "cpu.avx512_vnni": "on" | "off" | "absent").
#pragma once
#include <string>

namespace hg::cpu {

enum class CpuIsa { generic = 0, avx2 = 1, avx512 = 2 };

const char* cpu_isa_name(CpuIsa isa);
CpuIsa detected_cpu_isa();  // the widest this CPU supports
CpuIsa cpu_isa();           // the one kernels use now
bool cpu_avx512_vnni();      // the INT8 kernels may use vpdpbusd now
// "generic" | "avx2" | "avx512" | "avx512_novnni"; ValueError for an unknown name or one this
// CPU lacks.
void set_cpu_isa(const std::string& name);
// ValueError naming HIPGRAD_CPU_ISA when it was set to an unknown name or one this CPU lacks
// (then not applied); hipgrad's import calls it.
void check_cpu_isa_env();
// Kernel families whose reported names depend on the ISA re-register from here; called once at
// registration and after every set_cpu_isa.
void on_cpu_isa_change(void (*listener)());

}  // namespace hg::cpu
