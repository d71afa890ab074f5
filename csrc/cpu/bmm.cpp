// CPU batched GEMM, y[i] = alpha * op(a[i]) @ op(b[i]) over a leading batch axis, and the
// gradient-clipping helpers (sum of squares per tensor, in-place scale).
//
//   bmm handwritten   the handwritten GEMM (gemm.cpp) per batch entry: with at least as many
//                     entries as threads, entries split over the threads (each GEMM on one
//                     thread); otherwise one entry after another, each GEMM threaded
//   bmm vendor        OpenBLAS sgemm per batch entry (it has no strided-batched call)
//   sum_squares       sum of x^2 in double over fixed blocks, summed in block order
//   scale_            x *= alpha (no BLAS here: sscal would bring OpenBLAS's thread pool in)
// Test: PYTHONPATH=python python3 -m pytest -q tests/ops/test_bmm.py
#include <algorithm>
#include <vector>

#include "../core/checks.h"
#include "cpu_kernels.h"

namespace hg::cpu {
namespace {

constexpr int64_t kParallelMin = 1 << 15;
constexpr int64_t kSumBlock = 8192;

template <class Gemm>
void bmm_each(const BmmArgs& g, Gemm gemm, bool parallel_batches) {
  const int64_t sa = g.M * g.K, sb = g.K * g.N, sy = g.M * g.N;
  const int64_t lda = g.trans_a ? g.M : g.K, ldb = g.trans_b ? g.K : g.N;
#pragma omp parallel for schedule(dynamic, 1) num_threads(num_threads()) if (parallel_batches)
  for (int64_t i = 0; i < g.batch; ++i)
    gemm(g.trans_a, g.trans_b, g.M, g.N, g.K, g.alpha, g.a + i * sa, lda, g.b + i * sb, ldb, 0.f,
         g.y + i * sy, g.N);
}

void bmm_kernel(const BmmArgs& g) {
  const bool per_thread = num_threads() > 1 && g.batch >= num_threads() &&
                          double(g.batch) * double(g.M * g.N) * double(g.K) > double(kParallelMin);
  bmm_each(g, &gemm_handwritten, per_thread);
}

void bmm_vendor_kernel(const BmmArgs& g) { bmm_each(g, &gemm_blas, false); }

void sum_squares_kernel(const SumSquaresArgs& a) {
  const int64_t blocks = (a.n + kSumBlock - 1) / kSumBlock;
  std::vector<double> part(static_cast<size_t>(blocks));
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (a.n > kParallelMin)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t end = std::min(a.n, (b + 1) * kSumBlock);
    double acc = 0.0;
#pragma omp simd reduction(+ : acc)
    for (int64_t i = b * kSumBlock; i < end; ++i) acc += double(a.x[i]) * double(a.x[i]);
    part[size_t(b)] = acc;
  }
  double total = 0.0;
  for (double p : part) total += p;
  *a.out = float(total);
}

void scale_kernel(const ScaleArgs& a) {
  float* __restrict x = a.x;
  const float alpha = a.alpha;
#pragma omp parallel for simd schedule(static) num_threads(num_threads()) if (a.n > kParallelMin)
  for (int64_t i = 0; i < a.n; ++i) x[i] *= alpha;
}

}  // namespace
}  // namespace hg::cpu

HG_REGISTER_KERNEL(bmm_op, cpu, handwritten, "cpu.bmm_gemm_packed", &hg::cpu::bmm_kernel);
HG_REGISTER_KERNEL(bmm_op, cpu, vendor, "cpu.openblas_sgemm_per_batch", &hg::cpu::bmm_vendor_kernel);
HG_REGISTER_KERNEL(sum_squares_op, cpu, handwritten, "cpu.sum_squares_blocked",
                   &hg::cpu::sum_squares_kernel);
HG_REGISTER_KERNEL(scale_op, cpu, handwritten, "cpu.scale", &hg::cpu::scale_kernel);
