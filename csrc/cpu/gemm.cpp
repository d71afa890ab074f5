// CPU handwritten GEMM (placeholder blocked version; replaced by the packed AVX-512/AVX2 kernel).
#include <omp.h>

#include <algorithm>
#include <vector>

#include "../core/checks.h"
#include "cpu_kernels.h"

namespace hg::cpu {

void gemm_handwritten(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                      const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                      float* C, int64_t ldc) {
#pragma omp parallel for schedule(static) num_threads(num_threads())
  for (int64_t i = 0; i < M; ++i) {
    float* c = C + i * ldc;
    if (beta == 0.f) std::fill(c, c + N, 0.f);
    else for (int64_t j = 0; j < N; ++j) c[j] *= beta;
    for (int64_t k = 0; k < K; ++k) {
      const float av = alpha * (trans_a ? A[k * lda + i] : A[i * lda + k]);
      if (!trans_b) {
        const float* b = B + k * ldb;
        for (int64_t j = 0; j < N; ++j) c[j] += av * b[j];
      } else {
        for (int64_t j = 0; j < N; ++j) c[j] += av * B[j * ldb + k];
      }
    }
  }
}

static void gemm_handwritten_kernel(const GemmArgs& g) {
  if (g.c) {
    for (int64_t i = 0; i < g.M; ++i) std::copy(g.c + i * g.N, g.c + (i + 1) * g.N, g.y + i * g.ldy);
  }
  gemm_handwritten(g.trans_a, g.trans_b, g.M, g.N, g.K, g.alpha, g.a, g.lda, g.b, g.ldb,
                   g.c ? g.beta : 0.f, g.y, g.ldy);
}

}  // namespace hg::cpu

HG_REGISTER_KERNEL(gemm_op, cpu, handwritten, "cpu.gemm_rowwise", &hg::cpu::gemm_handwritten_kernel);
