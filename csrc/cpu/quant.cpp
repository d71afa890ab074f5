// CPU INT8 inference kernels: quantize (symmetric, round half to even, clamp to [-127, 127],
// NaN -> 0), qgemm and qconv2d with int32 accumulation and a fused dequantize + bias + activation
// epilogue.
// Variants: the dot-product block is compiled for generic x86-64, AVX2 and AVX-512BW and picked
// at run time (quant_kernel.inc). qconv2d lowers each (image, group) onto that block through an
// int8 im2col whose rows are output pixels, so each output channel is one dot product per pixel.
// No CPU vendor library here has an INT8 GEMM (OpenBLAS has none): the vendor variant falls back.
// Tests: tests/ops/test_quant.py. Bench: bench/bench_infer.py (int8 vs fp32).
#include <omp.h>

#include <cmath>
#include <vector>

#include "../core/checks.h"
#include "cpu_kernels.h"
#include "quant_kernel.h"

namespace hg::cpu {
namespace {

QDotBlockFn pick_qdot() {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx512bw")) return &avx512::qdot_block;
  if (__builtin_cpu_supports("avx2")) return &avx2::qdot_block;
#endif
  return &generic::qdot_block;
}
const QDotBlockFn qdot = pick_qdot();

QEpilogue make_epilogue(float x_scale, const float* w_scale, const float* bias, bool has_act,
                        ActKind act, float alpha) {
  QEpilogue e;
  e.x_scale = x_scale;
  e.w_scale = w_scale;
  e.bias = bias;
  e.has_act = has_act;
  e.act = act;
  e.alpha = alpha;
  return e;
}

void quantize_kernel(const QuantizeArgs& a) {
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (a.n > (1 << 16))
  for (int64_t i = 0; i < a.n; ++i) {
    const float v = std::nearbyint(a.x[i] * a.inv_scale);  // round half to even
    const float c = v > 127.f ? 127.f : (v < -127.f ? -127.f : v);
    a.q[i] = static_cast<int8_t>(c == c ? c : 0.f);  // NaN -> 0 (the cast of NaN is undefined)
  }
}

void qgemm_kernel(const QGemmArgs& a) {
  const QEpilogue e = make_epilogue(a.x_scale, a.w_scale, a.bias, a.has_act, a.act, a.alpha);
  const int64_t rows = 16;
  const int64_t blocks = (a.M + rows - 1) / rows;
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (a.M * a.N * a.K > (1 << 18))
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t m0 = b * rows, m1 = std::min(a.M, m0 + rows);
    qdot(m1 - m0, a.N, a.K, a.xq + m0 * a.K, a.K, a.wq, a.K, e, a.y + m0 * a.N, a.N, 1);
  }
}

// col[(p * Q + q) * CRS + (c * R + r) * S + s] = x[c, p*sh - ph + r*dh, q*sw - pw + s*dw] (0 outside).
void im2col_int8(const ConvGeometry& g, const int8_t* x, int64_t c0, int64_t cpg, int8_t* col) {
  const int64_t crs = cpg * g.R * g.S;
  for (int64_t p = 0; p < g.P; ++p)
    for (int64_t q = 0; q < g.Q; ++q) {
      int8_t* row = col + (p * g.Q + q) * crs;
      for (int64_t c = 0; c < cpg; ++c)
        for (int64_t r = 0; r < g.R; ++r) {
          const int64_t h = p * g.stride_h - g.pad_h + r * g.dil_h;
          const int8_t* xr = x + ((c0 + c) * g.H + h) * g.W;
          int8_t* out = row + (c * g.R + r) * g.S;
          for (int64_t s = 0; s < g.S; ++s) {
            const int64_t w = q * g.stride_w - g.pad_w + s * g.dil_w;
            out[s] = (h >= 0 && h < g.H && w >= 0 && w < g.W) ? xr[w] : int8_t(0);
          }
        }
    }
}

void qconv2d_kernel(const QConvArgs& a) {
  const ConvGeometry& g = a.g;
  const int64_t cpg = g.C / g.groups, kpg = g.K / g.groups;
  const int64_t crs = cpg * g.R * g.S, pq = g.P * g.Q;
  const int64_t tasks = g.N * g.groups;
#pragma omp parallel num_threads(num_threads()) if (tasks > 1)
  {
    std::vector<int8_t> col(static_cast<size_t>(pq * crs));
#pragma omp for schedule(dynamic)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t n = t / g.groups, grp = t % g.groups;
      im2col_int8(g, a.xq + n * g.C * g.H * g.W, grp * cpg, cpg, col.data());
      const int64_t k0 = grp * kpg;
      const QEpilogue e = make_epilogue(a.x_scale, a.w_scale + k0, a.bias ? a.bias + k0 : nullptr,
                                        a.has_act, a.act, a.alpha);
      // rows m = output pixels, columns n = output channels of the group: y[k][pixel]
      qdot(pq, kpg, crs, col.data(), crs, a.wq + k0 * crs, crs, e,
           a.y + (n * g.K + k0) * pq, 1, pq);
    }
  }
}

}  // namespace
}  // namespace hg::cpu

HG_REGISTER_KERNEL(quantize_op, cpu, handwritten, "cpu.quantize_int8", &hg::cpu::quantize_kernel);
HG_REGISTER_FALLBACK(quantize_op, cpu, vendor, "no CPU vendor library quantizes tensors");
HG_REGISTER_KERNEL(qgemm_op, cpu, handwritten, "cpu.qgemm_int8_dot4", &hg::cpu::qgemm_kernel);
HG_REGISTER_FALLBACK(qgemm_op, cpu, vendor, "OpenBLAS has no INT8 GEMM");
HG_REGISTER_KERNEL(qconv2d_op, cpu, handwritten, "cpu.qconv2d_int8_im2col", &hg::cpu::qconv2d_kernel);
HG_REGISTER_FALLBACK(qconv2d_op, cpu, vendor, "OpenBLAS has no INT8 GEMM");
