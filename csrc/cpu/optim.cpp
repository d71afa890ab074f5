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
// one thread only (static split over the pool's threads above kParallelMin elements), inner loops
// are `omp simd`. Results do not depend on the thread count.
//
// Test: PYTHONPATH=python python3 -m pytest -q tests/ops/test_optim.py
#include <cmath>

#include "../core/checks.h"
#include "cpu_kernels.h"

namespace hg::cpu {
namespace {

constexpr int64_t kParallelMin = 1 << 15;

// The loop bodies take their arrays as __restrict parameters: inside a lambda the captured
// pointers lose that promise and the loops stop vectorizing.
void sgd_plain(float* __restrict w, const float* __restrict g, float lr, float wd, int64_t b,
               int64_t e) {
#pragma omp simd
  for (int64_t i = b; i < e; ++i) w[i] -= lr * (g[i] + wd * w[i]);
}

void sgd_momentum(float* __restrict w, const float* __restrict g, float* __restrict buf, float lr,
                  float mu, float wd, bool nesterov, int64_t b, int64_t e) {
  if (!nesterov) {
#pragma omp simd
    for (int64_t i = b; i < e; ++i) {
      const float m = mu * buf[i] + (g[i] + wd * w[i]);
      buf[i] = m;
      w[i] -= lr * m;
    }
    return;
  }
#pragma omp simd
  for (int64_t i = b; i < e; ++i) {
    const float gi = g[i] + wd * w[i];
    const float m = mu * buf[i] + gi;
    buf[i] = m;
    w[i] -= lr * (gi + mu * m);
  }
}

void sgd_kernel(const SgdArgs& a) {
  const int64_t n = a.n;
  const float lr = a.lr, mu = a.momentum, wd = a.weight_decay;
  const bool nesterov = a.nesterov;
  float* w = a.param;
  const float* g = a.grad;
  float* buf = a.momentum_buf;
  const int threads = (n > kParallelMin) ? num_threads() : 1;
  if (mu == 0.f) {
    parallel_range(n, threads, [=](int64_t b, int64_t e) { sgd_plain(w, g, lr, wd, b, e); }, 16);
  } else {
    parallel_range(n, threads, [=](int64_t b, int64_t e) {
      sgd_momentum(w, g, buf, lr, mu, wd, nesterov, b, e);
    }, 16);
  }
}

struct AdamConsts {
  float step_size, bc2_sqrt, decay, l2, b1, b2, eps, one_b1, one_b2;
};

void adam_range(float* __restrict w, const float* __restrict g, float* __restrict m,
                float* __restrict v, const AdamConsts c, int64_t b, int64_t e) {
#pragma omp simd
  for (int64_t i = b; i < e; ++i) {
    const float gi = g[i] + c.l2 * w[i];
    const float mi = c.b1 * m[i] + c.one_b1 * gi;
    const float vi = c.b2 * v[i] + c.one_b2 * (gi * gi);
    m[i] = mi;
    v[i] = vi;
    const float denom = std::sqrt(vi) / c.bc2_sqrt + c.eps;
    w[i] = w[i] * c.decay - c.step_size * (mi / denom);
  }
}

void adam_kernel(const AdamArgs& a) {
  const int64_t n = a.n;
  const double steps = static_cast<double>(a.step);
  const double bc1 = 1.0 - std::pow(static_cast<double>(a.beta1), steps);
  const double bc2 = 1.0 - std::pow(static_cast<double>(a.beta2), steps);
  AdamConsts c;
  c.step_size = static_cast<float>(static_cast<double>(a.lr) / bc1);
  c.bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  c.decay = a.decoupled ? static_cast<float>(1.0 - static_cast<double>(a.lr) * a.weight_decay) : 1.f;
  c.l2 = a.decoupled ? 0.f : a.weight_decay;
  c.b1 = a.beta1;
  c.b2 = a.beta2;
  c.eps = a.eps;
  c.one_b1 = 1.f - a.beta1;
  c.one_b2 = 1.f - a.beta2;
  float* w = a.param;
  const float* g = a.grad;
  float* m = a.m;
  float* v = a.v;
  parallel_range(n, (n > kParallelMin) ? num_threads() : 1, [=](int64_t b, int64_t e) {
    adam_range(w, g, m, v, c, b, e);
  }, 16);
}

}  // namespace
}  // namespace hg::cpu

HG_REGISTER_KERNEL(sgd_step_op, cpu, handwritten, "cpu.sgd_fused", &hg::cpu::sgd_kernel);
HG_REGISTER_KERNEL(adam_step_op, cpu, handwritten, "cpu.adam_fused", &hg::cpu::adam_kernel);
