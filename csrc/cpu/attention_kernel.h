// The CPU's handwritten attention kernels, one copy per instruction set (attention.inc included by
// attention_<isa>.cpp with its own -m flags); attention.cpp registers the copy for the ISA in use
// and the composed OpenBLAS variant.
#pragma once
#include "../core/ops.h"

namespace hg::cpu {

struct AttentionCpuKernel {
  const char* forward_name;   // "cpu.attention_flash_<isa>"
  const char* backward_name;  // "cpu.attention_backward_flash_<isa>"
  void (*forward)(const AttentionArgs&);
  void (*backward)(const AttentionBackwardArgs&);
};

extern const AttentionCpuKernel attention_kernel_avx512;
extern const AttentionCpuKernel attention_kernel_avx2;
extern const AttentionCpuKernel attention_kernel_generic;

}  // namespace hg::cpu
