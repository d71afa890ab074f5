// CPU handwritten SGEMM: C = alpha * op(A) @ op(B) + beta * C, row-major, BLAS semantics
// (beta == 0 never reads C; alpha == 0 or K == 0 never reads A or B).
//
// GotoBLAS/BLIS blocking around a register-blocked micro-kernel (gemm_microkernel.h):
//   for jc over N in NC columns:        B panel  op(B)[pc:pc+KC, jc:jc+NC]  packed once, shared (L3)
//     for pc over K in KC steps:        packed cooperatively by all threads into NR-wide micro-panels
//       for ic over this thread's rows in MC steps:
//         pack A block op(A)[ic:ic+MC, pc:pc+KC] into MR-tall micro-panels (per thread, L2)
//         for jr over this thread's NR columns:   the B micro-panel stays in L1
//           for ir over MC in MR rows: micro-kernel on one MR x NR tile of C
// Packing handles all four transpose cases and zero-pads partial micro-panels, so the
// micro-kernel never branches on edges; a partial C tile is computed into a scratch tile and
// merged. Threads (hg::cpu::num_threads()) split C into a grid: rows first, then columns when M
// is too short to keep every thread busy; each thread owns its part of C for the whole call.
//
// Variants, one per instruction set, chosen at run time (isa.h; HIPGRAD_CPU_ISA or
// hipgrad._C._set_cpu_isa force one): avx512 14x32, avx2 6x16, generic 4x8. The op table reports
// the one in use as "cpu.gemm_packed_<isa>_<MR>x<NR>".
// Test: PYTHONPATH=python python3 -m pytest -q tests/ops/test_gemm.py
// Bench: PYTHONPATH=python python3 bench/bench_cpu.py
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "../core/checks.h"
#include "cpu_kernels.h"
#include "gemm_microkernel.h"
#include "isa.h"

namespace hg::cpu {

namespace {

const GemmMicroKernel& active_microkernel() {
  switch (cpu_isa()) {
    case CpuIsa::avx512: return gemm_microkernel_avx512;
    case CpuIsa::avx2: return gemm_microkernel_avx2;
    default: return gemm_microkernel_generic;
  }
}

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// A 64-byte-aligned packing buffer that only grows. The calling thread owns one
// (thread_local), so calls from several threads, or from inside another kernel's parallel
// region, never share one.
class PackBuffer {
 public:
  float* get(int64_t floats) {
    if (floats > size_) {
      data_.reset(static_cast<float*>(std::aligned_alloc(64, round_up(floats, 16) * sizeof(float))));
      if (!data_) fail(ErrorKind::memory, "gemm: cannot allocate ", floats * 4, " bytes of packing buffer");
      size_ = floats;
    }
    return data_.get();
  }

