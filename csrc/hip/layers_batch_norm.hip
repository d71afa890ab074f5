// GPU batch normalization over the channels of x viewed as (N, C, HW), float32, PyTorch semantics
// (gamma / beta may be absent: then 1 and 0; running stats may be absent in training):
//   forward, training  mean_c = mean of x over (N, HW); var_c = mean of (x - mean_c)^2 (two passes,
//                      no cancellation); save_mean = mean, save_invstd = 1 / sqrt(var + eps);
//                      running_mean = (1 - momentum) running_mean + momentum mean,
//                      running_var  = (1 - momentum) running_var + momentum var M / (M - 1)
//                      (M = N*HW: the unbiased variance, as PyTorch);
//   forward, eval      the running stats instead; save_mean / save_invstd get them too, so the
//                      backward can be called the same way in both modes (without running stats,
//                      eval uses the batch statistics, as PyTorch does);
//   y = (x - mean) (invstd gamma) + beta.
//   backward, training xhat = (x - mean) invstd; dbeta = sum dy, dgamma = sum dy xhat;
//                      dx = gamma invstd (dy - dbeta / M - xhat dgamma / M);
//   backward, eval     dx = gamma invstd dy (the statistics are constants); dgamma, dbeta as above.
//
// Kernels: gpu.batch_norm_two_stage, gpu.batch_norm_backward_two_stage (handwritten): the per-channel sums go through channel_sums (kernels_elementwise.h: block
// partials, then a fixed-order finalize in double -- deterministic, no atomics); the elementwise
// passes are grid-stride kernels with multiply-high index division. gpu.batch_norm_v0 and
// gpu.batch_norm_backward_v0 (reference kernels) run the sums as one thread per channel in double.
//
// Test:  PYTHONPATH=python python3 -m pytest -q tests/ops/test_layers.py -k batch_norm -m gpu
// Bench (one command line): PYTHONPATH=python python3 -m timeit -s "import numpy as np, hipgrad as hg"
//          -s "x = hg.tensor(np.random.randn(64, 64, 56, 56).astype('f4'), device='gpu:0')"
//          -s "g, b, rm, rv = (hg.tensor(np.ones(64, 'f4'), device='gpu:0') for _ in range(4))"
//          "hg.ops.batch_norm(x, g, b, rm, rv, training=True); hg.synchronize()"
#include "kernels_elementwise.h"

