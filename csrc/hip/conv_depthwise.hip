// Depthwise convolution (groups == C, one input channel per group, Kg = K/C output channels
// each): direct kernels, which beat implicit GEMM here because each output reads only R*S
// inputs (a GEMM with a 1-deep reduction per tap would waste its tiles).
//   forward:         one thread per y element (n, k, p, q), q fastest, so a warp reads
//                    neighbouring input columns and writes contiguous outputs; the R x S loop is
//                    unrolled for 3x3 (the common case) and runtime-sized otherwise; bias fused,
//                    and conv2d_bias_act's residual and activation applied before the store.
//   backward data:   one thread per dx element (n, c, h, w): gathers the taps of the Kg output
//                    channels of c whose windows cover (h, w); nothing is scattered, no atomics.
//   backward weight: one block per dw element (k, r, s): its threads stride over (n, p, q),
//                    then reduce in registers, across the warp with shuffles (any warp width)
//                    and across warps in shared memory (one float per warp).
// Tests: tests/ops/test_conv.py (groups == C cases, gpu params), tests/gpu/.
#include <algorithm>

#include "activation_device.h"
#include "gpu_kernels.h"
#include "runtime.h"

namespace hg::gpu {
namespace {

constexpr int kThreads = 256;

template <int KR, int KS, class Act>  // 0: the size comes from d; Act: activation_device.h
__global__ void __launch_bounds__(kThreads)
    depthwise_forward_kernel(const float* __restrict__ x, const float* __restrict__ w,
                             const float* __restrict__ bias, const float* residual, float* y,
                             ConvDims d, Act act) {
  const int R = KR > 0 ? KR : d.R, S = KS > 0 ? KS : d.S;
  constexpr int kUnrollR = KR > 0 ? KR : 1, kUnrollS = KS > 0 ? KS : 1;  // runtime sizes: no unroll
  const int64_t total = int64_t(d.N) * d.K * d.P * d.Q;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    int t = int(i);
    const int q = t % d.Q;
    t /= d.Q;
    const int p = t % d.P;
    t /= d.P;
    const int k = t % d.K, n = t / d.K, c = k / d.Kg;
    const float* xc = x + (int64_t(n) * d.C + c) * d.H * d.W;
    const float* wk = w + k * R * S;
    const int h0 = p * d.sh - d.ph, w0 = q * d.sw - d.pw;
    float acc = bias != nullptr ? bias[k] : 0.f;
#pragma unroll kUnrollR
    for (int r = 0; r < R; ++r) {
      const int h = h0 + r * d.dh;
      if (unsigned(h) >= unsigned(d.H)) continue;
#pragma unroll kUnrollS
      for (int s = 0; s < S; ++s) {
        const int ww = w0 + s * d.dw;
        if (unsigned(ww) < unsigned(d.W)) acc = fmaf(xc[h * d.W + ww], wk[r * S + s], acc);
      }
    }
    if (residual != nullptr) acc += residual[i];  // may be y[i] itself: read before the write
    y[i] = act(acc);
  }
}

template <int KR, int KS>
__global__ void __launch_bounds__(kThreads)
    depthwise_backward_data_kernel(const float* __restrict__ dy, const float* __restrict__ w,
                                   float* __restrict__ dx, ConvDims d) {
  const int R = KR > 0 ? KR : d.R, S = KS > 0 ? KS : d.S;
  constexpr int kUnrollR = KR > 0 ? KR : 1, kUnrollS = KS > 0 ? KS : 1;  // runtime sizes: no unroll
  const int64_t total = int64_t(d.N) * d.C * d.H * d.W;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    int t = int(i);
    const int wc = t % d.W;
    t /= d.W;
    const int h = t % d.H;
    t /= d.H;
    const int c = t % d.C, n = t / d.C;
    float acc = 0.f;
    for (int m = 0; m < d.Kg; ++m) {
      const int k = c * d.Kg + m;
      const float* dyk = dy + (int64_t(n) * d.K + k) * d.P * d.Q;
      const float* wk = w + k * R * S;
#pragma unroll kUnrollR
      for (int r = 0; r < R; ++r) {
        const int th = h + d.ph - r * d.dh;  // = p * sh when tap r of output row p covers h
        const int p = th / d.sh;
        if (th < 0 || p * d.sh != th || p >= d.P) continue;
#pragma unroll kUnrollS
        for (int s = 0; s < S; ++s) {
          const int tw = wc + d.pw - s * d.dw;
          const int q = tw / d.sw;
          if (tw >= 0 && q * d.sw == tw && q < d.Q)
            acc = fmaf(dyk[p * d.Q + q], wk[r * S + s], acc);
        }
      }
    }
    dx[i] = acc;
  }
}