 private:
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float, Free> data_;
  int64_t size_ = 0;
};

struct Operand {
  const float* p;
  int64_t ld;
  bool trans;
};

// op(A)[i0:i0+rows, p0:p0+kc] as micro-panels of `mr` rows, each kc x mr (k-major), rows past
// `rows` zero.
void pack_a(const Operand& A, int64_t i0, int64_t p0, int64_t rows, int64_t kc, int mr,
            float* __restrict dst) {
  for (int64_t ir = 0; ir < rows; ir += mr, dst += kc * mr) {
    const int64_t m = std::min<int64_t>(mr, rows - ir);
    if (A.trans) {  // op(A)(i, k) = A[k][i]: each k contributes m contiguous values
      for (int64_t k = 0; k < kc; ++k) {
        const float* __restrict src = A.p + (p0 + k) * A.ld + i0 + ir;
        float* __restrict d = dst + k * mr;
        for (int64_t i = 0; i < m; ++i) d[i] = src[i];
        for (int64_t i = m; i < mr; ++i) d[i] = 0.f;
      }
    } else {  // op(A)(i, k) = A[i][k]: read each row contiguously, write with stride mr
      for (int64_t i = 0; i < m; ++i) {
        const float* __restrict src = A.p + (i0 + ir + i) * A.ld + p0;
        for (int64_t k = 0; k < kc; ++k) dst[k * mr + i] = src[k];
      }
      for (int64_t i = m; i < mr; ++i)
        for (int64_t k = 0; k < kc; ++k) dst[k * mr + i] = 0.f;
    }
  }
}

// One micro-panel op(B)[p0:p0+kc, j0:j0+cols] as kc x nr (k-major), columns past `cols` zero.
void pack_b_panel(const Operand& B, int64_t p0, int64_t j0, int64_t kc, int64_t cols, int nr,
                  float* __restrict dst) {
  if (B.trans) {  // op(B)(k, j) = B[j][k]: read each row of B contiguously, write with stride nr
    for (int64_t j = 0; j < cols; ++j) {
      const float* __restrict src = B.p + (j0 + j) * B.ld + p0;
      for (int64_t k = 0; k < kc; ++k) dst[k * nr + j] = src[k];
    }
    for (int64_t j = cols; j < nr; ++j)
      for (int64_t k = 0; k < kc; ++k) dst[k * nr + j] = 0.f;
  } else {  // op(B)(k, j) = B[k][j]: each k contributes cols contiguous values
    for (int64_t k = 0; k < kc; ++k) {
      const float* __restrict src = B.p + (p0 + k) * B.ld + j0;
      float* __restrict d = dst + k * nr;
      for (int64_t j = 0; j < cols; ++j) d[j] = src[j];
      for (int64_t j = cols; j < nr; ++j) d[j] = 0.f;
    }
  }
}

// C = beta * C over M x N (the whole product when alpha == 0 or K == 0).
void scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    float* c = C + i * ldc;
    if (beta == 0.f) std::fill(c, c + N, 0.f);
    else for (int64_t j = 0; j < N; ++j) c[j] *= beta;
  }
}

// C[ic:ic+mc, j0:j1] (+)= alpha * packed A block @ packed B panel, tile by tile: each B
// micro-panel stays in L1 while the A block's micro-panels stream past it from L2.
void macro_kernel(const GemmMicroKernel& uk, int64_t mc, int64_t j0, int64_t j1, int64_t kc,
                  const float* ap, const float* bp, float alpha, float beta, float* C, int64_t ldc) {
  const int MR = uk.mr, NR = uk.nr;
  alignas(64) float scratch[32 * 32];  // one partial tile: MR * NR <= 32 * 32
  for (int64_t j = j0; j < j1; j += NR, bp += kc * NR) {
    const int64_t n = std::min<int64_t>(NR, j1 - j);
    for (int64_t ir = 0; ir < mc; ir += MR) {
      const int64_t m = std::min<int64_t>(MR, mc - ir);
      float* c = C + ir * ldc + j;
      if (m == MR && n == NR) {
        uk.tile(kc, ap + ir * kc, bp, c, ldc, alpha, beta);
        continue;
      }
      uk.tile(kc, ap + ir * kc, bp, scratch, NR, alpha, 0.f);
      for (int64_t i = 0; i < m; ++i)
        for (int64_t jj = 0; jj < n; ++jj)
          c[i * ldc + jj] = scratch[i * NR + jj] + (beta == 0.f ? 0.f : beta * c[i * ldc + jj]);
    }
  }
}

}  // namespace

