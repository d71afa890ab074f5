// CPU handwritten SGEMM: C = alpha * op(A) @ op(B) + beta * C, row-major, BLAS semantics
// (beta == 0 never reads C; alpha == 0 or K == 0 never reads A or B).
//
// GotoBLAS/BLIS blocking around a register-blocked micro-kernel (gemm_microkernel.h). C is split
// into a grid of cells, 2-4 per thread (thread_grid), claimed one at a time from
// hipgrad's pool (parallel.h); each cell is packed into its claiming thread's own buffers and no
// thread waits for another, so a thread slowed down by a neighbour on a shared machine leaves its
// next cell to the others. Per cell:
//   for jc over its columns in NC steps:
//     for pc over K in KC steps:
//       pack B panel op(B)[pc:+KC, jc:+NC] into NR-wide micro-panels (k-major)
//       for ic over its rows in MC steps:
//         pack A block op(A)[ic:+MC, pc:+KC] into MR-tall micro-panels (k-major)     (L2)
//         for jb over the panel in NC_L2 columns:   B sub-block KC x NC_L2            (L2)
//           for ir over MC in MR rows:               A micro-panel MR x KC             (L1)
//             for jr over NC_L2 in NR columns:       B micro-panels stream from L2, prefetched
//               micro-kernel: C[MR x NR] = alpha * A~ @ B~ + (pc == 0 ? beta : 1) * C
//             last K block, with an epilogue (gemm_handwritten_epilogue): the MR x NC_L2 strip
//             of C just written (in L1) = act(strip + bias)
// This is BLIS's order with the roles of A and B swapped: in row-major C the vector dimension is
// N, so the broadcast side (A, MR values per k) is the one kept in L1. Packing covers all four
// transpose cases and zero-pads partial micro-panels, so the micro-kernel never branches on
// edges; a partial C tile is computed into a scratch tile and merged. The transposing pack (A
// not transposed, B transposed: x @ W^T) is the ISA's own where it has one (AVX-512: 16 x 16
// register transposes, gemm_avx512.cpp), else the SSE 4 x 4 one here. A B packed beforehand
// (gemm_pack_b: whole-K panels, the layout of pack_linear_weight; the engine's frozen weights)
// skips the B packing, and the threads then split rows only.
//
// Kernels, one per instruction set, chosen at run time (isa.h; HIPGRAD_CPU_ISA or
// hipgrad._C._set_cpu_isa force one): avx512 14x32, avx2 6x16, generic 4x8. The op table reports
// the one in use as "cpu.gemm_packed_<isa>_<MR>x<NR>" (the default handwritten kernel).
// Alternate (impl="auto" times it; dispatch.h): the same loops with the deep blocking
// (deep_blocking: KC doubled, MC and NC_L2 shrunk to keep L2 shared), reported as
// "cpu.gemm_packed_<isa>_<MR>x<NR>_kc<KC>". The unpacked small-problem alternate is
// gemm_unpacked.cpp.
// Test: PYTHONPATH=python python3 -m pytest -q tests/ops/test_gemm.py
// Bench: PYTHONPATH=python python3 bench/bench_cpu.py
#if defined(__SSE2__)
#include <xmmintrin.h>
#endif

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

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

// Packing writes one micro-panel: w values per k step, k-major (dst[k * w + i]), i >= m zero
// (a partial panel is cleared first, in one pass).
// The source holds the m values of step k either contiguously (row k of a row-major matrix)...
void pack_contiguous(const float* __restrict src, int64_t ld, int64_t m, int64_t kc, int w,
                     float* __restrict dst) {
  if (m < w) std::memset(dst, 0, sizeof(float) * kc * w);
  for (int64_t k = 0; k < kc; ++k, src += ld, dst += w)
    for (int64_t i = 0; i < m; ++i) dst[i] = src[i];
}

