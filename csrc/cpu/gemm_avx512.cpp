// AVX-512 GEMM micro-kernel: one 14 x 32 tile of C (gemm_microkernel.h has the contract).
// Registers: 28 zmm accumulators (14 rows x 2 vectors of 16 floats), 2 for the row of the packed
// B micro-panel at step k, 1 for the broadcast A value: 31 of the 32 zmm. Each k step issues 28
// FMAs against 2 vector loads and 14 broadcasts, so the two FMA ports, not the loads, bound it.
// The A micro-panel (14 x kc) stays in L1; B micro-panels stream from L2 and are prefetched.
// Compiled with -mavx512f/vl/bw/dq -mfma (CMakeLists.txt); gemm.cpp calls it only when isa.h
// says the CPU has AVX-512.
// Test: pytest tests/ops/test_gemm.py -k isa   Bench: python3 bench/bench_cpu.py
#include <immintrin.h>

#include "gemm_microkernel.h"

namespace hg::cpu {

namespace {

constexpr int MR = 14, NR = 32;

void tile_avx512_14x32(int64_t kc, const float* __restrict a, const float* __restrict b,
                       float* __restrict c, int64_t ldc, float alpha, float beta) {
  __m512 lo[MR], hi[MR];
#pragma GCC unroll 14
  for (int i = 0; i < MR; ++i) {
    lo[i] = _mm512_setzero_ps();
    hi[i] = _mm512_setzero_ps();
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 16), _MM_HINT_T0);
  }
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_load_ps(b);
    const __m512 b1 = _mm512_load_ps(b + 16);
    // B streams from L2 (the next micro-panel follows this one): fetch both lines 16 steps ahead.
    _mm_prefetch(reinterpret_cast<const char*>(b + 16 * NR), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(b + 16 * NR + 16), _MM_HINT_T0);
#pragma GCC unroll 14
    for (int i = 0; i < MR; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i]);
      lo[i] = _mm512_fmadd_ps(ai, b0, lo[i]);
      hi[i] = _mm512_fmadd_ps(ai, b1, hi[i]);
    }
    a += MR;
    b += NR;
  }
  const __m512 va = _mm512_set1_ps(alpha);
  if (beta == 0.f) {
#pragma GCC unroll 14
    for (int i = 0; i < MR; ++i) {
      _mm512_storeu_ps(c + i * ldc, _mm512_mul_ps(va, lo[i]));
      _mm512_storeu_ps(c + i * ldc + 16, _mm512_mul_ps(va, hi[i]));
    }
  } else {
    const __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 14
    for (int i = 0; i < MR; ++i) {
      float* ci = c + i * ldc;
      _mm512_storeu_ps(ci, _mm512_fmadd_ps(va, lo[i], _mm512_mul_ps(vb, _mm512_loadu_ps(ci))));
      _mm512_storeu_ps(ci + 16,
                       _mm512_fmadd_ps(va, hi[i], _mm512_mul_ps(vb, _mm512_loadu_ps(ci + 16))));
    }
  }
}

}  // namespace

const GemmMicroKernel gemm_microkernel_avx512 = {"cpu.gemm_packed_avx512_14x32", MR, NR,
                                                 /*kc=*/256, /*mc=*/168, /*nc_l2=*/768,
                                                 /*nc=*/4096,
                                                 &tile_avx512_14x32};

}  // namespace hg::cpu
