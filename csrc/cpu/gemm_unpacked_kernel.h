// The small-problem GEMM kernel behind the "cpu.gemm_unpacked_<isa>_<MR>x<NR>" alternate of the
// gemm op (driver: gemm_unpacked.cpp). Unlike the packed kernel (gemm.cpp) it reads op(A) where
// it lies and, when B is untransposed, B too: no packing pass, no K blocking, so for the small
// GEMMs of a LeNet-sized network the whole product is one sweep over the operands.
//
// A strip computes one column strip of C (n <= NR columns) over all M rows:
//   C[i][j] = alpha * sum_k op(A)(i, k) * b[k * ldb + j] + beta * C[i][j]   (beta == 0: C not read)
// with op(A)(i, k) = a[i * a_row + k * a_col] (either stride may be 1). All NR values of each row
// of b are readable (the driver gathers a zero-padded copy for an edge strip or a transposed B).
// Row tiles of MR rows keep MR x NR accumulators in registers; the last m < MR rows use a tile
// compiled for exactly m rows.
//
// One copy per instruction set (gemm_unpacked.inc included by gemm_unpacked_<isa>.cpp with its
// own -m flags); the descriptors are constant data, so only calling `strip` runs ISA code.
#pragma once
#include <cstdint>

namespace hg::cpu {

using GemmStripFn = void (*)(int64_t M, int64_t K, const float* a, int64_t a_row, int64_t a_col,
                             const float* b, int64_t ldb, float* c, int64_t ldc, int64_t n,
                             float alpha, float beta);

struct GemmUnpackedKernel {
  const char* name;  // "cpu.gemm_unpacked_<isa>_<MR>x<NR>"
  int mr, nr;
  GemmStripFn strip;
};

extern const GemmUnpackedKernel gemm_unpacked_avx512;
extern const GemmUnpackedKernel gemm_unpacked_avx2;
extern const GemmUnpackedKernel gemm_unpacked_generic;

// The whole product with the current ISA's strip kernel (BLAS-style arguments as gemm_handwritten).
void gemm_unpacked(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                   const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                   int64_t ldc);

// C (M x N, beta 0) = op(A) @ op(B) with op(B) prepacked by gemm_pack_b (ceil(N / NR) panels of
// K x NR, zero-padded) when NR is this kernel's strip width: each panel is a strip as it lies, so
// for a few rows (a batch-1 classifier, a 2x2 conv plane) the weight streams once with no padding
// of the rows to the packed kernel's MR. Threads take panels. False, doing nothing, when the
// panel widths differ or a size is 0 (the packed GEMM then runs).
bool gemm_unpacked_prepacked(bool trans_a, int64_t M, int64_t N, int64_t K, const float* A,
                             int64_t lda, const float* b_packed, int64_t packed_nr, float* C,
                             int64_t ldc);

}  // namespace hg::cpu
