// CPU kernels other CPU kernels call directly (convolution lowers onto GEMM).
#pragma once
#include <cstdint>

#include "../core/ops.h"
#include "parallel.h"

namespace hg::cpu {

// BLAS-style, row-major: C = alpha * op(A) @ op(B) + beta * C, C is M x N with leading dim ldc.
// beta == 0 never reads C.
void gemm_handwritten(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                      const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                      float* C, int64_t ldc);
// A GEMM epilogue: C = act(C + bias), the bias indexed by C's row (bias[i], convolution: one
// output channel per row) or column (bias[j], linear: one output feature per column).
struct GemmEpilogue {
  FusedEpilogue op;
  bool bias_per_row = false;
};
// Applies `e` in place to the m x n block of C at (i0, j0) (c points at that block's first
// element; i0, j0 index the bias). Vectorized with the activation kernels' math (activation.cpp).
void apply_epilogue(const GemmEpilogue& e, int64_t i0, int64_t j0, int64_t m, int64_t n, float* c,
                    int64_t ldc);
// gemm_handwritten (beta = 0 unless given: 1 accumulates onto C, a convolution's residual) and
// the epilogue applied to each MR-row strip of micro-tiles of C as soon as its last K block is
// accumulated, while the strip is in L1: no second pass over C.
void gemm_handwritten_epilogue(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                               const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                               int64_t ldc, const GemmEpilogue& e, float beta = 0.f);
// The register tile and cache blocks gemm_handwritten uses with the current CPU ISA (isa.h);
// tests pick sizes that cross each block edge.
struct GemmBlocking {
  const char* kernel;  // "cpu.gemm_packed_<isa>_<MR>x<NR>"
  int mr, nr, kc, mc, nc_l2, nc;
};
GemmBlocking gemm_handwritten_blocking();
// op(B) (K x N) packed once for the packed GEMM in use: ceil(N / NR) panels of K x NR
// (packed[q][k][j] = op(B)(k, q * NR + j), zero past N), the layout of pack_linear_weight.
void gemm_pack_b(bool trans_b, const float* B, int64_t ldb, int64_t K, int64_t N, float* packed);
// gemm_handwritten_epilogue (A not transposed) with op(B) from gemm_pack_b: no B packing.
void gemm_handwritten_epilogue_packed_b(int64_t M, int64_t N, int64_t K, const float* A,
                                        int64_t lda, const float* b_packed, float* C, int64_t ldc,
                                        const GemmEpilogue& e);
// C (M x N, beta 0) = op(A) @ op(B) with op(B) from gemm_pack_b: no B packing, no epilogue
// (the Winograd convolution's 16 products per chunk against its transformed weights).
void gemm_handwritten_prepacked(bool trans_a, int64_t M, int64_t N, int64_t K, const float* A,
                                int64_t lda, const float* b_packed, float* C, int64_t ldc);
void gemm_blas(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
               int64_t ldc);

// The gemm op's kernels start from y = c (c: M x N, contiguous) when the op has a c.
void gemm_copy_c_to_y(const GemmArgs& g);

// No NaN and no infinity among p[0:n] (exponent bits all set), one pass over the threads: the
// inference engine's input check.
bool all_finite(const float* p, int64_t n);

// Threads used by handwritten CPU kernels and by the BLAS; set_num_threads takes 1 to
// max(64, 4 x the hardware threads), ValueError otherwise.
int num_threads();
void set_num_threads(int64_t n);

}  // namespace hg::cpu
