// Bias on the CPU, for convolution and linear layers. x and dy are viewed as (outer, C, inner):
// (N, C) has inner = 1, (N, C, H, W) has inner = H*W.
//   bias_add:      y[o, c, i] = x[o, c, i] + bias[c]. inner > 1: one (o, c) row per loop
//                  iteration, a contiguous vectorized add of one scalar; inner == 1: one o per
//                  iteration, a vectorized add of the whole bias vector.
//   bias_backward: db[c] = sum over o, i of dy[o, c, i]. Each thread sums its run of rows into
//                  its own double-precision (C) partial (a float SIMD reduction per row when
//                  inner > 1, a vectorized row add when inner == 1); partials are added at the end.
// One variant each (handwritten); the vendor variant is a declared fallback: no BLAS routine
// reduces or broadcasts a bias.
// Test: PYTHONPATH=python python3 -m pytest -q tests/ops/test_conv.py -k bias

#include <algorithm>
#include <memory>

#include "../core/checks.h"
#include "cpu_kernels.h"

namespace hg::cpu {

namespace {

constexpr int64_t kParallelMin = 1 << 15;  // elements below which one thread is faster

int threads_for(int64_t n, int64_t units) {
  return int(std::max<int64_t>(1, std::min<int64_t>(n >= kParallelMin ? num_threads() : 1, units)));
}

void bias_add_kernel(const BiasAddArgs& a) {
  const int64_t C = a.C, inner = a.inner;
  const float* __restrict b = a.bias;
  if (inner == 1) {
    parallel_for(a.outer, threads_for(a.outer * C, a.outer), [&](int64_t o) {
      const float* __restrict x = a.x + o * C;
      float* __restrict y = a.y + o * C;
      for (int64_t c = 0; c < C; ++c) y[c] = x[c] + b[c];
    });
    return;
  }
  const int64_t rows = a.outer * C;
  parallel_for(rows, threads_for(rows * inner, rows), [&](int64_t row) {
    const float bv = b[row % C];
    const float* __restrict x = a.x + row * inner;
    float* __restrict y = a.y + row * inner;
    for (int64_t i = 0; i < inner; ++i) y[i] = x[i] + bv;
  });
}

void bias_backward_kernel(const BiasBackwardArgs& a) {
  const int64_t C = a.C, inner = a.inner, rows = a.outer * C;
  const int T = threads_for(rows * inner, inner == 1 ? a.outer : rows);
  // A fixed split into T parts (claimed by whichever thread is free), one partial sum each, added
  // in part order: the result depends on T only.
  std::unique_ptr<double[]> partial(new double[std::max<int64_t>(1, C * T)]);
  const int64_t units = inner == 1 ? a.outer : rows;
  parallel_tasks(T, T, [&](int64_t t) {
    double* __restrict acc = partial.get() + t * C;
    for (int64_t c = 0; c < C; ++c) acc[c] = 0.0;
    const int64_t u0 = units * t / T, u1 = units * (t + 1) / T;
    if (inner == 1) {
      for (int64_t o = u0; o < u1; ++o) {
        const float* __restrict d = a.dy + o * C;
        for (int64_t c = 0; c < C; ++c) acc[c] += d[c];
      }
    } else {
      for (int64_t row = u0; row < u1; ++row) {
        const float* __restrict d = a.dy + row * inner;
        float sum = 0.f;
#pragma omp simd reduction(+ : sum)
        for (int64_t i = 0; i < inner; ++i) sum += d[i];
        acc[row % C] += sum;
      }
    }
  });
  for (int64_t c = 0; c < C; ++c) {
    double sum = 0.0;
    for (int t = 0; t < T; ++t) sum += partial[t * C + c];
    a.db[c] = float(sum);
  }
}

}  // namespace

}  // namespace hg::cpu

HG_REGISTER_KERNEL(bias_add_op, cpu, handwritten, "cpu.bias_add", &hg::cpu::bias_add_kernel);
HG_REGISTER_KERNEL(bias_backward_op, cpu, handwritten, "cpu.bias_backward_reduce",
                   &hg::cpu::bias_backward_kernel);
