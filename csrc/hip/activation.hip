// GPU activations: forward y = f(x) and backward dx = dy * f'(.), elementwise over a flat,
// contiguous float32 array of any shape. PyTorch's formulas:
//   relu       max(0, x) (NaN stays NaN)            backward y <= 0 ? 0 : dy (NaN passes dy)
//   leaky_relu x > 0 ? x : alpha x                   backward x > 0 ? dy : alpha dy
//   sigmoid    1 / (1 + e^-x), from e^-|x| (no overflow in either tail)    backward dy y (1 - y)
//   tanh       tanhf                                 backward dy (1 - y)(1 + y)
//   gelu       x Phi(x) = x erfc(-x / sqrt2) / 2 (erfc keeps the negative tail's relative accuracy)
//              backward dy (Phi(x) + x phi(x))
//   gelu_tanh  x (1 + tanh u) / 2 = x sigmoid(2u), u = sqrt(2/pi)(x + 0.044715 x^3)
//   elu        x > 0 ? x : alpha (e^x - 1)           backward x <= 0 ? dy alpha e^x : dy
//   relu6      min(max(x, 0), 6)                     backward 0 < x < 6 ? dy : 0 (NaN passes dy)
//   hardsigmoid  min(max(x + 3, 0), 6) / 6           backward -3 < x < 3 ? dy / 6 : 0 (NaN: 0)
//   hardswish  x hardsigmoid(x)                      backward x <= -3 ? 0 : x < 3 ? dy (x/3 + 1/2)
//                                                    : dy (NaN passes dy)
//
// Kernels: gpu.activation_vec4 / gpu.activation_backward_vec4 (handwritten, the only ones): one
// kernel per kind (a template), grid-stride loop, each thread handling one float4 per step when
// every pointer is 16-byte aligned (the tail and unaligned arrays go element by element; that
// element path is the simple reference, so there is no separate v0). Backward loads only the
// inputs its kind needs (x or y). The vendor wrappers (vendor/miopen.cpp, vendor/cudnn.cpp) call
// these for the kinds their library lacks. The forward formulas live in activation_device.h,
// shared with the fused conv/linear epilogues.
//
// Test:  PYTHONPATH=python python3 -m pytest -q tests/ops/test_activation.py -m gpu
// Bench (one command line): PYTHONPATH=python python3 -m timeit -s "import numpy as np, hipgrad as hg"
//          -s "x = hg.tensor(np.random.randn(1 << 24).astype('f4'), device='gpu:0')"
//          "hg.ops.activation(x, 'gelu'); hg.synchronize()"
#include "activation_device.h"
#include "kernels_elementwise.h"

namespace hg::gpu {
namespace {

template <ActKind K>
__device__ inline float act_backward(float dy, float x, float y, float alpha) {
  if constexpr (K == ActKind::relu) return y <= 0.f ? 0.f : dy;
  if constexpr (K == ActKind::leaky_relu) return x > 0.f ? dy : alpha * dy;
  if constexpr (K == ActKind::sigmoid) return dy * y * (1.f - y);
  if constexpr (K == ActKind::tanh) return dy * (1.f - y) * (1.f + y);
  if constexpr (K == ActKind::gelu) {
    const float cdf = normal_cdf(x);
    const float pdf = kInvSqrt2Pi * expf(-0.5f * x * x);
    return dy * (cdf + x * pdf);
  }
  if constexpr (K == ActKind::gelu_tanh) {
    const float x2 = x * x;
    const float u = kSqrt2OverPi * (x + kGeluKappa * x2 * x);
    const float du = kSqrt2OverPi * (1.f + 3.f * kGeluKappa * x2);
    const float s = sigmoid_f(2.f * u);  // 1 + tanh u = 2s, 1 - tanh^2 u = 4 s (1 - s)
    return dy * (s + 2.f * x * s * (1.f - s) * du);
  }
  if constexpr (K == ActKind::elu) return x <= 0.f ? dy * alpha * expf(x) : dy;
  if constexpr (K == ActKind::relu6) return (x <= 0.f || x >= 6.f) ? 0.f : dy;
  if constexpr (K == ActKind::hardsigmoid) return (x > -3.f && x < 3.f) ? dy * (1.f / 6.f) : 0.f;
  if constexpr (K == ActKind::hardswish) {
    if (x <= -3.f) return 0.f;
    return x < 3.f ? dy * (x / 3.f + 0.5f) : dy;
  }
  return dy;
}

template <ActKind K>
constexpr bool kBackwardReadsX = !(K == ActKind::relu || K == ActKind::sigmoid || K == ActKind::tanh);
template <ActKind K>
constexpr bool kBackwardReadsY = K == ActKind::relu || K == ActKind::sigmoid || K == ActKind::tanh;

// Thread t handles float4 number t, t + stride, ... of the aligned body, then element
// 4*n4 + t, ... of the tail (or every element when vec4 is false).
template <ActKind K>
__global__ void activation_forward_kernel(int64_t n, float alpha, const float* __restrict__ x,
                                          float* __restrict__ y, bool vec4) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t done = 0;
  if (vec4) {
    const int64_t n4 = n / 4;
    const float4* x4 = reinterpret_cast<const float4*>(x);
    float4* y4 = reinterpret_cast<float4*>(y);
    for (int64_t i = tid; i < n4; i += stride) {
      float4 v = x4[i];
      v.x = act_forward<K>(v.x, alpha);
      v.y = act_forward<K>(v.y, alpha);
      v.z = act_forward<K>(v.z, alpha);
      v.w = act_forward<K>(v.w, alpha);
      y4[i] = v;
    }
    done = n4 * 4;
  }
  for (int64_t i = done + tid; i < n; i += stride) y[i] = act_forward<K>(x[i], alpha);
}

template <ActKind K>
__global__ void activation_backward_kernel(int64_t n, float alpha, const float* __restrict__ dy,
                                           const float* __restrict__ x, const float* __restrict__ y,
                                           float* __restrict__ dx, bool vec4) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t done = 0;
  if (vec4) {
    const int64_t n4 = n / 4;
    const float4 zero4 = make_float4(0.f, 0.f, 0.f, 0.f);
    for (int64_t i = tid; i < n4; i += stride) {
      const float4 g = reinterpret_cast<const float4*>(dy)[i];
      float4 xv = zero4, yv = zero4;
      if constexpr (kBackwardReadsX<K>) xv = reinterpret_cast<const float4*>(x)[i];
      if constexpr (kBackwardReadsY<K>) yv = reinterpret_cast<const float4*>(y)[i];
      float4 r;
      r.x = act_backward<K>(g.x, xv.x, yv.x, alpha);
      r.y = act_backward<K>(g.y, xv.y, yv.y, alpha);
      r.z = act_backward<K>(g.z, xv.z, yv.z, alpha);
      r.w = act_backward<K>(g.w, xv.w, yv.w, alpha);
      reinterpret_cast<float4*>(dx)[i] = r;
    }
    done = n4 * 4;
  }
  for (int64_t i = done + tid; i < n; i += stride) {
    const float xv = kBackwardReadsX<K> ? x[i] : 0.f;
    const float yv = kBackwardReadsY<K> ? y[i] : 0.f;
    dx[i] = act_backward<K>(dy[i], xv, yv, alpha);
  }
}

