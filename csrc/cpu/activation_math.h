// Scalar activation formulas (PyTorch's), shared by the activation kernels and by fused
// epilogues (quantized GEMM/convolution, fused conv + activation).
#pragma once
#include <cmath>

#include "../core/ops.h"

namespace hg::cpu {

inline float activation_value(ActKind kind, float x, float alpha) {
  switch (kind) {
    case ActKind::relu: return x < 0.f ? 0.f : x;  // NaN stays NaN (PyTorch)
    case ActKind::leaky_relu: return x > 0.f ? x : alpha * x;
    case ActKind::sigmoid: return x >= 0.f ? 1.f / (1.f + std::exp(-x)) : std::exp(x) / (1.f + std::exp(x));
    case ActKind::tanh: return std::tanh(x);
    case ActKind::gelu: return 0.5f * x * (1.f + std::erf(x * 0.70710678118654752f));
    case ActKind::gelu_tanh: {
      const float inner = 0.79788456080286536f * (x + 0.044715f * x * x * x);
      return 0.5f * x * (1.f + std::tanh(inner));
    }
    case ActKind::elu: return x > 0.f ? x : alpha * std::expm1(x);
    // NaN stays NaN through each clamp (a comparison with NaN is false)
    case ActKind::relu6: return x < 0.f ? 0.f : (x > 6.f ? 6.f : x);
    case ActKind::hardsigmoid: {
      const float t = x + 3.f;
      return (t < 0.f ? 0.f : (t > 6.f ? 6.f : t)) / 6.f;
    }
    case ActKind::hardswish: {
      const float t = x + 3.f;
      return x * (t < 0.f ? 0.f : (t > 6.f ? 6.f : t)) / 6.f;
    }
  }
  return x;
}

}  // namespace hg::cpu
