// Device-side activation formulas (PyTorch's), shared by the activation kernels (activation.hip)
// and by the fused epilogues of conv2d_bias_act / linear_bias_act (conv_igemm.hip,
// conv_depthwise.hip, fused.hip), plus the epilogue's activation as a functor type:
//   ActNone          identity (no activation);
//   ActOp<K>{alpha}  act_forward<K>;
// with_activation(epi, f) calls f with the one the FusedEpilogue asks for, so each kernel is
// instantiated per kind and the activation inlines into its store loop.
#pragma once
#include "../core/ops.h"
#include "platform.h"

#if defined(__HIP__) || defined(__CUDACC__) || defined(HIPGRAD_SIM_DEVICE_CODE)
namespace hg::gpu {

constexpr float kRsqrt2 = 0.70710678118654752f;
constexpr float kRsqrt2Lo = 1.2101617e-08f;  // 1/sqrt2 - float(1/sqrt2)
constexpr float k2OverSqrtPi = 1.1283791670955126f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;
constexpr float kSqrt2OverPi = 0.79788456080286536f;
constexpr float kGeluKappa = 0.044715f;

__device__ inline float sigmoid_f(float z) {
  const float e = expf(-fabsf(z));
  const float r = 1.f / (1.f + e);
  return z >= 0.f ? r : e * r;
}

// Phi(x) = erfc(-x / sqrt2) / 2, keeping the negative tail's relative accuracy. erfc(z) there
// falls like exp(-z^2), so float(z)'s rounding (relative 6e-8) alone costs 2 z^2 times that
// (1e-5 at x = -12, measured on an H100): z = hi + lo exactly, and erfc(hi + lo) =
// erfc(hi) - lo 2/sqrt(pi) exp(-hi^2) to first order.
__device__ inline float normal_cdf(float x) {
  const float hi = -x * kRsqrt2;
  // (0 where hi is infinite: the fma would give inf - inf)
  const float lo = fabsf(hi) < 1e30f ? fmaf(-x, kRsqrt2, -hi) - x * kRsqrt2Lo : 0.f;
  return 0.5f * fmaf(-lo * k2OverSqrtPi, expf(-hi * hi), erfcf(hi));
}

template <ActKind K>
__device__ inline float act_forward(float x, float alpha) {
  if constexpr (K == ActKind::relu) return x < 0.f ? 0.f : x;
  if constexpr (K == ActKind::leaky_relu) return x > 0.f ? x : alpha * x;
  if constexpr (K == ActKind::sigmoid) return sigmoid_f(x);
  if constexpr (K == ActKind::tanh) return tanhf(x);
  if constexpr (K == ActKind::gelu) return x * normal_cdf(x);
  if constexpr (K == ActKind::gelu_tanh) {
    const float u = kSqrt2OverPi * (x + kGeluKappa * x * x * x);
    return x * sigmoid_f(2.f * u);
  }
  if constexpr (K == ActKind::elu) return x > 0.f ? x : alpha * expm1f(x);
  // the clamps keep a NaN (every comparison with it is false)
  if constexpr (K == ActKind::relu6) return x < 0.f ? 0.f : (x > 6.f ? 6.f : x);
  if constexpr (K == ActKind::hardsigmoid || K == ActKind::hardswish) {
    const float t = x + 3.f;
    const float c = t < 0.f ? 0.f : (t > 6.f ? 6.f : t);
    if constexpr (K == ActKind::hardsigmoid) return c / 6.f;
    else return x * c / 6.f;
  }
  return x;
}

struct ActNone {
  __device__ float operator()(float x) const { return x; }
};
template <ActKind K>
struct ActOp {
  float alpha;
  __device__ float operator()(float x) const { return act_forward<K>(x, alpha); }
};

template <class F>
void with_activation(const FusedEpilogue& e, F&& f) {
  if (!e.has_act) return f(ActNone{});
  switch (e.act) {
    case ActKind::relu: return f(ActOp<ActKind::relu>{e.alpha});
    case ActKind::leaky_relu: return f(ActOp<ActKind::leaky_relu>{e.alpha});
    case ActKind::sigmoid: return f(ActOp<ActKind::sigmoid>{e.alpha});
    case ActKind::tanh: return f(ActOp<ActKind::tanh>{e.alpha});
    case ActKind::gelu: return f(ActOp<ActKind::gelu>{e.alpha});
    case ActKind::gelu_tanh: return f(ActOp<ActKind::gelu_tanh>{e.alpha});
    case ActKind::elu: return f(ActOp<ActKind::elu>{e.alpha});
    case ActKind::relu6: return f(ActOp<ActKind::relu6>{e.alpha});
    case ActKind::hardsigmoid: return f(ActOp<ActKind::hardsigmoid>{e.alpha});
    case ActKind::hardswish: return f(ActOp<ActKind::hardswish>{e.alpha});
  }
}

}  // namespace hg::gpu
#endif
