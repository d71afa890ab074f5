// CPU activations: forward y = f(x) and backward dx = dy * f'(.), elementwise over a flat,
// contiguous float32 array of any shape.
//
// Kernels: cpu.activation_simd (handwritten, the only one): one loop per kind around branch-free
// float math with no libm calls, so every loop vectorizes; the loops are compiled for AVX-512,
// AVX2+FMA and SSE2 and the CPU's best runs (GCC target_clones). One contiguous chunk per OpenMP
// thread above kParallelMin elements. The vendor slot falls back to it (OpenBLAS has no
// activation routine).
//
// Math, float32 throughout (tests/ops/test_activation.py checks it against float64):
//   exp      Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, degree-7 Taylor for e^r, 2^n built
//            from exponent bits in two halves, so results that are denormal or overflow to inf
//            come out right;
//   expm1    degree-10 Taylor for |x| < ln2 (no cancellation near 0), exp(x) - 1 elsewhere;
//   tanh     -expm1(-2|x|) / (2 + expm1(-2|x|)) with x's sign;
//   sigmoid  1/(1+e) or e/(1+e) with e = exp(-|x|): never overflows, full accuracy in both tails;
//   gelu     x * Phi(x), with Phi(-|x|) = erfc(|x|/sqrt2)/2 = exp(-x^2/2) R(t) / 2, t = 1/(1 + q|x|);
//            R is a degree-10 polynomial fitted to erfcx(|x|/sqrt2) (least squares weighted by
//            1/erfcx on 8000 Chebyshev nodes in t for |x| in [0, 14.5]; relative error 3e-8),
//            and x^2/2 is split hi/lo so exp's argument is exact. Within 8 ulp everywhere,
//            the negative tail included (PyTorch's 1 + erf(x/sqrt2) loses it);
//   gelu_tanh  0.5 x (1 + tanh(u)) = x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3);
//   relu6, hardsigmoid, hardswish  min(max(x, 0), 6), min(max(x + 3, 0), 6) / 6 and x times
//            that (PyTorch's), NaN kept.
// Backward reads y where that is cheaper (relu, sigmoid, tanh) and x otherwise; at the kinks and
// at NaN it takes PyTorch's choices: relu' = 0 where y <= 0 and 1 elsewhere (NaN passes dy, as
// threshold_backward), leaky_relu' = 1 where x > 0 and alpha elsewhere (NaN too), elu' = alpha e^x
// where x <= 0 and 1 elsewhere (NaN passes dy), relu6' = 0 where x <= 0 or x >= 6 (NaN passes),
// hardsigmoid' = 1/6 where -3 < x < 3 and 0 elsewhere (NaN too), hardswish' = 0 where x <= -3,
// x/3 + 1/2 where x < 3 and 1 elsewhere (NaN passes dy).
//
// apply_epilogue (cpu_kernels.h) runs the same forward math over a block of a GEMM's output, for
// the fused conv2d_bias_act / linear_bias_act kernels (fused.cpp).
//
// Test:  PYTHONPATH=python python3 -m pytest -q tests/ops/test_activation.py
// Bench: PYTHONPATH=python python3 -m timeit -s
//          "import numpy as np, hipgrad as hg; x = hg.tensor(np.random.randn(1 << 22))" "hg.ops.activation(x, 'gelu')"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "../core/checks.h"
#include "cpu_kernels.h"

