// AVX-512 GEMM micro-kernel: one 14 x 32 tile of C (gemm_microkernel.h has the contract).
// Registers: 28 zmm accumulators (14 rows x 2 vectors of 16 floats), 2 for the row of the packed
// B micro-panel at step k, 1 for the broadcast A value: 31 of the 32 zmm. Each k step issues 28
// FMAs against 2 vector loads and 14 broadcasts, so the two FMA ports, not the loads, bound it.
// The A micro-panel (14 x kc) stays in L1; B micro-panels stream from L2 and are prefetched.
// Compiled with -mavx512f/vl/bw/dq -mfma (CMakeLists.txt); gemm.cpp calls it only when isa.h
// says the CPU has AVX-512.
// Test: pytest tests/ops/test_gemm.py -k isa   Bench: python3 bench/bench_cpu.py
#include <immintrin.h>

#include <algorithm>

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
    const __m512 b0 = _mm512_loadu_ps(b);
    const __m512 b1 = _mm512_loadu_ps(b + 16);
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

// The transposing pack (GemmPackFn): 16 x 16 blocks (16 rows of the source, 16 steps of k) are
// loaded as 16 vectors (masked at the k edge), transposed in registers (4 rounds of 16 shuffles:
// unpack ps, unpack pd, then two rounds of 128-bit lane shuffles) and stored as 16 output rows
// of up to 16 values (masked to the panel's width). Rows past m load as zero, so the panel's
// padding is written in the same pass. A quarter of a shuffle per float against the SSE 4 x 4
// version's half, with whole cache lines read from each source row.
void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int q = 0; q < 16; q += 2) {  // per 128-bit lane: r0[0] r1[0] r0[1] r1[1] | r0[2] r1[2] ...
    t[q] = _mm512_unpacklo_ps(r[q], r[q + 1]);
    t[q + 1] = _mm512_unpackhi_ps(r[q], r[q + 1]);
  }
  for (int a = 0; a < 16; a += 4) {  // u_j lane L: rows a..a+3 at k = 4L + j
    const __m512d t0 = _mm512_castps_pd(t[a]), t1 = _mm512_castps_pd(t[a + 1]);
    const __m512d t2 = _mm512_castps_pd(t[a + 2]), t3 = _mm512_castps_pd(t[a + 3]);
    r[a] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
    r[a + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
    r[a + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
    r[a + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
  }
  for (int j = 0; j < 4; ++j) {  // 4 x 4 transpose of 128-bit lanes across r[j], r[4+j], ...
    const __m512 s0 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x44);
    const __m512 s1 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xEE);
    const __m512 s2 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x44);
    const __m512 s3 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xEE);
    t[j] = _mm512_shuffle_f32x4(s0, s2, 0x88);       // k = j
    t[4 + j] = _mm512_shuffle_f32x4(s0, s2, 0xDD);   // k = 4 + j
    t[8 + j] = _mm512_shuffle_f32x4(s1, s3, 0x88);   // k = 8 + j
    t[12 + j] = _mm512_shuffle_f32x4(s1, s3, 0xDD);  // k = 12 + j
  }
  for (int q = 0; q < 16; ++q) r[q] = t[q];
}

void pack_strided_avx512(const float* __restrict src, int64_t ld, int64_t m, int64_t kc, int w,
                         float* __restrict dst) {
  for (int i0 = 0; i0 < w; i0 += 16) {
    const int64_t rows = std::max<int64_t>(0, std::min<int64_t>(16, m - i0));
    const __mmask16 out_mask = static_cast<__mmask16>((1u << std::min(16, w - i0)) - 1u);
    for (int64_t k0 = 0; k0 < kc; k0 += 16) {
      const int64_t kb = std::min<int64_t>(16, kc - k0);
      const __mmask16 k_mask = static_cast<__mmask16>((1u << kb) - 1u);
      __m512 r[16];
#pragma GCC unroll 16
      for (int q = 0; q < 16; ++q) {
        if (q >= rows) {
          r[q] = _mm512_setzero_ps();
          continue;
        }
        const float* row = src + (i0 + q) * ld + k0;
        if (k0 + 64 < kc) _mm_prefetch(reinterpret_cast<const char*>(row + 64), _MM_HINT_T0);
        r[q] = _mm512_maskz_loadu_ps(k_mask, row);
      }
      transpose16(r);
      float* d = dst + k0 * w + i0;
      for (int64_t kk = 0; kk < kb; ++kk) _mm512_mask_storeu_ps(d + kk * w, out_mask, r[kk]);
    }
  }
}

}  // namespace

const GemmMicroKernel gemm_microkernel_avx512 = {"cpu.gemm_packed_avx512_14x32", MR, NR,
                                                 /*kc=*/256, /*mc=*/168, /*nc_l2=*/768,
                                                 /*nc=*/4096,
                                                 &tile_avx512_14x32, &pack_strided_avx512};

}  // namespace hg::cpu