// The sum of v over the block; valid in thread 0. Called by every thread of the block.
__device__ float block_sum(float v) {
  __shared__ float per_warp[kThreads];  // one float per warp is used; sized for any warp width
  for (int o = warpSize / 2; o > 0; o /= 2) v += HG_SHFL_DOWN(v, o);
  const int lane = threadIdx.x % warpSize, warp = threadIdx.x / warpSize;
  if (lane == 0) per_warp[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kThreads / warpSize ? per_warp[lane] : 0.f;
    for (int o = warpSize / 2; o > 0; o /= 2) v += HG_SHFL_DOWN(v, o);
  }
  __syncthreads();  // per_warp may be reused by the caller's next call
  return v;
}

__global__ void __launch_bounds__(kThreads)
    depthwise_backward_weight_kernel(const float* __restrict__ dy, const float* __restrict__ x,
                                     float* __restrict__ dw, ConvDims d) {
  const int RS = d.R * d.S, PQ = d.P * d.Q, HW = d.H * d.W, total = d.N * PQ;
  for (int b = blockIdx.x; b < d.K * RS; b += gridDim.x) {
    const int k = b / RS, rs = b - k * RS, r = rs / d.S, s = rs - r * d.S, c = k / d.Kg;
    const int hoff = r * d.dh - d.ph, woff = s * d.dw - d.pw;
    float acc = 0.f;
    for (int j = threadIdx.x; j < total; j += kThreads) {
      const int n = j / PQ, pq = j - n * PQ, p = pq / d.Q, q = pq - p * d.Q;
      const int h = p * d.sh + hoff, w = q * d.sw + woff;
      if (unsigned(h) < unsigned(d.H) && unsigned(w) < unsigned(d.W)) {
        const float g = dy[(int64_t(n) * d.K + k) * PQ + pq];
        acc = fmaf(g, x[(int64_t(n) * d.C + c) * HW + h * d.W + w], acc);
      }
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) dw[b] = acc;
  }
}

}  // namespace

bool conv2d_is_depthwise(const ConvGeometry& g) { return g.groups > 1 && g.groups == g.C; }

template <class Act>
void forward_depthwise(const ConvForwardArgs& a, Act act, const float* residual = nullptr) {
  const ConvDims d = conv2d_dims(a.g);
  const unsigned grid = grid_for(int64_t(d.N) * d.K * d.P * d.Q, kThreads);
  if (d.R == 3 && d.S == 3) {
    depthwise_forward_kernel<3, 3><<<grid, kThreads, 0, stream()>>>(a.x, a.w, a.bias, residual,
                                                                    a.y, d, act);
    HG_LAUNCH_CHECK("depthwise_forward_kernel<3, 3>");
  } else {
    depthwise_forward_kernel<0, 0><<<grid, kThreads, 0, stream()>>>(a.x, a.w, a.bias, residual,
                                                                    a.y, d, act);
    HG_LAUNCH_CHECK("depthwise_forward_kernel");
  }
}

void conv2d_forward_depthwise(const ConvForwardArgs& a) { forward_depthwise(a, ActNone{}); }

void conv2d_bias_act_depthwise(const ConvBiasActArgs& a) {
  const ConvForwardArgs c{a.g, a.x, a.w, a.epi.bias, a.y};
  with_activation(a.epi, [&](auto act) { forward_depthwise(c, act, a.residual); });
}

void conv2d_backward_data_depthwise(const ConvBackwardDataArgs& a) {
  const ConvDims d = conv2d_dims(a.g);
  const unsigned grid = grid_for(int64_t(d.N) * d.C * d.H * d.W, kThreads);
  if (d.R == 3 && d.S == 3) {
    depthwise_backward_data_kernel<3, 3><<<grid, kThreads, 0, stream()>>>(a.dy, a.w, a.dx, d);
    HG_LAUNCH_CHECK("depthwise_backward_data_kernel<3, 3>");
  } else {
    depthwise_backward_data_kernel<0, 0><<<grid, kThreads, 0, stream()>>>(a.dy, a.w, a.dx, d);
    HG_LAUNCH_CHECK("depthwise_backward_data_kernel");
  }
}

void conv2d_backward_weight_depthwise(const ConvBackwardWeightArgs& a) {
  const ConvDims d = conv2d_dims(a.g);
  // The kernel strides over its K*R*S blocks; a grid within 65535 keeps gridDim.x * kThreads
  // under AMD's 2^32 launch limit however many channels there are.
  const int blocks = std::min(d.K * d.R * d.S, 65535);
  depthwise_backward_weight_kernel<<<unsigned(blocks), kThreads, 0, stream()>>>(a.dy, a.x, a.dw, d);
  HG_LAUNCH_CHECK("depthwise_backward_weight_kernel");
}

}  // namespace hg::gpu
