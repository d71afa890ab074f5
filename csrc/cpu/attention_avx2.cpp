// Blocked (flash-style) attention for avx2: forward and backward (contract: attention_kernel.h;
// code: attention.inc over gemm_unpacked.inc's 8-float vectors; flags from CMakeLists.txt by
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
namespace attention_avx2 {
constexpr int kW = 8, kMR = 6;
#include "gemm_unpacked.inc"
#include "attention.inc"
}  // namespace attention_avx2

const AttentionCpuKernel attention_kernel_avx2 = {"cpu.attention_flash_avx2",
    "cpu.attention_backward_flash_avx2", &attention_avx2::attention_forward,
    &attention_avx2::attention_backward};

}  // namespace hg::cpu