namespace hg::gpu {
namespace {

struct SumX {
  const float* x;
  __device__ void operator()(int64_t off, int64_t, float (&acc)[1]) const { acc[0] += x[off]; }
};
struct SumSqDev {
  const float* x;
  const float* mean;
  __device__ void operator()(int64_t off, int64_t c, float (&acc)[1]) const {
    const float d = x[off] - mean[c];
    acc[0] += d * d;
  }
};
struct SumDyDyXhat {
  const float* dy;
  const float* x;
  const float* mean;
  const float* invstd;
  __device__ void operator()(int64_t off, int64_t c, float (&acc)[2]) const {
    const float g = dy[off];
    acc[0] += g;
    acc[1] += g * (x[off] - mean[c]) * invstd[c];
  }
};

// Per channel. batch_stats: invstd from the biased variance, running stats updated when `update`
// (training) and present. Otherwise the running stats are copied into save_mean / save_invstd.
__global__ void bn_stats(int64_t C, int64_t M, bool batch_stats, bool update, float momentum,
                         float eps, const float* __restrict__ var, float* running_mean,
                         float* running_var, float* save_mean, float* save_invstd) {
  for (int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < C;
       c += int64_t(gridDim.x) * blockDim.x) {
    if (batch_stats) {
      const float v = var[c];
      save_invstd[c] = 1.f / sqrtf(v + eps);
      if (update && running_mean) {
        running_mean[c] = (1.f - momentum) * running_mean[c] + momentum * save_mean[c];
      }
      if (update && running_var) {
        const float unbiased = M > 1 ? static_cast<float>(double(v) * double(M) / double(M - 1)) : NAN;
        running_var[c] = (1.f - momentum) * running_var[c] + momentum * unbiased;
      }
    } else {
      save_mean[c] = running_mean[c];
      save_invstd[c] = 1.f / sqrtf(running_var[c] + eps);
    }
  }
}

template <class D>
__global__ void bn_apply(typename D::Index total, D HWd, D Cd, const float* __restrict__ x,
                         const float* __restrict__ mean, const float* __restrict__ invstd,
                         const float* __restrict__ gamma, const float* __restrict__ beta,
                         float* __restrict__ y) {
  using I = typename D::Index;
  for (I j = I(blockIdx.x) * blockDim.x + threadIdx.x; j < total; j += I(gridDim.x) * blockDim.x) {
    const I t = HWd.div(j);
    const I c = t - Cd.div(t) * I(Cd.d);
    const float g = gamma ? gamma[c] : 1.f, b = beta ? beta[c] : 0.f;
    y[j] = (x[j] - mean[c]) * (invstd[c] * g) + b;
  }
}

template <class D>
__global__ void bn_backward_apply(typename D::Index total, D HWd, D Cd, float inv_m, bool training,
                                  const float* __restrict__ dy, const float* __restrict__ x,
                                  const float* __restrict__ mean, const float* __restrict__ invstd,
                                  const float* __restrict__ gamma, const float* __restrict__ sum_dy,
                                  const float* __restrict__ sum_dy_xhat, float* __restrict__ dx) {
  using I = typename D::Index;
  for (I j = I(blockIdx.x) * blockDim.x + threadIdx.x; j < total; j += I(gridDim.x) * blockDim.x) {
    const I t = HWd.div(j);
    const I c = t - Cd.div(t) * I(Cd.d);
    const float scale = (gamma ? gamma[c] : 1.f) * invstd[c];
    if (training) {
      const float xhat = (x[j] - mean[c]) * invstd[c];
      dx[j] = scale * (dy[j] - sum_dy[c] * inv_m - xhat * (sum_dy_xhat[c] * inv_m));
    } else {
      dx[j] = scale * dy[j];
    }
  }
}

template <Path P>
void batch_norm_gpu(const BatchNormArgs& a) {
  if (a.C == 0) return;
  const hipStream_t st = current_stream();
  const int64_t M = a.N * a.HW, total = a.N * a.C * a.HW;
  // The statistics always land somewhere, also when the caller passes no save_* buffers.
  Tensor tmp = scratch(3 * a.C);
  float* mean = a.save_mean ? a.save_mean : tmp.data<float>();
  float* invstd = a.save_invstd ? a.save_invstd : tmp.data<float>() + a.C;
  float* var = tmp.data<float>() + 2 * a.C;
  const bool batch_stats = a.training || a.running_mean == nullptr || a.running_var == nullptr;
  if (batch_stats) {
    const float inv_m = static_cast<float>(1.0 / double(M));
    channel_sums<1>(P, SumX{a.x}, a.N, a.C, a.HW, ChannelOut<1>{{mean}, {inv_m}});
    channel_sums<1>(P, SumSqDev{a.x, mean}, a.N, a.C, a.HW, ChannelOut<1>{{var}, {inv_m}});
  }
  bn_stats<<<blocks_for(a.C), kThreads, 0, st>>>(a.C, M, batch_stats, a.training, a.momentum, a.eps,
                                               var, a.running_mean, a.running_var, mean, invstd);
  HG_LAUNCH_CHECK("bn_stats");
  if (total == 0) return;
  with_divider(total, [&](auto tag) {
    using D = decltype(tag);
    bn_apply<D><<<blocks_for(total), kThreads, 0, st>>>(typename D::Index(total), D(a.HW), D(a.C), a.x,
                                                      mean, invstd, a.gamma, a.beta, a.y);
    HG_LAUNCH_CHECK("bn_apply");
  });
}

template <Path P>
void batch_norm_backward_gpu(const BatchNormBackwardArgs& a) {
  if (a.C == 0) return;
  const hipStream_t st = current_stream();
  const int64_t M = a.N * a.HW, total = a.N * a.C * a.HW;
  Tensor tmp = scratch(2 * a.C);
  float* sum_dy = a.dbeta ? a.dbeta : tmp.data<float>();
  float* sum_dy_xhat = a.dgamma ? a.dgamma : tmp.data<float>() + a.C;
  channel_sums<2>(P, SumDyDyXhat{a.dy, a.x, a.save_mean, a.save_invstd}, a.N, a.C, a.HW,
                  ChannelOut<2>{{sum_dy, sum_dy_xhat}, {1.f, 1.f}});
  if (total == 0 || a.dx == nullptr) return;
  const float inv_m = static_cast<float>(1.0 / double(M));
  with_divider(total, [&](auto tag) {
    using D = decltype(tag);
    bn_backward_apply<D><<<blocks_for(total), kThreads, 0, st>>>(
        typename D::Index(total), D(a.HW), D(a.C), inv_m, a.training, a.dy, a.x, a.save_mean,
        a.save_invstd, a.gamma, sum_dy, sum_dy_xhat, a.dx);
    HG_LAUNCH_CHECK("bn_backward_apply");
  });
}

}  // namespace
}  // namespace hg::gpu

HG_REGISTER_KERNEL(batch_norm_op, gpu, handwritten, "gpu.batch_norm_two_stage",
                   &hg::gpu::batch_norm_gpu<hg::gpu::Path::fast>);
HG_REGISTER_REFERENCE(batch_norm_op, gpu, "gpu.batch_norm_v0",
                      &hg::gpu::batch_norm_gpu<hg::gpu::Path::reference>);
HG_REGISTER_KERNEL(batch_norm_backward_op, gpu, handwritten, "gpu.batch_norm_backward_two_stage",
                   &hg::gpu::batch_norm_backward_gpu<hg::gpu::Path::fast>);
HG_REGISTER_REFERENCE(batch_norm_backward_op, gpu, "gpu.batch_norm_backward_v0",
                      &hg::gpu::batch_norm_backward_gpu<hg::gpu::Path::reference>);
