// CPU kernels other CPU kernels call directly (convolution lowers onto GEMM).
#pragma once
#include <cstdint>

namespace hg {
struct GemmArgs;
}

namespace hg::cpu {

// BLAS-style, row-major: C = alpha * op(A) @ op(B) + beta * C, C is M x N with leading dim ldc.
// beta == 0 never reads C.
void gemm_handwritten(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                      const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                      float* C, int64_t ldc);
// The register tile and cache blocks gemm_handwritten uses with the current CPU ISA (isa.h);
// tests pick sizes that cross each block edge.
struct GemmBlocking {
  const char* kernel;  // "cpu.gemm_packed_<isa>_<MR>x<NR>"
  int mr, nr, kc, mc, nc_l2, nc;
};
GemmBlocking gemm_handwritten_blocking();
void gemm_blas(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
               int64_t ldc);

// The gemm op's kernels start from y = c (c: M x N, contiguous) when the op has a c.
void gemm_copy_c_to_y(const GemmArgs& g);

// Threads used by handwritten CPU kernels and by the BLAS.
int num_threads();
void set_num_threads(int n);

}  // namespace hg::cpu
