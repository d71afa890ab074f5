// conv2d_bias_act_packed on the CPU: the convolution with the output pixels as GEMM rows against
// weights packed once (the inference engine's frozen conv weights, groups 1).
// conv.cpp's lowering computes y_n (K, PQ) = w (K, CRS) @ col (CRS, PQ): the weights are the
// GEMM's A, packed again on every call, and the pixels its columns. Deep in a CNN the plane is
// tiny (ResNet-18 at 64x64: layer4 is 2x2) while K and CRS are large, so that product has a few
// columns: the packed GEMM wastes most of each NR-wide micro-tile. Here the product is transposed,
//   out (B*P*Q, K) = col^T (B*P*Q, CRS) @ w^T (CRS, K),
// for B images at a time (their col blocks side by side, im2col_images): the weights are the B
// operand, already in the GEMM's panels (pack_linear_weight of w viewed as (K, CRS)), so each
// call streams them once and packs only the small col^T; the pixels of B images fill the MR-tall
// rows. out is then scattered back to NCHW, y[n, k, pq] = out[n*PQ + pq, k] + bias[k]
// (+ residual, read just before the same element of y is written, so it may be y itself), and the
// activation runs over each block of 16 channels of one image while it is in cache.
// B: enough images for about kRowsPerGemm rows (at least one), so col and out stay a few MB.
// Threads: the GEMM splits the rows and columns of out (gemm_handwritten_prepacked); the lowering
// and the scatter split images / channel blocks.
// Test: PYTHONPATH=python python3 -m pytest -q tests/ops/test_conv_packed.py
#include <algorithm>
#include <memory>

#include "../core/checks.h"
#include "cpu_kernels.h"
#include "gemm_unpacked_kernel.h"
#include "im2col.h"

namespace hg::cpu {
namespace {

constexpr int64_t kRowsPerGemm = 1024;
// Rows up to which the unpacked GEMM's strips run over the packed panels (gemm_unpacked_prepacked:
// no padding of the rows to the packed kernel's MR, each panel read from L2 once per 8-row tile).
// Measured (1 thread, shared machine) against the packed GEMM on ResNet's 3x3 layers: 3.4x
// faster at 32 rows (512 channels, 2x2, batch 8), 1.1-1.2x at 128-256 rows, no clear gain at 512.
constexpr int64_t kStripRows = 256;
// Elements below which a lowering or scatter pass stays on one thread.
constexpr int64_t kParallelMin = 1 << 15;

std::unique_ptr<float[]> scratch(int64_t n) {
  return std::unique_ptr<float[]>(new float[size_t(std::max<int64_t>(n, 1))]);
}

void conv2d_bias_act_packed_kernel(const ConvPackedArgs& a) {
  const ConvGeometry& g = a.g;
  const int64_t PQ = g.P * g.Q, CRS = g.C * g.R * g.S, K = g.K, HW = g.H * g.W;
  const int64_t B = std::min(g.N, std::max<int64_t>(1, kRowsPerGemm / std::max<int64_t>(PQ, 1)));
  const int64_t plane = (g.H + 2 * g.pad_h) * (g.W + 2 * g.pad_w);
  const int T = int(std::min<int64_t>(available_threads(), B));
  auto buf = scratch(CRS * B * PQ + B * PQ * K + plane * std::max(T, 1));
  float* col = buf.get();
  float* out = col + CRS * B * PQ;
  float* pad = out + B * PQ * K;
  std::unique_ptr<int32_t[]> taps(new int32_t[size_t(std::max<int64_t>(PQ, 1))]);
  im2col_images_taps(g, 1, taps.get());
  const int64_t tiles = (K + 15) / 16;
  GemmEpilogue act{a.epi, /*bias_per_row=*/true};
  act.op.bias = nullptr;  // added by the scatter
  for (int64_t n0 = 0; n0 < g.N; n0 += B) {
    const int64_t nb = std::min(B, g.N - n0), rows = nb * PQ;
    // col (CRS, rows): image b's block at columns [b*PQ, (b+1)*PQ).
    parallel_for(nb, CRS * rows >= kParallelMin ? T : 1, [&](int64_t b) {
      im2col_images(g, a.x + (n0 + b) * g.C * HW, 1, col + b * PQ, rows,
                    pad + parallel_slot() * plane, taps.get());
    });
    if (rows > kStripRows ||
        !gemm_unpacked_prepacked(/*trans_a=*/true, rows, K, CRS, col, rows, a.packed, a.NR, out, K))
      gemm_handwritten_prepacked(/*trans_a=*/true, rows, K, CRS, col, rows, a.packed, out, K);
    // Per image, 16 output channels at a time: y's (16, PQ) rows from out's (PQ, 16) columns.
    parallel_for(nb * tiles, rows * K >= kParallelMin ? available_threads() : 1, [&](int64_t t) {
      const int64_t b = t / tiles, k0 = (t % tiles) * 16, k1 = std::min(K, k0 + 16);
      const float* __restrict src = out + b * PQ * K;
      const int64_t base = (n0 + b) * K * PQ;
      float* yn = a.y + base;
      for (int64_t k = k0; k < k1; ++k) {
        const float add = a.epi.bias ? a.epi.bias[k] : 0.f;
        float* yk = yn + k * PQ;
        if (a.residual) {
          const float* rk = a.residual + base + k * PQ;
          for (int64_t p = 0; p < PQ; ++p) yk[p] = src[p * K + k] + add + rk[p];
        } else {
          for (int64_t p = 0; p < PQ; ++p) yk[p] = src[p * K + k] + add;
        }
      }
      if (a.epi.has_act) apply_epilogue(act, k0, 0, k1 - k0, PQ, yn + k0 * PQ, PQ);
    });
  }
}

}  // namespace
}  // namespace hg::cpu

HG_REGISTER_KERNEL(conv2d_bias_act_packed_op, cpu, handwritten, "cpu.conv2d_im2col_rows_gemm_prepacked",
                   &hg::cpu::conv2d_bias_act_packed_kernel);
