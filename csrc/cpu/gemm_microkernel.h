// The register-blocked GEMM micro-kernels behind hg::cpu::gemm_handwritten (driver: gemm.cpp),
// one per instruction set, each in its own file compiled with that ISA's flags
// (gemm_avx512.cpp, gemm_avx2.cpp, gemm_generic.cpp).
//
// A micro-kernel computes one full MR x NR tile of C from packed panels:
//   C[i][j] = alpha * sum_k a[k*MR + i] * b[k*NR + j] + beta * C[i][j]   (beta == 0: C not read)
// `a` is an MR-row micro-panel of op(A) stored k-major (MR values per k), `b` a KC x NR
// micro-panel of op(B) stored k-major (NR values per k); zero-padded at edges. Only float
// alignment is assumed (unaligned vector loads): `b` may be a caller's pack_linear_weight tensor
// that went through NumPy or DLPack and sits at any float boundary. C is row-major with leading dimension ldc. Partial tiles go through a scratch tile.
//
// The descriptors are constant-initialized data, so reading one never executes code compiled for
// an ISA the CPU may lack; only calling `tile` does, and gemm.cpp calls it only after isa.h said so.
#pragma once
#include <cstdint>

namespace hg::cpu {

using GemmTileFn = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                            float alpha, float beta);
// Packing of a strided source into one micro-panel (the transposing case, gemm.cpp's
// pack_strided): dst[k * w + i] = src[i * ld + k] for i < m, k < kc; rows m..w-1 zero.
using GemmPackFn = void (*)(const float* src, int64_t ld, int64_t m, int64_t kc, int w,
                            float* dst);

struct GemmMicroKernel {
  const char* name;  // the op table's kernel name, "cpu.gemm_packed_<isa>_<MR>x<NR>"
  int mr, nr;        // register tile
  int kc;            // depth of one pass: an A micro-panel (mr x kc) stays in L1
  int mc;            // rows of a packed A block (multiple of mr), in L2 beside a B sub-block
  int nc_l2;         // columns of a B sub-block (kc x nc_l2) that stays in L2 (multiple of nr)
  int nc;            // columns of a packed B panel (multiple of nr); bounds the packing buffer
  GemmTileFn tile;
  GemmPackFn pack_strided;  // nullptr: gemm.cpp's portable SSE packing
};

extern const GemmMicroKernel gemm_microkernel_avx512;
extern const GemmMicroKernel gemm_microkernel_avx2;
extern const GemmMicroKernel gemm_microkernel_generic;

}  // namespace hg::cpu