namespace hg::cpu {
namespace {

constexpr int64_t kParallelMin = 1 << 15;  // below this, thread start-up costs more than it saves

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
// One clone of the loops per x86-64 level (AVX-512, AVX2+FMA, baseline SSE2), picked when the
// module loads: the build itself targets baseline x86-64. flatten inlines the math and the
// lambdas into each clone (under LTO some were left as calls, which also stops vectorization).
#define HG_ISA_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"), flatten))
#else
#define HG_ISA_CLONES
#endif
// The math must inline into the loops to vectorize at all.
#define HG_INLINE inline __attribute__((always_inline))

HG_INLINE float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
HG_INLINE uint32_t to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
// c ? a : b with both sides evaluated, so no branch stops vectorization: GCC does not if-convert
// a conditional float operation (it may trap under the default -ftrapping-math), and it splits
// a plain ternary clamp into constant-folded paths.
HG_INLINE float select(bool c, float a, float b) {
  const uint32_t m = 0u - uint32_t(c);
  return from_bits((to_bits(a) & m) | (to_bits(b) & ~m));
}

// e^(hi + lo), where lo is a small correction to hi.
HG_INLINE float exp_hilo(float hi, float lo) {
  constexpr float kLog2e = 1.44269504f;
  constexpr float kLn2Hi = 0.693359375f;  // 355/512: n * kLn2Hi is exact for |n| < 2^15
  constexpr float kLn2Lo = -2.12194440e-4f;  // ln2 - kLn2Hi
  constexpr float kRound = 12582912.f;       // 1.5 * 2^23: adding and subtracting it rounds
  float x = select(hi > -104.f, hi, -104.f);  // NaN lands here too; it is put back at the end
  x = select(x < 89.f, x, 89.f);
  const float n = (x * kLog2e + kRound) - kRound;
  const float r = (x - n * kLn2Hi) - n * kLn2Lo + lo;
  const float p =
      1.f + r * (1.f + r * (1.f / 2 + r * (1.f / 6 + r * (1.f / 24 + r * (1.f / 120 +
      r * (1.f / 720 + r * (1.f / 5040)))))));
  const int32_t ni = static_cast<int32_t>(n);  // in [-150, 128]
  const int32_t n1 = ni / 2, n2 = ni - n1;     // each a normal exponent
  const float scale1 = from_bits(uint32_t(n1 + 127) << 23);
  const float scale2 = from_bits(uint32_t(n2 + 127) << 23);
  const float scaled = p * scale1 * scale2;
  return select(hi == hi, scaled, hi);
}

HG_INLINE float exp_f32(float x) { return exp_hilo(x, 0.f); }

HG_INLINE float expm1_f32(float x) {
  const float taylor =
      x * (1.f + x * (1.f / 2 + x * (1.f / 6 + x * (1.f / 24 + x * (1.f / 120 + x * (1.f / 720 +
      x * (1.f / 5040 + x * (1.f / 40320 + x * (1.f / 362880 + x * (1.f / 3628800))))))))));
  const float via_exp = exp_f32(x) - 1.f;
  return select(std::fabs(x) < 0.693147f, taylor, via_exp);
}

HG_INLINE float tanh_f32(float x) {
  const float e = expm1_f32(-2.f * std::fabs(x));
  return std::copysign(-e / (2.f + e), x);
}

// sigmoid(z) and 1 - sigmoid(z), each without cancellation.
struct Sigmoid2 {
  float s, one_minus_s;
};
HG_INLINE Sigmoid2 sigmoid2_f32(float z) {
  const float e = exp_f32(-std::fabs(z));
  const float r = 1.f / (1.f + e);
  const float er = e * r;
  return Sigmoid2{select(z >= 0.f, r, er), select(z >= 0.f, er, r)};
}

// Standard normal cdf Phi(x) and density phi(x).
struct Normal {
  float cdf, pdf;
};
HG_INLINE Normal normal_f32(float x) {
  constexpr float kQ = 0.35355338f;  // t = 1 / (1 + kQ |x|), the variable R was fitted in
  constexpr float kInvSqrt2Pi = 0.398942280f;
  float b = std::fabs(x);
  b = select(b < 14.5f, b, 14.5f);  // exp(-x^2/2) is 0 from here on; a NaN shows through x
  const float b_hi = from_bits(to_bits(b) & 0xfffff000u);  // 12 significant bits: b_hi^2 exact
  const float g = exp_hilo(-0.5f * b_hi * b_hi, -0.5f * (b - b_hi) * (b + b_hi));  // exp(-x^2/2)
  const float t = 1.f / (1.f + kQ * b);
  const float R =
      8.603918104e-06f + t * (2.818421721e-01f + t * (2.853241861e-01f + t * (2.231602371e-01f +
      t * (2.864679992e-01f + t * (-2.556102276e-01f + t * (6.917091608e-01f +
      t * (-9.765479565e-01f + t * (6.487146616e-01f + t * (-2.135173827e-01f +
      t * 2.844851464e-02f)))))))));
  const float tail = 0.5f * g * R;  // Phi(-|x|)
  return Normal{select(x < 0.f, tail, 1.f - tail), g * kInvSqrt2Pi};
}

constexpr float kSqrt2OverPi = 0.797884561f;
constexpr float kGeluKappa = 0.044715f;

// min(max(x, 0), 6), NaN kept (both comparisons are false for it).
HG_INLINE float clamp06(float x) {
  const float r = select(x < 0.f, 0.f, x);
  return select(r > 6.f, 6.f, r);
}

template <class F>
HG_INLINE void map_forward(const ActivationArgs& a, int64_t begin, int64_t end, F f) {
  const float* __restrict x = a.x;
  float* __restrict y = a.y;
  for (int64_t i = begin; i < end; ++i) y[i] = f(x[i]);
}

template <class F>
HG_INLINE void map_backward(const ActivationBackwardArgs& a, int64_t begin, int64_t end, F f) {
  const float* __restrict dy = a.dy;
  const float* __restrict x = a.x;
  const float* __restrict y = a.y;
  float* __restrict dx = a.dx;
  for (int64_t i = begin; i < end; ++i) dx[i] = f(dy[i], x[i], y[i]);
}

// body(begin, end) over [0, n) in ranges of multiples of 64 elements, threads only above
// kParallelMin.
template <class Body>
void parallel_chunks(int64_t n, Body body) {
  if (n <= kParallelMin) return body(0, n);
  parallel_range(n, num_threads(), body, 64);
}

HG_ISA_CLONES void activation_range(const ActivationArgs& a, int64_t begin, int64_t end) {
  const float alpha = a.alpha;
  switch (a.kind) {
    case ActKind::relu:
      return map_forward(a, begin, end, [](float x) { return x < 0.f ? 0.f : x; });
    case ActKind::leaky_relu:
      return map_forward(a, begin, end, [alpha](float x) { return select(x > 0.f, x, alpha * x); });
    case ActKind::sigmoid:
      return map_forward(a, begin, end, [](float x) { return sigmoid2_f32(x).s; });
    case ActKind::tanh:
      return map_forward(a, begin, end, [](float x) { return tanh_f32(x); });
    case ActKind::gelu:
      return map_forward(a, begin, end, [](float x) { return x * normal_f32(x).cdf; });
    case ActKind::gelu_tanh:
      return map_forward(a, begin, end, [](float x) {
        const float u = kSqrt2OverPi * (x + kGeluKappa * x * x * x);
        return x * sigmoid2_f32(2.f * u).s;
      });
    case ActKind::elu:
      return map_forward(a, begin, end, [alpha](float x) {
        return select(x > 0.f, x, alpha * expm1_f32(x));
      });
    case ActKind::relu6:
      return map_forward(a, begin, end, [](float x) { return clamp06(x); });
    case ActKind::hardsigmoid:
      return map_forward(a, begin, end, [](float x) { return clamp06(x + 3.f) / 6.f; });
    case ActKind::hardswish:
      return map_forward(a, begin, end, [](float x) { return x * clamp06(x + 3.f) / 6.f; });
  }
}

HG_ISA_CLONES void activation_backward_range(const ActivationBackwardArgs& a, int64_t begin,
                                             int64_t end) {
  const float alpha = a.alpha;
  switch (a.kind) {
    case ActKind::relu:
      return map_backward(a, begin, end, [](float dy, float, float y) {
        return y <= 0.f ? 0.f : dy;
      });
    case ActKind::leaky_relu:
      return map_backward(a, begin, end, [alpha](float dy, float x, float) {
        return select(x > 0.f, dy, alpha * dy);
      });
    case ActKind::sigmoid:
      return map_backward(a, begin, end, [](float dy, float, float y) {
        return dy * y * (1.f - y);
      });
    case ActKind::tanh:
      return map_backward(a, begin, end, [](float dy, float, float y) {
        return dy * (1.f - y) * (1.f + y);
      });
    case ActKind::gelu:
      return map_backward(a, begin, end, [](float dy, float x, float) {
        const Normal nd = normal_f32(x);
        return dy * (nd.cdf + x * nd.pdf);
      });
    case ActKind::gelu_tanh:
      return map_backward(a, begin, end, [](float dy, float x, float) {
        const float x2 = x * x;
        const float u = kSqrt2OverPi * (x + kGeluKappa * x2 * x);
        const float du = kSqrt2OverPi * (1.f + 3.f * kGeluKappa * x2);
        // 1 + tanh(u) = 2 s and 1 - tanh(u)^2 = 4 s (1 - s), with s = sigmoid(2u)
        const Sigmoid2 sg = sigmoid2_f32(2.f * u);
        return dy * (sg.s + 2.f * x * sg.s * sg.one_minus_s * du);
      });
    case ActKind::elu:
      return map_backward(a, begin, end, [alpha](float dy, float x, float) {
        return select(x <= 0.f, dy * alpha * exp_f32(x), dy);
      });
    case ActKind::relu6:
      return map_backward(a, begin, end, [](float dy, float x, float) {
        return select((x <= 0.f) | (x >= 6.f), 0.f, dy);
      });
    case ActKind::hardsigmoid:
      return map_backward(a, begin, end, [](float dy, float x, float) {
        return select((x > -3.f) & (x < 3.f), dy * (1.f / 6.f), 0.f);
      });
    case ActKind::hardswish:
      return map_backward(a, begin, end, [](float dy, float x, float) {
        return select(x <= -3.f, 0.f, select(x < 3.f, dy * (x / 3.f + 0.5f), dy));
      });
  }
}

void activation_simd(const ActivationArgs& a) {
  parallel_chunks(a.n, [&a](int64_t begin, int64_t end) { activation_range(a, begin, end); });
}

void activation_backward_simd(const ActivationBackwardArgs& a) {
  parallel_chunks(a.n, [&a](int64_t begin, int64_t end) {
    activation_backward_range(a, begin, end);
  });
}

// C = act(C + bias) over one block, for the fused GEMM epilogues (cpu_kernels.h); the loops run
// along C's rows, so they vectorize like the ones above.
template <class F>
HG_INLINE void map_block(const GemmEpilogue& e, int64_t i0, int64_t j0, int64_t m, int64_t n,
                         float* c, int64_t ldc, F f) {
  const float* __restrict bias = e.op.bias;
  for (int64_t i = 0; i < m; ++i) {
    float* __restrict row = c + i * ldc;
    if (bias != nullptr && !e.bias_per_row) {
      const float* __restrict b = bias + j0;
      for (int64_t j = 0; j < n; ++j) row[j] = f(row[j] + b[j]);
    } else {
      const float b = bias != nullptr ? bias[i0 + i] : 0.f;
      for (int64_t j = 0; j < n; ++j) row[j] = f(row[j] + b);
    }
  }
}

HG_ISA_CLONES void epilogue_block(const GemmEpilogue& e, int64_t i0, int64_t j0, int64_t m,
                                  int64_t n, float* c, int64_t ldc) {
  const float alpha = e.op.alpha;
  if (!e.op.has_act) return map_block(e, i0, j0, m, n, c, ldc, [](float x) { return x; });
  switch (e.op.act) {
    case ActKind::relu:
      return map_block(e, i0, j0, m, n, c, ldc, [](float x) { return x < 0.f ? 0.f : x; });
    case ActKind::leaky_relu:
      return map_block(e, i0, j0, m, n, c, ldc,
                       [alpha](float x) { return select(x > 0.f, x, alpha * x); });
    case ActKind::sigmoid:
      return map_block(e, i0, j0, m, n, c, ldc, [](float x) { return sigmoid2_f32(x).s; });
    case ActKind::tanh:
      return map_block(e, i0, j0, m, n, c, ldc, [](float x) { return tanh_f32(x); });
    case ActKind::gelu:
      return map_block(e, i0, j0, m, n, c, ldc, [](float x) { return x * normal_f32(x).cdf; });
    case ActKind::gelu_tanh:
      return map_block(e, i0, j0, m, n, c, ldc, [](float x) {
        const float u = kSqrt2OverPi * (x + kGeluKappa * x * x * x);
        return x * sigmoid2_f32(2.f * u).s;
      });
    case ActKind::elu:
      return map_block(e, i0, j0, m, n, c, ldc, [alpha](float x) {
        return select(x > 0.f, x, alpha * expm1_f32(x));
      });
    case ActKind::relu6:
      return map_block(e, i0, j0, m, n, c, ldc, [](float x) { return clamp06(x); });
    case ActKind::hardsigmoid:
      return map_block(e, i0, j0, m, n, c, ldc, [](float x) { return clamp06(x + 3.f) / 6.f; });
    case ActKind::hardswish:
      return map_block(e, i0, j0, m, n, c, ldc,
                       [](float x) { return x * clamp06(x + 3.f) / 6.f; });
  }
}

}  // namespace

void apply_epilogue(const GemmEpilogue& e, int64_t i0, int64_t j0, int64_t m, int64_t n, float* c,
                    int64_t ldc) {
  if (e.op.bias == nullptr && !e.op.has_act) return;
  epilogue_block(e, i0, j0, m, n, c, ldc);
}

}  // namespace hg::cpu

HG_REGISTER_KERNEL(activation_op, cpu, handwritten, "cpu.activation_simd", &hg::cpu::activation_simd);
HG_REGISTER_KERNEL(activation_backward_op, cpu, handwritten, "cpu.activation_backward_simd",
                   &hg::cpu::activation_backward_simd);
