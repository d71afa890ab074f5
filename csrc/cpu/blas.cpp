// CPU vendor path: OpenBLAS (PyPI's scipy-openblas32 wheel, symbols prefixed `scipy_`).
// Thin: the call and nothing else (the thread count OpenBLAS runs at is set by parallel.cpp).
#include <cblas.h>

#include <algorithm>

#include "../core/checks.h"
#include "cpu_kernels.h"
#include "parallel.h"

namespace hg::cpu {

namespace {
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  scipy_cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                    trans_b ? CblasTrans : CblasNoTrans, int(M), int(N), int(K), alpha, A, int(lda),
                    B, int(ldb), beta, C, int(ldc));
}
}  // namespace

// OpenBLAS runs on one thread (before_blas_call); a product worth threading is split here into
// row or column blocks of C, one sgemm each, claimed by hipgrad's pool: one pool for both, the
// blocks balance when a thread is slowed down, and the pool measures these regions too.
void gemm_blas(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
               int64_t ldc) {
  const int64_t limit = 0x7fffffff;
  HG_REQUIRE(M <= limit && N <= limit && K <= limit && lda <= limit && ldb <= limit && ldc <= limit,
             "gemm: sizes above 2^31-1 are not supported by the 32-bit-index BLAS");
  before_blas_call();
  constexpr int64_t kBlock = 64;  // rows or columns per block at least
  const bool rows = M >= N;       // split the longer side of C
  const int64_t units = (rows ? M : N) / kBlock;
  const int threads = region_threads(2.0 * M * N * K, double(1 << 21), units);
  if (threads <= 1) return sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  const int64_t tasks = std::min<int64_t>(units, 2 * threads), len = rows ? M : N;
  parallel_tasks(tasks, threads, [&](int64_t t) {
    const int64_t b = len * t / tasks, e = len * (t + 1) / tasks;
    if (rows)
      sgemm(trans_a, trans_b, e - b, N, K, alpha, trans_a ? A + b : A + b * lda, lda, B, ldb, beta,
            C + b * ldc, ldc);
    else
      sgemm(trans_a, trans_b, M, e - b, K, alpha, A, lda, trans_b ? B + b * ldb : B + b, ldb, beta,
            C + b, ldc);
  });
}

// The gemm op's vendor kernel: copy c into y, then one sgemm with beta.
static void gemm_vendor_kernel(const GemmArgs& g) {
  if (g.c) {
    for (int64_t i = 0; i < g.M; ++i) std::copy(g.c + i * g.N, g.c + (i + 1) * g.N, g.y + i * g.ldy);
  }
  gemm_blas(g.trans_a, g.trans_b, g.M, g.N, g.K, g.alpha, g.a, g.lda, g.b, g.ldb,
            g.c ? g.beta : 0.f, g.y, g.ldy);
}

}  // namespace hg::cpu

HG_REGISTER_KERNEL(gemm_op, cpu, vendor, "cpu.openblas_sgemm", &hg::cpu::gemm_vendor_kernel);
