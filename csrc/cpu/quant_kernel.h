// Shared pieces of the INT8 CPU kernels (see quant.cpp).
#pragma once
#include <cstdint>

#include "activation_math.h"

namespace hg::cpu {

// Dequantize, add the bias and apply the fused activation to one int32 accumulator.
struct QEpilogue {
  float x_scale = 1.f;
  const float* w_scale = nullptr;
  const float* bias = nullptr;
  bool has_act = false;
  ActKind act = ActKind::relu;
  float alpha = 0.f;
  float apply(int32_t acc, int64_t n) const {
    float v = float(acc) * (x_scale * w_scale[n]) + (bias ? bias[n] : 0.f);
    return has_act ? activation_value(act, v, alpha) : v;
  }
};

using QDotBlockFn = void (*)(int64_t M, int64_t N, int64_t K, const int8_t* X, int64_t ldx,
                             const int8_t* W, int64_t ldw, const QEpilogue& e, float* out,
                             int64_t out_m, int64_t out_n);

namespace generic { void qdot_block(int64_t, int64_t, int64_t, const int8_t*, int64_t, const int8_t*, int64_t, const QEpilogue&, float*, int64_t, int64_t); }
namespace avx2 { void qdot_block(int64_t, int64_t, int64_t, const int8_t*, int64_t, const int8_t*, int64_t, const QEpilogue&, float*, int64_t, int64_t); }
namespace avx512 { void qdot_block(int64_t, int64_t, int64_t, const int8_t*, int64_t, const int8_t*, int64_t, const QEpilogue&, float*, int64_t, int64_t); }

}  // namespace hg::cpu
