// CPU GEMM alternate for small problems: C = alpha * op(A) @ op(B) + beta * C, row-major, BLAS
// semantics (beta == 0 never reads C; alpha == 0 or K == 0 never reads A or B). Registered as a
// handwritten alternate of the gemm op ("cpu.gemm_unpacked_<isa>_<MR>x<NR>"): impl="auto" times
// it beside the packed kernel (gemm.cpp, the default) and OpenBLAS and keeps it where it wins.
//
// Where the packed kernel copies A and B into micro-panels and blocks K, this one reads the
// operands in place: C is cut into column strips of NR columns; for each strip one register-
// blocked sweep (gemm_unpacked.inc) runs over all rows and all of K, broadcasting op(A) values
// straight from A (either transposition) and loading rows of B straight from B. Only a strip
// that B cannot serve in place -- B transposed, or the ragged last strip -- is gathered into a
// K x NR zero-padded copy (thread-local). Strips (and, when there are fewer strips than threads,
// bands of rows) are split over the threads; below ~2^20 FLOP, or inside another kernel's
// parallel region, the calling thread does it all.
//
// The kernels follow the CPU ISA (isa.h): avx512 8x32, avx2 6x16, generic 4x8.
// Test: PYTHONPATH=python python3 -m pytest -q tests/ops/test_gemm.py -k alternate
// Bench: PYTHONPATH=python python3 bench/bench_gemm_alternates.py

#include <algorithm>
#include <vector>

#include "../core/ops.h"
#include "cpu_kernels.h"
#include "gemm_unpacked_kernel.h"
#include "isa.h"

namespace hg::cpu {

namespace {

const GemmUnpackedKernel& active_unpacked() {
  switch (cpu_isa()) {
    case CpuIsa::avx512: return gemm_unpacked_avx512;
    case CpuIsa::avx2: return gemm_unpacked_avx2;
    default: return gemm_unpacked_generic;
  }
}

// op(B)[0:K, j0:j0+n] as K rows of nr floats, columns past n zero.
void gather_strip(bool trans_b, const float* B, int64_t ldb, int64_t K, int64_t j0, int64_t n,
                  int nr, float* __restrict dst) {
  std::fill(dst, dst + K * nr, 0.f);
  if (trans_b) {  // op(B)(k, j) = B[j][k]: read each row of B contiguously
    for (int64_t j = 0; j < n; ++j) {
      const float* __restrict src = B + (j0 + j) * ldb;
      for (int64_t k = 0; k < K; ++k) dst[k * nr + j] = src[k];
    }
  } else {
    for (int64_t k = 0; k < K; ++k) std::copy(B + k * ldb + j0, B + k * ldb + j0 + n, dst + k * nr);
  }
}

}  // namespace

void gemm_unpacked(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                   const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                   int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.f) {
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.f ? 0.f : beta * C[i * ldc + j];
    return;
  }
  const GemmUnpackedKernel& uk = active_unpacked();
  const int NR = uk.nr, MR = uk.mr;
  const int64_t strips = (N + NR - 1) / NR, row_tiles = (M + MR - 1) / MR;
  const int threads = region_threads(2.0 * M * N * K, double(1 << 20), strips * row_tiles);
  // Fewer strips than threads: each strip's rows are split into bands too.
  const int64_t bands = std::min<int64_t>(row_tiles, (threads + strips - 1) / strips);
  const int64_t a_row = trans_a ? 1 : lda, a_col = trans_a ? lda : 1;

  const auto run_task = [&](int64_t task) {
    const int64_t s = task / bands, band = task % bands;
    const int64_t j0 = s * NR, n = std::min<int64_t>(NR, N - j0);
    const int64_t i0 = row_tiles * band / bands * MR;
    const int64_t i1 = std::min(M, row_tiles * (band + 1) / bands * MR);
    const float* b = B + j0;
    int64_t ld = ldb;
    if (trans_b || n < NR) {
      thread_local std::vector<float> buffer;
      buffer.resize(size_t(K * NR));
      gather_strip(trans_b, B, ldb, K, j0, n, NR, buffer.data());
      b = buffer.data(), ld = NR;
    }
    uk.strip(i1 - i0, K, A + i0 * a_row, a_row, a_col, b, ld, C + i0 * ldc + j0, ldc, n, alpha,
             beta);
  };
  if (threads == 1) {  // no parallel region at all: for tiny products its start-up would dominate
    for (int64_t task = 0; task < strips; ++task) run_task(task);
    return;
  }
  parallel_tasks(strips * bands, threads, run_task);
}

bool gemm_unpacked_prepacked(bool trans_a, int64_t M, int64_t N, int64_t K, const float* A,
                             int64_t lda, const float* b_packed, int64_t packed_nr, float* C,
                             int64_t ldc) {
  const GemmUnpackedKernel& uk = active_unpacked();
  if (packed_nr != uk.nr || M <= 0 || N <= 0 || K <= 0) return false;
  const int NR = uk.nr;
  const int64_t strips = (N + NR - 1) / NR;
  const int threads = region_threads(2.0 * M * N * K, double(1 << 20), strips);
  const int64_t a_row = trans_a ? 1 : lda, a_col = trans_a ? lda : 1;
  // Each panel (K x NR, zero past N) is a strip as it lies: all NR values of each row readable.
  parallel_for(strips, threads, [&](int64_t s) {
    const int64_t j0 = s * NR;
    uk.strip(M, K, A, a_row, a_col, b_packed + s * K * NR, NR, C + j0, ldc,
             std::min<int64_t>(NR, N - j0), 1.f, 0.f);
  });
  return true;
}

static void gemm_unpacked_kernel(const GemmArgs& g) {
  gemm_copy_c_to_y(g);
  gemm_unpacked(g.trans_a, g.trans_b, g.M, g.N, g.K, g.alpha, g.a, g.lda, g.b, g.ldb,
                g.c ? g.beta : 0.f, g.y, g.ldy);
}

// The op table names the kernel in use; renamed whenever the ISA is forced.
static void register_gemm_unpacked() {
  gemm_op().add_alternate(Backend::cpu, active_unpacked().name, &gemm_unpacked_kernel);
}

}  // namespace hg::cpu

static const bool hg_gemm_unpacked_registered =
    (hg::cpu::on_cpu_isa_change(&hg::cpu::register_gemm_unpacked), true);
