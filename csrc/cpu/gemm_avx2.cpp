// AVX2 GEMM micro-kernel: one 6 x 16 tile of C (gemm_microkernel.h has the contract).
// Registers: 12 ymm accumulators (6 rows x 2 vectors of 8 floats), 2 for the packed B row at
// step k, 1 for the broadcast A value: 15 of the 16 ymm. 12 FMAs per 2 loads + 6 broadcasts.
// Compiled with -mavx2 -mfma (CMakeLists.txt); gemm.cpp calls it only when isa.h says the CPU
// has AVX2 and FMA.
// Test: pytest tests/ops/test_gemm.py -k isa   Bench: python3 bench/bench_cpu.py
#include <immintrin.h>

#include "gemm_microkernel.h"

namespace hg::cpu {

namespace {

constexpr int MR = 6, NR = 16;

void tile_avx2_6x16(int64_t kc, const float* __restrict a, const float* __restrict b,
                    float* __restrict c, int64_t ldc, float alpha, float beta) {
  __m256 lo[MR], hi[MR];
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) {
    lo[i] = _mm256_setzero_ps();
    hi[i] = _mm256_setzero_ps();
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 15), _MM_HINT_T0);
  }
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_loadu_ps(b);
    const __m256 b1 = _mm256_loadu_ps(b + 8);
    // B streams from L2 (the next micro-panel follows this one): fetch 16 steps ahead.
    _mm_prefetch(reinterpret_cast<const char*>(b + 16 * NR), _MM_HINT_T0);
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      const __m256 ai = _mm256_broadcast_ss(a + i);
      lo[i] = _mm256_fmadd_ps(ai, b0, lo[i]);
      hi[i] = _mm256_fmadd_ps(ai, b1, hi[i]);
    }
    a += MR;
    b += NR;
  }
  const __m256 va = _mm256_set1_ps(alpha);
  if (beta == 0.f) {
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      _mm256_storeu_ps(c + i * ldc, _mm256_mul_ps(va, lo[i]));
      _mm256_storeu_ps(c + i * ldc + 8, _mm256_mul_ps(va, hi[i]));
    }
  } else {
    const __m256 vb = _mm256_set1_ps(beta);
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      float* ci = c + i * ldc;
      _mm256_storeu_ps(ci, _mm256_fmadd_ps(va, lo[i], _mm256_mul_ps(vb, _mm256_loadu_ps(ci))));
      _mm256_storeu_ps(ci + 8,
                       _mm256_fmadd_ps(va, hi[i], _mm256_mul_ps(vb, _mm256_loadu_ps(ci + 8))));
    }
  }
}

}  // namespace

const GemmMicroKernel gemm_microkernel_avx2 = {"cpu.gemm_packed_avx2_6x16", MR, NR,
                                               /*kc=*/256, /*mc=*/168, /*nc_l2=*/768,
                                               /*nc=*/4096,
                                               &tile_avx2_6x16, /*pack_strided=*/nullptr};

}  // namespace hg::cpu
