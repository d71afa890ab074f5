// Fused forward ops on the CPU: conv2d_bias_act y = act(conv2d(x, w) + bias + residual) and
// linear_bias_act y = act(x @ w^T + bias) (x (M, K), w (N, K)). The epilogue (bias + activation,
// either optional) uses the activation kernels' vectorized math (apply_epilogue, activation.cpp).
//   handwritten: the packed GEMM (gemm.cpp) applies the epilogue to each MR-row strip of
//                micro-tiles as soon as its last K block is accumulated, while the strip is in
//                L1: no second pass over y.
//                conv: im2col + that GEMM per (image, group) (conv.cpp); depthwise
//                (groups == C == K): the direct kernel (conv_depthwise.cpp), bias as the
//                accumulators' start, activation on each plane right after it is computed.
//                The residual (optional): the GEMM's C operand (y_n = residual first, beta 1);
//                the batched narrow-plane path and the depthwise kernel add it as y is stored.
//   alternate:   (linear, impl="auto" only) the unpacked small-problem GEMM (gemm_unpacked.cpp)
//                then one epilogue pass over y: for narrow outputs (a classifier's N = 10) it
//                skips the packing and wastes fewer lanes than the packed kernel's 32-wide tile.
//   prepacked:   linear_bias_act_packed: the same packed GEMM with w packed once by
//                pack_linear_weight (gemm_pack_b) -- the engine's frozen weights -- so no
//                per-call packing of w, and threads split rows (each packs only its rows of x).
//                Up to kStripRows rows of x, the unpacked GEMM's strip kernel runs over the
//                packed panels instead (gemm_unpacked_prepacked), then one epilogue pass.
//   alternate:   (conv, impl="auto" only) Winograd F(2x2, 3x3) for 3x3 stride-1 layers
//                (conv_winograd.cpp): bias and residual added by its output transform, the
//                activation over each chunk's output rows while they are in cache.
//   vendor:      OpenBLAS sgemm, then one epilogue pass over the block it wrote (per (image,
//                group) for conv, the whole (M, N) for linear); named "+epilogue" in the table.
//                The conv's residual is the sgemm's C (beta = 1), as above.
// Test: PYTHONPATH=python python3 -m pytest -q tests/ops/test_fused.py
// Time: hg.ops.conv2d_bias_act(x, w, b, activation="relu", impl=...); hg.ops.last_impl()["ms"]
#include <algorithm>

#include "../core/checks.h"
#include "cpu_kernels.h"
#include "gemm_unpacked_kernel.h"
#include "im2col.h"

namespace hg::cpu {

void conv2d_bias_act_handwritten(const ConvBiasActArgs& a) {
  if (!depthwise_direct(a.g)) return conv2d_bias_act_lowered(a, /*vendor=*/false);
  ConvForwardArgs c;
  c.g = a.g;
  c.x = a.x;
  c.w = a.w;
  c.bias = a.epi.bias;
  c.y = a.y;
  conv2d_depthwise_forward(c, &a.epi, a.residual);
}

namespace {

void conv2d_bias_act_vendor(const ConvBiasActArgs& a) { conv2d_bias_act_lowered(a, true); }

// Winograd F(2x2, 3x3) where it applies (conv_winograd.cpp), else the default kernel.
void conv2d_bias_act_winograd_or_default(const ConvBiasActArgs& a) {
  if (!conv2d_bias_act_winograd(a)) conv2d_bias_act_handwritten(a);
}

void linear_bias_act_handwritten(const LinearBiasActArgs& a) {
  gemm_handwritten_epilogue(false, true, a.M, a.N, a.K, a.x, a.K, a.w, a.K, a.y, a.N,
                            GemmEpilogue{a.epi, /*bias_per_row=*/false});
}

void linear_bias_act_unpacked(const LinearBiasActArgs& a) {
  gemm_unpacked(false, true, a.M, a.N, a.K, 1.f, a.x, a.K, a.w, a.K, 0.f, a.y, a.N);
  apply_epilogue(GemmEpilogue{a.epi, false}, 0, 0, a.M, a.N, a.y, a.N);
}

// The front ends (core/ops_fused.cpp) have checked a.NR against the GEMM in use.
void pack_linear_weight_handwritten(const PackLinearWeightArgs& a) {
  gemm_pack_b(/*trans_b=*/true, a.w, a.K, a.K, a.N, a.packed);
}

// Rows up to which the unpacked GEMM's strips run over the packed panels (a batch-1 classifier
// would fill 1 of the packed kernel's MR rows), then one epilogue pass over y.
constexpr int64_t kStripRows = 16;

void linear_bias_act_packed_handwritten(const LinearPackedArgs& a) {
  if (a.M <= kStripRows &&
      gemm_unpacked_prepacked(false, a.M, a.N, a.K, a.x, a.K, a.packed, a.NR, a.y, a.N)) {
    apply_epilogue(GemmEpilogue{a.epi, /*bias_per_row=*/false}, 0, 0, a.M, a.N, a.y, a.N);
    return;
  }
  gemm_handwritten_epilogue_packed_b(a.M, a.N, a.K, a.x, a.K, a.packed, a.y, a.N,
                                     GemmEpilogue{a.epi, /*bias_per_row=*/false});
}

void linear_bias_act_vendor(const LinearBiasActArgs& a) {
  if (a.K == 0) {
    std::fill(a.y, a.y + a.M * a.N, 0.f);
  } else {
    gemm_blas(false, true, a.M, a.N, a.K, 1.f, a.x, a.K, a.w, a.K, 0.f, a.y, a.N);
  }
  apply_epilogue(GemmEpilogue{a.epi, false}, 0, 0, a.M, a.N, a.y, a.N);
}

}  // namespace
}  // namespace hg::cpu

HG_REGISTER_KERNEL(conv2d_bias_act_op, cpu, handwritten,
                   "cpu.conv2d_im2col_gemm_epilogue|depthwise_direct",
                   &hg::cpu::conv2d_bias_act_handwritten);
HG_REGISTER_KERNEL(conv2d_bias_act_op, cpu, vendor, "cpu.conv2d_im2col_openblas+epilogue",
                   &hg::cpu::conv2d_bias_act_vendor);
HG_REGISTER_ALTERNATE(conv2d_bias_act_op, cpu, "cpu.conv2d_winograd_f2x3_epilogue|im2col_gemm",
                      &hg::cpu::conv2d_bias_act_winograd_or_default);
HG_REGISTER_KERNEL(linear_bias_act_op, cpu, handwritten, "cpu.gemm_packed_epilogue",
                   &hg::cpu::linear_bias_act_handwritten);
HG_REGISTER_ALTERNATE(linear_bias_act_op, cpu, "cpu.gemm_unpacked+epilogue",
                      &hg::cpu::linear_bias_act_unpacked);
HG_REGISTER_KERNEL(linear_bias_act_op, cpu, vendor, "cpu.openblas_sgemm+epilogue",
                   &hg::cpu::linear_bias_act_vendor);
HG_REGISTER_KERNEL(pack_linear_weight_op, cpu, handwritten, "cpu.gemm_pack_b",
                   &hg::cpu::pack_linear_weight_handwritten);
HG_REGISTER_KERNEL(linear_bias_act_packed_op, cpu, handwritten, "cpu.gemm_packed_epilogue_prepacked",
                   &hg::cpu::linear_bias_act_packed_handwritten);

int64_t hg::cpu_gemm_panel_width() { return hg::cpu::gemm_handwritten_blocking().nr; }
