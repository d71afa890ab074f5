// CPU optimizer steps, in place, one fused pass over the arrays (handwritten; BLAS has no
// optimizer routines, so the vendor variant falls back to these kernels).
//
//   sgd_step   torch.optim.SGD with dampening 0: g = grad + wd*param; with momentum
//              buf = mu*buf + g and g = nesterov ? g + mu*buf : buf; param -= lr*g.
//              One loop per case (plain, momentum, nesterov) so each body is branch-free.
//   adam_step  torch.optim.Adam (L2: g = grad + wd*param) and AdamW (decoupled: param *= 1 - lr*wd);
//              m = b1 m + (1-b1) g, v = b2 v + (1-b2) g^2,
//              param -= (lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps), bias corrections in double.
//
// Layout: flat contiguous float32 arrays of n elements; element i of every array is touched by
// one thread only (static split over OpenMP threads above kParallelMin elements), inner loops
// are `omp simd`. Results do not depend on the thread count.
//
// Test: PYTHONPATH=python python3 -m pytest -q tests/ops/test_optim.py
#include <cmath>

#include "../core/checks.h"
#include "cpu_kernels.h"

namespace hg::cpu {
namespace {

constexpr int64_t kParallelMin = 1 << 15;

void sgd_kernel(const SgdArgs& a) {
  const int64_t n = a.n;
  const float lr = a.lr, mu = a.momentum, wd = a.weight_decay;
  float* __restrict w = a.param;
  const float* __restrict g = a.grad;
  float* __restrict buf = a.momentum_buf;
  const int nt = num_threads();
  if (mu == 0.f) {
    parallel_range(n, (n > kParallelMin) ? nt : 1, [&](int64_t i_begin, int64_t i_end) {
#pragma omp simd
      for (int64_t i = i_begin; i < i_end; ++i) w[i] -= lr * (g[i] + wd * w[i]);
    }, 16);
  } else if (!a.nesterov) {
    parallel_range(n, (n > kParallelMin) ? nt : 1, [&](int64_t i_begin, int64_t i_end) {
#pragma omp simd
      for (int64_t i = i_begin; i < i_end; ++i) {
        const float b = mu * buf[i] + (g[i] + wd * w[i]);
        buf[i] = b;
        w[i] -= lr * b;
      }
    }, 16);
  } else {
    parallel_range(n, (n > kParallelMin) ? nt : 1, [&](int64_t i_begin, int64_t i_end) {
#pragma omp simd
      for (int64_t i = i_begin; i < i_end; ++i) {
        const float gi = g[i] + wd * w[i];
        const float b = mu * buf[i] + gi;
        buf[i] = b;
        w[i] -= lr * (gi + mu * b);
      }
    }, 16);
  }
}

void adam_kernel(const AdamArgs& a) {
  const int64_t n = a.n;
  const double steps = static_cast<double>(a.step);
  const double bc1 = 1.0 - std::pow(static_cast<double>(a.beta1), steps);
  const double bc2 = 1.0 - std::pow(static_cast<double>(a.beta2), steps);
  const float step_size = static_cast<float>(static_cast<double>(a.lr) / bc1);
  const float bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  const float decay = a.decoupled ? static_cast<float>(1.0 - static_cast<double>(a.lr) * a.weight_decay) : 1.f;
  const float l2 = a.decoupled ? 0.f : a.weight_decay;
  const float b1 = a.beta1, b2 = a.beta2, eps = a.eps;
  const float one_b1 = 1.f - b1, one_b2 = 1.f - b2;
  float* __restrict w = a.param;
  const float* __restrict g = a.grad;
  float* __restrict m = a.m;
  float* __restrict v = a.v;
  parallel_range(n, (n > kParallelMin) ? num_threads() : 1, [&](int64_t i_begin, int64_t i_end) {
#pragma omp simd
    for (int64_t i = i_begin; i < i_end; ++i) {
      const float gi = g[i] + l2 * w[i];
      const float mi = b1 * m[i] + one_b1 * gi;
      const float vi = b2 * v[i] + one_b2 * (gi * gi);
      m[i] = mi;
      v[i] = vi;
      const float denom = std::sqrt(vi) / bc2_sqrt + eps;
      w[i] = w[i] * decay - step_size * (mi / denom);
    }
  }, 16);
}

}  // namespace
}  // namespace hg::cpu

HG_REGISTER_KERNEL(sgd_step_op, cpu, handwritten, "cpu.sgd_fused", &hg::cpu::sgd_kernel);
HG_REGISTER_KERNEL(adam_step_op, cpu, handwritten, "cpu.adam_fused", &hg::cpu::adam_kernel);
