// CPU vendor path: OpenBLAS (PyPI's scipy-openblas32 wheel, symbols prefixed `scipy_`).
// Thin: the call and nothing else. Also owns the CPU thread count, shared by OpenMP and BLAS.
#include <cblas.h>
#include <omp.h>

#include <algorithm>

#include "../core/checks.h"
#include "cpu_kernels.h"

extern "C" void scipy_openblas_set_num_threads(int);

namespace hg::cpu {

namespace {
int g_threads = 0;  // 0: not set yet, take OpenMP's default
int max_num_threads() { return std::max(64, 4 * omp_get_num_procs()); }
}  // namespace

int num_threads() { return g_threads > 0 ? g_threads : omp_get_max_threads(); }

void set_num_threads(int64_t n) {
  HG_REQUIRE(n >= 1, "set_num_threads: n must be >= 1, got ", n);
  // Far past the hardware, thread creation fails inside an OpenMP region (a crash, not an error).
  HG_REQUIRE(n <= max_num_threads(), "set_num_threads: n must be at most ", max_num_threads(),
             " (4 x this machine's ", omp_get_num_procs(), " hardware threads, at least 64), got ", n);
  g_threads = int(n);
  omp_set_num_threads(g_threads);
  scipy_openblas_set_num_threads(g_threads);
}

void gemm_blas(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
               int64_t ldc) {
  const int64_t limit = 0x7fffffff;
  HG_REQUIRE(M <= limit && N <= limit && K <= limit && lda <= limit && ldb <= limit && ldc <= limit,
             "gemm: sizes above 2^31-1 are not supported by the 32-bit-index BLAS");
  scipy_cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                    trans_b ? CblasTrans : CblasNoTrans, int(M), int(N), int(K), alpha, A, int(lda),
                    B, int(ldb), beta, C, int(ldc));
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
