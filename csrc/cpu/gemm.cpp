// CPU handwritten SGEMM: C = alpha * op(A) @ op(B) + beta * C, row-major, BLAS semantics
// (beta == 0 never reads C; alpha == 0 or K == 0 never reads A or B).
//
// GotoBLAS/BLIS blocking around a register-blocked micro-kernel (gemm_microkernel.h). Threads
// (hg::cpu::num_threads()) split C into a grid of bands (thread_grid); each thread packs what its
// band needs into its own buffers and never waits for another, so a thread slowed down by a
// neighbour on a shared machine delays only its own band. Per thread:
//   for jc over its columns in NC steps:
//     for pc over K in KC steps:
//       pack B panel op(B)[pc:+KC, jc:+NC] into NR-wide micro-panels (k-major)
//       for ic over its rows in MC steps:
//         pack A block op(A)[ic:+MC, pc:+KC] into MR-tall micro-panels (k-major)     (L2)
//         for jb over the panel in NC_L2 columns:   B sub-block KC x NC_L2            (L2)
//           for ir over MC in MR rows:               A micro-panel MR x KC             (L1)
//             for jr over NC_L2 in NR columns:       B micro-panels stream from L2, prefetched
//               micro-kernel: C[MR x NR] = alpha * A~ @ B~ + (pc == 0 ? beta : 1) * C
// This is BLIS's order with the roles of A and B swapped: in row-major C the vector dimension is
// N, so the broadcast side (A, MR values per k) is the one kept in L1. Packing covers all four
// transpose cases and zero-pads partial micro-panels, so the micro-kernel never branches on
// edges; a partial C tile is computed into a scratch tile and merged.
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
    } else {  // op(A)(i, k) = A[i][k]: m row streams read in step, written contiguously
      const float* __restrict src = A.p + (i0 + ir) * A.ld + p0;
      for (int64_t k = 0; k < kc; ++k) {
        float* __restrict d = dst + k * mr;
        for (int64_t i = 0; i < m; ++i) d[i] = src[i * A.ld + k];
        for (int64_t i = m; i < mr; ++i) d[i] = 0.f;
      }
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

// C[0:mc, j0:j1] (+)= alpha * packed A block @ packed B panel. The B panel is walked in
// sub-blocks of uk.nc_l2 columns that stay in L2; for each, every A micro-panel (in L1) meets all
// its B micro-panels, which stream from L2 in the order the micro-kernel prefetches them.
void macro_kernel(const GemmMicroKernel& uk, int64_t mc, int64_t j0, int64_t j1, int64_t kc,
                  const float* ap, const float* bp, float alpha, float beta, float* C, int64_t ldc) {
  const int MR = uk.mr, NR = uk.nr;
  alignas(64) float scratch[32 * 32];  // one partial tile: MR * NR <= 32 * 32
  for (int64_t jb = j0; jb < j1; jb += uk.nc_l2, bp += uk.nc_l2 * kc) {
    const int64_t jb1 = std::min<int64_t>(j1, jb + uk.nc_l2);
    for (int64_t ir = 0; ir < mc; ir += MR) {
      const int64_t m = std::min<int64_t>(MR, mc - ir);
      const float* b = bp;
      for (int64_t j = jb; j < jb1; j += NR, b += kc * NR) {
        const int64_t n = std::min<int64_t>(NR, jb1 - j);
        float* c = C + ir * ldc + j;
        if (m == MR && n == NR) {
          uk.tile(kc, ap + ir * kc, b, c, ldc, alpha, beta);
          continue;
        }
        uk.tile(kc, ap + ir * kc, b, scratch, NR, alpha, 0.f);
        for (int64_t i = 0; i < m; ++i)
          for (int64_t jj = 0; jj < n; ++jj)
            c[i * ldc + jj] = scratch[i * NR + jj] + (beta == 0.f ? 0.f : beta * c[i * ldc + jj]);
      }
    }
  }
}

// The threads' grid over C: tm row bands x tn column bands (tm * tn = threads), chosen so the
// busiest thread has the fewest micro-tiles.
void thread_grid(int threads, int64_t micro_rows, int64_t micro_cols, int* tm, int* tn) {
  int64_t best = -1;
  for (int d = 1; d <= threads; ++d) {
    if (threads % d) continue;
    const int64_t load = ((micro_rows + d - 1) / d) * ((micro_cols + threads / d - 1) / (threads / d));
    if (best < 0 || load < best) best = load, *tm = d, *tn = threads / d;
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
  const int64_t KC = std::min<int64_t>(uk.kc, K), MC = uk.mc;
  const int64_t micro_rows = (M + MR - 1) / MR, micro_cols = (N + NR - 1) / NR;
  // Below ~2^20 FLOP a parallel region costs more than it saves; inside another kernel's
  // parallel region (one image per thread) the caller's thread does it all.
  const int threads = 2.0 * M * N * K < double(1 << 20) || omp_in_parallel()
                          ? 1
                          : int(std::min<int64_t>(num_threads(), micro_rows * micro_cols));
  int tm = 1, tn = 1;
  thread_grid(threads, micro_rows, micro_cols, &tm, &tn);
  // A column band's B panel: at most NC columns, packed privately (threads share nothing).
  const int64_t NC = std::min<int64_t>(uk.nc, (micro_cols + tn - 1) / tn * NR);
  const int64_t per_thread = round_up(KC * NC, 16) + round_up(MC * KC, 16);
  thread_local PackBuffer buffer;
  float* const buf = buffer.get(threads * per_thread);
  const Operand opA{A, lda, trans_a}, opB{B, ldb, trans_b};

#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    const int t = omp_get_thread_num();
    // With fewer threads than asked for (a nested region), the first ones cover everything.
    const int nt = omp_get_num_threads(), gm = nt == threads ? tm : 1, gn = nt == threads ? tn : 1;
    if (t < gm * gn) {
      const int64_t m0 = micro_rows * (t / gn) / gm * MR, m1 = std::min(M, micro_rows * (t / gn + 1) / gm * MR);
      const int64_t n0 = micro_cols * (t % gn) / gn * NR, n1 = std::min(N, micro_cols * (t % gn + 1) / gn * NR);
      float* const bp = buf + t * per_thread;
      float* const ap = bp + round_up(KC * NC, 16);
      for (int64_t jc = n0; jc < n1; jc += NC) {
        const int64_t nc = std::min(NC, n1 - jc);
        for (int64_t pc = 0; pc < K; pc += KC) {
          const int64_t kc = std::min(KC, K - pc);
          for (int64_t q = 0; q * NR < nc; ++q)
            pack_b_panel(opB, pc, jc + q * NR, kc, std::min<int64_t>(NR, nc - q * NR), NR,
                         bp + q * kc * NR);
          for (int64_t ic = m0; ic < m1; ic += MC) {
            const int64_t mc = std::min(MC, m1 - ic);
            pack_a(opA, ic, pc, mc, kc, MR, ap);
            macro_kernel(uk, mc, jc, jc + nc, kc, ap, bp, alpha, pc == 0 ? beta : 1.f,
                         C + ic * ldc, ldc);
          }
        }
      }
    }
  }
}

GemmBlocking gemm_handwritten_blocking() {
  const GemmMicroKernel& uk = active_microkernel();
  return {uk.name, uk.mr, uk.nr, uk.kc, uk.mc, uk.nc_l2, uk.nc};
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