template <ActKind K>
void launch_forward(const ActivationArgs& a) {
  const bool vec4 = aligned16(a.x) && aligned16(a.y);
  const unsigned grid = blocks_for(vec4 ? (a.n + 3) / 4 : a.n);
  activation_forward_kernel<K><<<grid, kThreads, 0, current_stream()>>>(a.n, a.alpha, a.x, a.y, vec4);
  HG_LAUNCH_CHECK("activation_forward_kernel");
}

template <ActKind K>
void launch_backward(const ActivationBackwardArgs& a) {
  const bool vec4 = aligned16(a.dy) && aligned16(a.dx) && (!kBackwardReadsX<K> || aligned16(a.x)) &&
                    (!kBackwardReadsY<K> || aligned16(a.y));
  const unsigned grid = blocks_for(vec4 ? (a.n + 3) / 4 : a.n);
  activation_backward_kernel<K><<<grid, kThreads, 0, current_stream()>>>(a.n, a.alpha, a.dy, a.x, a.y,
                                                                         a.dx, vec4);
  HG_LAUNCH_CHECK("activation_backward_kernel");
}

}  // namespace

void activation_handwritten(const ActivationArgs& a) {
  if (a.n == 0) return;
  switch (a.kind) {
    case ActKind::relu: return launch_forward<ActKind::relu>(a);
    case ActKind::leaky_relu: return launch_forward<ActKind::leaky_relu>(a);
    case ActKind::sigmoid: return launch_forward<ActKind::sigmoid>(a);
    case ActKind::tanh: return launch_forward<ActKind::tanh>(a);
    case ActKind::gelu: return launch_forward<ActKind::gelu>(a);
    case ActKind::gelu_tanh: return launch_forward<ActKind::gelu_tanh>(a);
    case ActKind::elu: return launch_forward<ActKind::elu>(a);
    case ActKind::relu6: return launch_forward<ActKind::relu6>(a);
    case ActKind::hardsigmoid: return launch_forward<ActKind::hardsigmoid>(a);
    case ActKind::hardswish: return launch_forward<ActKind::hardswish>(a);
  }
}

void activation_backward_handwritten(const ActivationBackwardArgs& a) {
  if (a.n == 0) return;
  switch (a.kind) {
    case ActKind::relu: return launch_backward<ActKind::relu>(a);
    case ActKind::leaky_relu: return launch_backward<ActKind::leaky_relu>(a);
    case ActKind::sigmoid: return launch_backward<ActKind::sigmoid>(a);
    case ActKind::tanh: return launch_backward<ActKind::tanh>(a);
    case ActKind::gelu: return launch_backward<ActKind::gelu>(a);
    case ActKind::gelu_tanh: return launch_backward<ActKind::gelu_tanh>(a);
    case ActKind::elu: return launch_backward<ActKind::elu>(a);
    case ActKind::relu6: return launch_backward<ActKind::relu6>(a);
    case ActKind::hardsigmoid: return launch_backward<ActKind::hardsigmoid>(a);
    case ActKind::hardswish: return launch_backward<ActKind::hardswish>(a);
  }
}

}  // namespace hg::gpu

HG_REGISTER_KERNEL(activation_op, gpu, handwritten, "gpu.activation_vec4", &hg::gpu::activation_handwritten);
HG_REGISTER_KERNEL(activation_backward_op, gpu, handwritten, "gpu.activation_backward_vec4",
                   &hg::gpu::activation_backward_handwritten);
