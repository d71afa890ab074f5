// v0 reference convolutions: one thread per output element (grid-stride), plain loops straight
// from the definitions, any groups/stride/padding/dilation. No shared memory, no tiling. They are
// the baseline the production kernels (conv_igemm.hip, conv_depthwise.hip) are checked and timed
// against, registered as the conv ops' reference kernels (gpu.conv2d_forward_v0, ...; conv.hip).
//   forward:         y[n,k,p,q]   = bias[k] + sum_{c<Cg,r,s} x[n, g*Cg+c, h, w] w[k,c,r,s]
//   backward data:   dx[n,ci,h,w] = sum_{k in group, r, s} dy[n,k,p,q] w[k,ci-g*Cg,r,s]
//   backward weight: dw[k,c,r,s]  = sum_{n,p,q} dy[n,k,p,q] x[n, g*Cg+c, h, w]
// where h = p*sh - ph + r*dh and w = q*sw - pw + s*dw (backward data: the taps with integer p, q).
// with g = k / Kg (forward, weight) or ci / Cg (data).
// Tests: tests/gpu/test_reference_kernels.py compares them with the production kernels.
#include "gpu_kernels.h"
#include "runtime.h"

namespace hg::gpu {
namespace {

constexpr int kThreads = 256;

#define HG_GRID_STRIDE(i, total)                                                   \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (total); \
       i += int64_t(gridDim.x) * blockDim.x)

__global__ void __launch_bounds__(kThreads)
    conv2d_forward_v0_kernel(const float* x, const float* w, const float* bias, float* y,
                             ConvDims d) {
  HG_GRID_STRIDE(i, int64_t(d.N) * d.K * d.P * d.Q) {
    int t = int(i);
    const int q = t % d.Q;
    t /= d.Q;
    const int p = t % d.P;
    t /= d.P;
    const int k = t % d.K, n = t / d.K, g = k / d.Kg;
    float acc = bias != nullptr ? bias[k] : 0.f;
    for (int c = 0; c < d.Cg; ++c)
      for (int r = 0; r < d.R; ++r)
        for (int s = 0; s < d.S; ++s) {
          const int h = p * d.sh - d.ph + r * d.dh, wc = q * d.sw - d.pw + s * d.dw;
          if (h < 0 || h >= d.H || wc < 0 || wc >= d.W) continue;
          acc += x[((int64_t(n) * d.C + g * d.Cg + c) * d.H + h) * d.W + wc] *
                 w[((int64_t(k) * d.Cg + c) * d.R + r) * d.S + s];
        }
    y[i] = acc;
  }
}

__global__ void __launch_bounds__(kThreads)
    conv2d_backward_data_v0_kernel(const float* dy, const float* w, float* dx, ConvDims d) {
  HG_GRID_STRIDE(i, int64_t(d.N) * d.C * d.H * d.W) {
    int t = int(i);
    const int wc = t % d.W;
    t /= d.W;
    const int h = t % d.H;
    t /= d.H;
    const int ci = t % d.C, n = t / d.C, g = ci / d.Cg, c = ci - g * d.Cg;
    float acc = 0.f;
    for (int k = g * d.Kg; k < (g + 1) * d.Kg; ++k)
      for (int r = 0; r < d.R; ++r)
        for (int s = 0; s < d.S; ++s) {
          const int th = h + d.ph - r * d.dh, tw = wc + d.pw - s * d.dw;
          if (th < 0 || tw < 0 || th % d.sh != 0 || tw % d.sw != 0) continue;
          const int p = th / d.sh, q = tw / d.sw;
          if (p >= d.P || q >= d.Q) continue;
          acc += dy[((int64_t(n) * d.K + k) * d.P + p) * d.Q + q] *
                 w[((int64_t(k) * d.Cg + c) * d.R + r) * d.S + s];
        }
    dx[i] = acc;
  }
}

__global__ void __launch_bounds__(kThreads)
    conv2d_backward_weight_v0_kernel(const float* dy, const float* x, float* dw, ConvDims d) {
  HG_GRID_STRIDE(i, int64_t(d.K) * d.Cg * d.R * d.S) {
    int t = int(i);
    const int s = t % d.S;
    t /= d.S;
    const int r = t % d.R;
    t /= d.R;
    const int c = t % d.Cg, k = t / d.Cg, g = k / d.Kg;
    float acc = 0.f;
    for (int n = 0; n < d.N; ++n)
      for (int p = 0; p < d.P; ++p)
        for (int q = 0; q < d.Q; ++q) {
          const int h = p * d.sh - d.ph + r * d.dh, wc = q * d.sw - d.pw + s * d.dw;
          if (h < 0 || h >= d.H || wc < 0 || wc >= d.W) continue;
          acc += dy[((int64_t(n) * d.K + k) * d.P + p) * d.Q + q] *
                 x[((int64_t(n) * d.C + g * d.Cg + c) * d.H + h) * d.W + wc];
        }
    dw[i] = acc;
  }
}

#undef HG_GRID_STRIDE

}  // namespace

void conv2d_forward_v0(const ConvForwardArgs& a) {
  const ConvDims d = conv2d_dims(a.g);
  conv2d_forward_v0_kernel<<<grid_for(int64_t(d.N) * d.K * d.P * d.Q, kThreads), kThreads, 0,
                             stream()>>>(a.x, a.w, a.bias, a.y, d);
  HG_LAUNCH_CHECK("conv2d_forward_v0_kernel");
}

void conv2d_backward_data_v0(const ConvBackwardDataArgs& a) {
  const ConvDims d = conv2d_dims(a.g);
  conv2d_backward_data_v0_kernel<<<grid_for(int64_t(d.N) * d.C * d.H * d.W, kThreads), kThreads,
                                   0, stream()>>>(a.dy, a.w, a.dx, d);
  HG_LAUNCH_CHECK("conv2d_backward_data_v0_kernel");
}

void conv2d_backward_weight_v0(const ConvBackwardWeightArgs& a) {
  const ConvDims d = conv2d_dims(a.g);
  conv2d_backward_weight_v0_kernel<<<grid_for(int64_t(d.K) * d.Cg * d.R * d.S, kThreads),
                                     kThreads, 0, stream()>>>(a.dy, a.x, a.dw, d);
  HG_LAUNCH_CHECK("conv2d_backward_weight_v0_kernel");
}

}  // namespace hg::gpu
