// CPU layer norm over the last axis (handwritten; no BLAS routine normalizes, so the vendor
// variant falls back to these kernels).
//
//   layer_norm           per row: mean and the two-pass biased variance (double), rstd =
//                        1 / sqrt(var + eps), y = (x - mean) * rstd * weight + bias
//   layer_norm_backward  per row: g = dy * weight, xhat = (x - mean) * rstd,
//                        dx = rstd * (g - mean(g) - xhat * mean(g * xhat));
//                        dweight = sum over rows of dy * xhat, dbias = sum of dy
//
// Rows split over the OpenMP threads (above kParallelMin elements). dweight / dbias come from
// double partials over fixed blocks of kRowsPerPartial rows, summed in block order: the same bits
// for any thread count.
// Test: PYTHONPATH=python python3 -m pytest -q tests/ops/test_layer_norm.py
#include <algorithm>
#include <cmath>
#include <vector>

#include "../core/checks.h"
#include "cpu_kernels.h"

namespace hg::cpu {
namespace {

constexpr int64_t kParallelMin = 1 << 14;
constexpr int64_t kRowsPerPartial = 32;

void layer_norm_kernel(const LayerNormArgs& a) {
  const int64_t C = a.C;
  const float* __restrict w = a.weight;
  const float* __restrict b = a.bias;
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (a.rows * C > kParallelMin)
  for (int64_t r = 0; r < a.rows; ++r) {
    const float* __restrict x = a.x + r * C;
    float* __restrict y = a.y + r * C;
    double sum = 0.0;
#pragma omp simd reduction(+ : sum)
    for (int64_t c = 0; c < C; ++c) sum += x[c];
    const double mean = sum / double(C);
    double sq = 0.0;
#pragma omp simd reduction(+ : sq)
    for (int64_t c = 0; c < C; ++c) {
      const double d = x[c] - mean;
      sq += d * d;
    }
    const float rstd = float(1.0 / std::sqrt(sq / double(C) + double(a.eps)));
    const float m = float(mean);
    a.mean[r] = m;
    a.rstd[r] = rstd;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      const float xhat = (x[c] - m) * rstd;
      y[c] = xhat * (w ? w[c] : 1.f) + (b ? b[c] : 0.f);
    }
  }
}

void layer_norm_backward_kernel(const LayerNormBackwardArgs& a) {
  const int64_t C = a.C, rows = a.rows;
  const int64_t blocks = (rows + kRowsPerPartial - 1) / kRowsPerPartial;
  std::vector<double> dw_part(size_t(blocks * C)), db_part(size_t(blocks * C));
  const float* __restrict w = a.weight;
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (rows * C > kParallelMin)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    double* __restrict dwp = dw_part.data() + blk * C;
    double* __restrict dbp = db_part.data() + blk * C;
    std::fill(dwp, dwp + C, 0.0);
    std::fill(dbp, dbp + C, 0.0);
    const int64_t end = std::min(rows, (blk + 1) * kRowsPerPartial);
    for (int64_t r = blk * kRowsPerPartial; r < end; ++r) {
      const float* __restrict x = a.x + r * C;
      const float* __restrict dy = a.dy + r * C;
      float* __restrict dx = a.dx + r * C;
      const float m = a.mean[r], rstd = a.rstd[r];
      float sg = 0.f, sgx = 0.f;
#pragma omp simd reduction(+ : sg, sgx)
      for (int64_t c = 0; c < C; ++c) {
        const float xhat = (x[c] - m) * rstd;
        const float g = dy[c] * (w ? w[c] : 1.f);
        sg += g;
        sgx += g * xhat;
        dwp[c] += double(dy[c] * xhat);
        dbp[c] += double(dy[c]);
      }
      const float mg = sg / float(C), mgx = sgx / float(C);
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) {
        const float xhat = (x[c] - m) * rstd;
        dx[c] = rstd * (dy[c] * (w ? w[c] : 1.f) - mg - xhat * mgx);
      }
    }
  }
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (blocks * C > kParallelMin)
  for (int64_t c = 0; c < C; ++c) {
    double sw = 0.0, sb = 0.0;
    for (int64_t blk = 0; blk < blocks; ++blk) {
      sw += dw_part[size_t(blk * C + c)];
      sb += db_part[size_t(blk * C + c)];
    }
    a.dweight[c] = float(sw);
    a.dbias[c] = float(sb);
  }
}

}  // namespace
}  // namespace hg::cpu

HG_REGISTER_KERNEL(layer_norm_op, cpu, handwritten, "cpu.layer_norm_rows", &hg::cpu::layer_norm_kernel);
HG_REGISTER_KERNEL(layer_norm_backward_op, cpu, handwritten, "cpu.layer_norm_backward_rows",
                   &hg::cpu::layer_norm_backward_kernel);