// ...or strided (column k: src[i * ld + k]). Then 4 x 4 blocks are loaded as rows and
// transposed in registers (SSE, part of every x86-64), so both reads and writes stay contiguous.
void pack_strided(const float* __restrict src, int64_t ld, int64_t m, int64_t kc, int w,
                  float* __restrict dst) {
  if (m < w) std::memset(dst, 0, sizeof(float) * kc * w);
  int64_t k = 0;
#if defined(__SSE2__)
  const int64_t m4 = m / 4 * 4;
  for (; k + 4 <= kc; k += 4) {
    float* d = dst + k * w;
    for (int64_t i = 0; i < m4; i += 4) {
      const float* s = src + i * ld + k;
      __m128 r0 = _mm_loadu_ps(s), r1 = _mm_loadu_ps(s + ld);
      __m128 r2 = _mm_loadu_ps(s + 2 * ld), r3 = _mm_loadu_ps(s + 3 * ld);
      _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
      _mm_storeu_ps(d + i, r0);
      _mm_storeu_ps(d + w + i, r1);
      _mm_storeu_ps(d + 2 * w + i, r2);
      _mm_storeu_ps(d + 3 * w + i, r3);
    }
    for (int64_t kk = 0; kk < 4; ++kk)
      for (int64_t i = m4; i < m; ++i) d[kk * w + i] = src[i * ld + k + kk];
  }
#endif
  for (; k < kc; ++k)
    for (int64_t i = 0; i < m; ++i) dst[k * w + i] = src[i * ld + k];
}

// The transposing pack of the micro-kernel's ISA when it has one (gemm_microkernel.h).
GemmPackFn strided_packer(const GemmMicroKernel& uk) {
  return uk.pack_strided ? uk.pack_strided : &pack_strided;
}

// op(A)[i0:i0+rows, p0:p0+kc] as micro-panels of `mr` rows (each kc x mr), rows past `rows` zero.
void pack_a(const Operand& A, int64_t i0, int64_t p0, int64_t rows, int64_t kc, int mr,
            GemmPackFn strided, float* __restrict dst) {
  for (int64_t ir = 0; ir < rows; ir += mr, dst += kc * mr) {
    const int64_t m = std::min<int64_t>(mr, rows - ir);
    if (A.trans)  // op(A)(i, k) = A[k][i]
      pack_contiguous(A.p + p0 * A.ld + i0 + ir, A.ld, m, kc, mr, dst);
    else  // op(A)(i, k) = A[i][k]
      strided(A.p + (i0 + ir) * A.ld + p0, A.ld, m, kc, mr, dst);
  }
}

