// GPU optimizer steps, in place over flat float32 arrays, PyTorch semantics (torch.optim.SGD with
// dampening 0, torch.optim.Adam / AdamW):
//   sgd_step   g = grad + wd p;  momentum != 0: buf = momentum buf + g (buf starts at zero, which
//              equals PyTorch's buf = g on the first step), g = nesterov ? g + momentum buf : buf;
//              p -= lr g
//   adam_step  decoupled (AdamW): p *= 1 - lr wd; otherwise g = grad + wd p;
//              m += (1 - beta1)(g - m)   (PyTorch's lerp);  v = beta2 v + (1 - beta2) g^2;
//              p -= (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps),  bc_k = 1 - beta_k^step.
// The bias corrections and 1 - beta are computed on the host in double and passed as float.
//
// Kernels: gpu.sgd_step_fused, gpu.adam_step_fused (handwritten, the only ones): one kernel per
// step, one grid-stride pass that reads and writes each array once; the per-element code is the
// reference itself, so there is no separate v0. No vendor library has an optimizer step.
//
// Test:  PYTHONPATH=python python3 -m pytest -q tests/ops/test_optim.py -m gpu
// Bench (one command line): PYTHONPATH=python python3 -m timeit -s "import numpy as np, hipgrad as hg"
//          -s "r = lambda: hg.tensor(np.random.randn(1 << 24).astype('f4'), device='gpu:0')"
//          -s "p, g, m, v = r(), r(), r(), r()"
//          "hg.ops.adam_step(p, g, m, v, step=1, lr=1e-3); hg.synchronize()"
#include <cmath>

#include "kernels_elementwise.h"

namespace hg::gpu {
namespace {

template <bool kMomentum>
__global__ void sgd_step_kernel(int64_t n, float* __restrict__ param, const float* __restrict__ grad,
                                float* __restrict__ buf, float lr, float momentum, float wd,
                                bool nesterov) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float p = param[i];
    float g = grad[i];
    if (wd != 0.f) g += wd * p;
    if constexpr (kMomentum) {
      const float b = momentum * buf[i] + g;
      buf[i] = b;
      g = nesterov ? g + momentum * b : b;
    }
    param[i] = p - lr * g;
  }
}

struct AdamConsts {
  float lr, beta1, beta2, one_minus_beta1, one_minus_beta2, eps, wd;
  float step_size;     // lr / bc1
  float bc2_sqrt;      // sqrt(bc2)
  float decay_factor;  // 1 - lr wd (decoupled)
  bool decoupled;
};

__global__ void adam_step_kernel(int64_t n, float* __restrict__ param, const float* __restrict__ grad,
                                 float* __restrict__ m, float* __restrict__ v, AdamConsts k) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    float p = param[i];
    float g = grad[i];
    if (k.wd != 0.f) {
      if (k.decoupled) {
        p *= k.decay_factor;
      } else {
        g += k.wd * p;
      }
    }
    // beta1 m + (1 - beta1) g, not m + (1 - beta1)(g - m): with beta1 = 0 that lerp loses g
    // to the rounding of g - m (seen on an H100: 0.5% of a step where |g| << |m|).
    const float mi = k.beta1 * m[i] + k.one_minus_beta1 * g;
    const float vi = k.beta2 * v[i] + k.one_minus_beta2 * (g * g);
    m[i] = mi;
    v[i] = vi;
    const float denom = sqrtf(vi) / k.bc2_sqrt + k.eps;
    param[i] = p - k.step_size * (mi / denom);
  }
}

void sgd_step_gpu(const SgdArgs& a) {
  if (a.n == 0) return;
  const hipStream_t st = current_stream();
  if (a.momentum != 0.f) {
    sgd_step_kernel<true><<<blocks_for(a.n), kThreads, 0, st>>>(a.n, a.param, a.grad, a.momentum_buf, a.lr,
                                                              a.momentum, a.weight_decay, a.nesterov);
  } else {
    sgd_step_kernel<false><<<blocks_for(a.n), kThreads, 0, st>>>(a.n, a.param, a.grad, nullptr, a.lr, 0.f,
                                                               a.weight_decay, false);
  }
  HG_LAUNCH_CHECK("sgd_step_kernel");
}

void adam_step_gpu(const AdamArgs& a) {
  if (a.n == 0) return;
  const double bc1 = 1.0 - std::pow(double(a.beta1), double(a.step));
  const double bc2 = 1.0 - std::pow(double(a.beta2), double(a.step));
  AdamConsts k;
  k.lr = a.lr;
  k.beta1 = a.beta1;
  k.beta2 = a.beta2;
  k.one_minus_beta1 = static_cast<float>(1.0 - double(a.beta1));
  k.one_minus_beta2 = static_cast<float>(1.0 - double(a.beta2));
  k.eps = a.eps;
  k.wd = a.weight_decay;
  k.step_size = static_cast<float>(double(a.lr) / bc1);
  k.bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  k.decay_factor = static_cast<float>(1.0 - double(a.lr) * double(a.weight_decay));
  k.decoupled = a.decoupled;
  adam_step_kernel<<<blocks_for(a.n), kThreads, 0, current_stream()>>>(a.n, a.param, a.grad, a.m, a.v, k);
  HG_LAUNCH_CHECK("adam_step_kernel");
}

}  // namespace
}  // namespace hg::gpu

HG_REGISTER_KERNEL(sgd_step_op, gpu, handwritten, "gpu.sgd_step_fused", &hg::gpu::sgd_step_gpu);
HG_REGISTER_KERNEL(adam_step_op, gpu, handwritten, "gpu.adam_step_fused", &hg::gpu::adam_step_gpu);