void gemm_handwritten(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                      const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                      float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.f) return scale_c(M, N, beta, C, ldc);

  const GemmMicroKernel& uk = active_microkernel();
  const int MR = uk.mr, NR = uk.nr;
  static const int64_t TUNE_KC = getenv("TKC") ? atoi(getenv("TKC")) : uk.kc;  // TUNING-ONLY
  static const int64_t TUNE_MC = getenv("TMC") ? atoi(getenv("TMC")) : uk.mc;  // TUNING-ONLY
  static const int64_t TUNE_NC = getenv("TNC") ? atoi(getenv("TNC")) : uk.nc;  // TUNING-ONLY
  const int64_t KC = std::min<int64_t>(TUNE_KC, K);
  const int64_t NC = std::min<int64_t>(TUNE_NC, (N + NR - 1) / NR * NR);
  const int64_t MC = std::max<int64_t>(MR, TUNE_MC / MR * MR);
  // Work units of one (jc, pc) step: MC-row blocks of C, each cut into `splits` column ranges
  // when there are too few row blocks to keep every thread busy.
  const int64_t row_blocks = (M + MC - 1) / MC;
  const int64_t panels_max = NC / NR;
  const int64_t splits = std::min<int64_t>(panels_max, (2 * num_threads() + row_blocks - 1) / row_blocks);
  // Below ~2^20 FLOP a parallel region costs more than it saves.
  const int threads = 2.0 * M * N * K < double(1 << 20)
                          ? 1
                          : int(std::min<int64_t>(num_threads(), row_blocks * splits));
  const Operand opA{A, lda, trans_a}, opB{B, ldb, trans_b};

  // The shared B panel, then one A block per thread (each a multiple of 16 floats: aligned).
  thread_local PackBuffer buffer;
  float* const bp = buffer.get(round_up(KC * NC, 16) + threads * round_up(MC * KC, 16));

#pragma omp parallel num_threads(threads)
  {
    float* const ap = bp + round_up(KC * NC, 16) + omp_get_thread_num() * round_up(MC * KC, 16);
    for (int64_t jc = 0; jc < N; jc += NC) {
      const int64_t nc = std::min(NC, N - jc);
      const int64_t panels = (nc + NR - 1) / NR;
      for (int64_t pc = 0; pc < K; pc += KC) {
        const int64_t kc = std::min(KC, K - pc);
        const float beta_k = pc == 0 ? beta : 1.f;
#pragma omp for schedule(static)
        for (int64_t q = 0; q < panels; ++q)
          pack_b_panel(opB, pc, jc + q * NR, kc, std::min<int64_t>(NR, nc - q * NR), NR,
                       bp + q * kc * NR);
        // (implicit barrier: the B panel is packed; the one after the next loop guards its reuse)
#pragma omp for schedule(dynamic, 1)
        for (int64_t u = 0; u < row_blocks * splits; ++u) {
          const int64_t ic = u / splits * MC, mc = std::min(MC, M - ic);
          const int64_t q0 = panels * (u % splits) / splits, q1 = panels * (u % splits + 1) / splits;
          if (q0 == q1) continue;
          pack_a(opA, ic, pc, mc, kc, MR, ap);
          macro_kernel(uk, mc, jc + q0 * NR, std::min(jc + q1 * NR, N), kc, ap, bp + q0 * kc * NR,
                       alpha, beta_k, C + ic * ldc, ldc);
        }
      }
    }
  }
}

GemmBlocking gemm_handwritten_blocking() {
  const GemmMicroKernel& uk = active_microkernel();
  return {uk.name, uk.mr, uk.nr, uk.mc, uk.kc, uk.nc};
}

static void gemm_handwritten_kernel(const GemmArgs& g) {
  if (g.c) {
    for (int64_t i = 0; i < g.M; ++i) std::copy(g.c + i * g.N, g.c + (i + 1) * g.N, g.y + i * g.ldy);
  }
  gemm_handwritten(g.trans_a, g.trans_b, g.M, g.N, g.K, g.alpha, g.a, g.lda, g.b, g.ldb,
                   g.c ? g.beta : 0.f, g.y, g.ldy);
}

// The op table names the variant in use; re-registered whenever the ISA is forced.
static void register_gemm_handwritten() {
  gemm_op().add(Backend::cpu, Variant::handwritten, active_microkernel().name,
                &gemm_handwritten_kernel);
}

}  // namespace hg::cpu

HG_REGISTER_KERNEL(gemm_op, cpu, handwritten, hg::cpu::active_microkernel().name,
                   &hg::cpu::gemm_handwritten_kernel);
static const bool hg_gemm_follows_isa =
    (hg::cpu::on_cpu_isa_change(&hg::cpu::register_gemm_handwritten), true);
