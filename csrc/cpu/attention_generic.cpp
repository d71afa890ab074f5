// Blocked (flash-style) attention for generic: forward and backward (contract: attention_kernel.h;
// code: attention.inc over gemm_unpacked.inc's 4-float vectors; flags from CMakeLists.txt by
// file name).
// Test: pytest tests/ops/test_attention.py   Bench: python3 bench/bench_attention.py
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "attention_kernel.h"
#include "cpu_kernels.h"

namespace hg::cpu {
namespace attention_generic {
constexpr int kW = 4, kMR = 4;
#include "gemm_unpacked.inc"
#include "attention.inc"
}  // namespace attention_generic

const AttentionCpuKernel attention_kernel_generic = {"cpu.attention_flash_generic",
    "cpu.attention_backward_flash_generic", &attention_generic::attention_forward,
    &attention_generic::attention_backward};

}  // namespace hg::cpu
