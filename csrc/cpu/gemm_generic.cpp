// Portable GEMM micro-kernel: one 4 x 8 tile of C in plain C++ (gemm_microkernel.h has the
// contract). Written so the compiler keeps the 4 x 8 accumulator block in vector registers at
// the baseline x86-64 ISA (SSE2: 8 xmm accumulators) or any other target; used when the CPU has
// neither AVX2+FMA nor AVX-512, and selectable for tests with set_cpu_isa("generic").
// Test: pytest tests/ops/test_gemm.py -k isa   Bench: python3 bench/bench_cpu.py
#include "gemm_microkernel.h"

namespace hg::cpu {

namespace {

constexpr int MR = 4, NR = 8;

void tile_generic_4x8(int64_t kc, const float* __restrict a, const float* __restrict b,
                      float* __restrict c, int64_t ldc, float alpha, float beta) {
  float acc[MR][NR] = {};
  for (int64_t k = 0; k < kc; ++k) {
#pragma GCC unroll 4
    for (int i = 0; i < MR; ++i) {
      const float ai = a[i];
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) acc[i][j] += ai * b[j];
    }
    a += MR;
    b += NR;
  }
  for (int i = 0; i < MR; ++i) {
    float* __restrict ci = c + i * ldc;
    if (beta == 0.f)
      for (int j = 0; j < NR; ++j) ci[j] = alpha * acc[i][j];
    else
      for (int j = 0; j < NR; ++j) ci[j] = alpha * acc[i][j] + beta * ci[j];
  }
}

}  // namespace

const GemmMicroKernel gemm_microkernel_generic = {"cpu.gemm_packed_generic_4x8", MR, NR,
                                                  /*kc=*/256, /*mc=*/128, /*nc_l2=*/512,
                                                  /*nc=*/4096,
                                                  &tile_generic_4x8, /*pack_strided=*/nullptr};

}  // namespace hg::cpu