// One micro-panel op(B)[p0:p0+kc, j0:j0+cols] (kc x nr), columns past `cols` zero.
void pack_b_panel(const Operand& B, int64_t p0, int64_t j0, int64_t kc, int64_t cols, int nr,
                  GemmPackFn strided, float* __restrict dst) {
  if (B.trans)  // op(B)(k, j) = B[j][k]
    strided(B.p + j0 * B.ld + p0, B.ld, cols, kc, nr, dst);
  else  // op(B)(k, j) = B[k][j]
    pack_contiguous(B.p + p0 * B.ld + j0, B.ld, cols, kc, nr, dst);
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
// `ep` (last K block only): applied to each MR-row strip of micro-tiles (MR x nc_l2 at most) right
// after the strip is stored; i0 is C's row.
// `b_step`: floats from one B micro-panel to the next (kc * NR when packed per call; K * NR for
// a prepacked weight, whose panels hold all of K).
void macro_kernel(const GemmMicroKernel& uk, int64_t mc, int64_t j0, int64_t j1, int64_t kc,
                  const float* ap, const float* bp, int64_t b_step, float alpha, float beta,
                  float* C, int64_t ldc, const GemmEpilogue* ep, int64_t i0) {
  const int MR = uk.mr, NR = uk.nr;
  alignas(64) float scratch[32 * 32];  // one partial tile: MR * NR <= 32 * 32
  for (int64_t jb = j0; jb < j1; jb += uk.nc_l2, bp += uk.nc_l2 / NR * b_step) {
    const int64_t jb1 = std::min<int64_t>(j1, jb + uk.nc_l2);
    for (int64_t ir = 0; ir < mc; ir += MR) {
      const int64_t m = std::min<int64_t>(MR, mc - ir);
      const float* b = bp;
      for (int64_t j = jb; j < jb1; j += NR, b += b_step) {
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
      // The MR x (jb1 - jb) strip of C just finished is still in L1: long rows vectorize better
      // and amortize the call better than one tile at a time.
      if (ep) apply_epilogue(*ep, i0 + ir, jb, m, jb1 - jb, C + ir * ldc + jb, ldc);
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

// The active micro-kernel with the deep blocking: twice the depth per pass (half as many passes
// over C, each A micro-panel still in L1), a narrower B sub-block and a shorter A block so both
// still share L2. Named "<packed name>_kc<KC>".
GemmMicroKernel deep_blocking() {
  static std::string names[3];
  GemmMicroKernel uk = active_microkernel();
  uk.kc *= 2;
  uk.mc = std::max(uk.mr, uk.mc * 2 / 3 / uk.mr * uk.mr);
  uk.nc_l2 = std::max(uk.nr, uk.nc_l2 / 2 / uk.nr * uk.nr);
  std::string& name = names[int(cpu_isa())];
  if (name.empty()) name = std::string(uk.name) + "_kc" + std::to_string(uk.kc);
  uk.name = name.c_str();
  return uk;
}

// `b_packed`: op(B) already packed as pack_linear_weight lays it out (ceil(N / NR) panels of
// K x NR, gemm_pack_b), so no B packing at all; B and ldb are then unused.
void gemm_packed(const GemmMicroKernel& uk, bool trans_a, bool trans_b, int64_t M, int64_t N,
                 int64_t K, float alpha, const float* A, int64_t lda, const float* B, int64_t ldb,
                 float beta, float* C, int64_t ldc, const GemmEpilogue* ep = nullptr,
                 const float* b_packed = nullptr) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.f) {
    scale_c(M, N, beta, C, ldc);
    if (ep) apply_epilogue(*ep, 0, 0, M, N, C, ldc);
    return;
  }

  const int MR = uk.mr, NR = uk.nr;
  const int64_t KC = std::min<int64_t>(uk.kc, K), MC = uk.mc;
  const int64_t micro_rows = (M + MR - 1) / MR, micro_cols = (N + NR - 1) / NR;
  // Below ~2^20 FLOP a parallel region costs more than it saves; inside another kernel's
  // parallel region (one image per thread) the caller's thread does it all.
  const int threads = region_threads(2.0 * M * N * K, double(1 << 20), micro_rows * micro_cols);
  // Cells claimed as they come: a thread slowed down by a neighbour leaves its next cell to the
  // others. Twice as many as threads, four times for large products (a cell's packing is then
  // small against its arithmetic, and a late thread's last cell is a shorter tail).
  const int per_thread_cells = 2.0 * M * N * K >= double(1 << 28) ? 4 : 2;
  const int cells = threads > 1
                        ? int(std::min<int64_t>(per_thread_cells * threads, micro_rows * micro_cols))
                        : 1;
  int tm = 1, tn = 1;
  if (b_packed && micro_rows >= 2 * cells)
    tm = cells;  // B costs nothing to share: split rows, so each cell packs only its A rows
  else
    thread_grid(cells, micro_rows, micro_cols, &tm, &tn);
  // A column band's B panel: at most NC columns, packed privately (threads share nothing).
  const int64_t NC = std::min<int64_t>(uk.nc, (micro_cols + tn - 1) / tn * NR);
  const int64_t per_thread = (b_packed ? 0 : round_up(KC * NC, 16)) + round_up(MC * KC, 16);
  thread_local PackBuffer buffer;
  float* const buf = buffer.get(threads * per_thread);
  const Operand opA{A, lda, trans_a}, opB{B, ldb, trans_b};
  const GemmPackFn strided = strided_packer(uk);

  parallel_tasks(tm * tn, threads, [&](int64_t cell) {
    const int64_t gm = tm, gn = tn, cm = cell / gn, cn = cell % gn;
    const int64_t m0 = micro_rows * cm / gm * MR, m1 = std::min(M, micro_rows * (cm + 1) / gm * MR);
    const int64_t n0 = micro_cols * cn / gn * NR, n1 = std::min(N, micro_cols * (cn + 1) / gn * NR);
    float* const own_b = buf + parallel_slot() * per_thread;
    float* const ap = own_b + (b_packed ? 0 : round_up(KC * NC, 16));
    for (int64_t jc = n0; jc < n1; jc += NC) {
      const int64_t nc = std::min(NC, n1 - jc);
      for (int64_t pc = 0; pc < K; pc += KC) {
        const int64_t kc = std::min(KC, K - pc);
        const float* bp = own_b;
        int64_t b_step = kc * NR;
        if (b_packed) {
          bp = b_packed + jc / NR * K * NR + pc * NR, b_step = K * NR;
        } else {
          for (int64_t q = 0; q * NR < nc; ++q)
            pack_b_panel(opB, pc, jc + q * NR, kc, std::min<int64_t>(NR, nc - q * NR), NR,
                         strided, own_b + q * kc * NR);
        }
        for (int64_t ic = m0; ic < m1; ic += MC) {
          const int64_t mc = std::min(MC, m1 - ic);
          pack_a(opA, ic, pc, mc, kc, MR, strided, ap);
          macro_kernel(uk, mc, jc, jc + nc, kc, ap, bp, b_step, alpha, pc == 0 ? beta : 1.f,
                       C + ic * ldc, ldc, pc + kc == K ? ep : nullptr, ic);
        }
      }
    }
  });
}

void gemm_handwritten(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                      const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                      float* C, int64_t ldc) {
  gemm_packed(active_microkernel(), trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm_handwritten_epilogue(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                               const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                               int64_t ldc, const GemmEpilogue& e, float beta) {
  gemm_packed(active_microkernel(), trans_a, trans_b, M, N, K, 1.f, A, lda, B, ldb, beta, C, ldc,
              &e);
}

void gemm_pack_b(bool trans_b, const float* B, int64_t ldb, int64_t K, int64_t N, float* packed) {
  const GemmMicroKernel& uk = active_microkernel();
  const Operand opB{B, ldb, trans_b};
  const GemmPackFn strided = strided_packer(uk);
  const int64_t panels = (N + uk.nr - 1) / uk.nr;
  parallel_for(panels, region_threads(double(panels * K), double(1 << 16), panels), [&](int64_t q) {
    pack_b_panel(opB, 0, q * uk.nr, K, std::min<int64_t>(uk.nr, N - q * uk.nr), uk.nr, strided,
                 packed + q * K * uk.nr);
  });
}

void gemm_handwritten_epilogue_packed_b(int64_t M, int64_t N, int64_t K, const float* A,
                                        int64_t lda, const float* b_packed, float* C, int64_t ldc,
                                        const GemmEpilogue& e) {
  gemm_packed(active_microkernel(), false, false, M, N, K, 1.f, A, lda, nullptr, 0, 0.f, C, ldc, &e,
              b_packed);
}

void gemm_handwritten_prepacked(bool trans_a, int64_t M, int64_t N, int64_t K, const float* A,
                                int64_t lda, const float* b_packed, float* C, int64_t ldc) {
  gemm_packed(active_microkernel(), trans_a, false, M, N, K, 1.f, A, lda, nullptr, 0, 0.f, C, ldc,
              nullptr, b_packed);
}

GemmBlocking gemm_handwritten_blocking() {
  const GemmMicroKernel& uk = active_microkernel();
  return {uk.name, uk.mr, uk.nr, uk.kc, uk.mc, uk.nc_l2, uk.nc};
}

void gemm_copy_c_to_y(const GemmArgs& g) {
  if (!g.c) return;
  for (int64_t i = 0; i < g.M; ++i) std::copy(g.c + i * g.N, g.c + (i + 1) * g.N, g.y + i * g.ldy);
}

static void gemm_handwritten_kernel(const GemmArgs& g) {
  gemm_copy_c_to_y(g);
  gemm_handwritten(g.trans_a, g.trans_b, g.M, g.N, g.K, g.alpha, g.a, g.lda, g.b, g.ldb,
                   g.c ? g.beta : 0.f, g.y, g.ldy);
}

// The alternate with the deep blocking (an auto candidate; impl="handwritten" never runs it).
static void gemm_deep_kernel(const GemmArgs& g) {
  gemm_copy_c_to_y(g);
  gemm_packed(deep_blocking(), g.trans_a, g.trans_b, g.M, g.N, g.K, g.alpha, g.a, g.lda, g.b,
              g.ldb, g.c ? g.beta : 0.f, g.y, g.ldy);
}

// The op table names the kernels in use; re-registered whenever the ISA is forced.
static void register_gemm_handwritten() {
  gemm_op().add(Backend::cpu, Variant::handwritten, active_microkernel().name,
                &gemm_handwritten_kernel);
  gemm_op().add_alternate(Backend::cpu, deep_blocking().name, &gemm_deep_kernel);
}

}  // namespace hg::cpu

static const bool hg_gemm_follows_isa =
    (hg::cpu::on_cpu_isa_change(&hg::cpu::register_gemm_handwritten), true);
