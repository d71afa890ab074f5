// Blocked (flash-style) attention for avx512: forward and backward (contract: attention_kernel.h;
// code: attention.inc over gemm_unpacked.inc's 16-float vectors; flags from CMakeLists.txt by
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
namespace attention_avx512 {
constexpr int kW = 16, kMR = 8;
#include "gemm_unpacked.inc"
#include "attention.inc"
}  // namespace attention_avx512

const AttentionCpuKernel attention_kernel_avx512 = {"cpu.attention_flash_avx512",
    "cpu.attention_backward_flash_avx512", &attention_avx512::attention_forward,
    &attention_avx512::attention_backward};

}  // namespace hg::cpu
