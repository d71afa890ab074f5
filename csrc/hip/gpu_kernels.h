// GPU kernels that other GPU kernels call directly (host entry points; they queue work on
// hg::gpu::stream() and return without waiting). Definitions in gemm.hip and conv_*.hip.
#pragma once
#include <cstdint>

#include "../core/ops.h"

namespace hg::gpu {

// Row-major strided-batched SGEMM: for b in [0, batch)
//   y_b = alpha * op(a_b) @ op(b_b) + beta * c_b,   x_b = x + b * stride_x,
// op(a_b) is M x K (a_b is K x M when trans_a), op(b_b) is K x N (N x K when trans_b).
// c may be nullptr (then beta is unused) or equal to y (accumulate in place); beta == 0 never
// reads c. Any M, N, K >= 0 and leading dimensions; float4 paths are taken where aligned.
struct GemmStrided {
  bool trans_a = false, trans_b = false;
  int64_t M = 0, N = 0, K = 0, batch = 1;
  float alpha = 1.f, beta = 0.f;
  const float* a = nullptr; int64_t lda = 0, stride_a = 0;
  const float* b = nullptr; int64_t ldb = 0, stride_b = 0;
  const float* c = nullptr; int64_t ldc = 0, stride_c = 0;
  float* y = nullptr;       int64_t ldy = 0, stride_y = 0;
};

// The production kernel: shared-memory tiled, register-blocked (gemm.hip).
void gemm_strided(const GemmStrided& g);
// The v0 reference: one thread per output element, a plain loop over K.
void gemm_strided_v0(const GemmStrided& g);

// Convolutions (args checked by the front end; conv.hip picks among these per call).
// The geometry as 32-bit ints for the kernels; conv2d_dims raises NotImplementedError when a
// tensor of the convolution has 2^31 elements or more.
struct ConvDims {
  int N, C, H, W, K, R, S, P, Q, sh, sw, ph, pw, dh, dw, groups, Cg, Kg;
};
ConvDims conv2d_dims(const ConvGeometry& g);
// Implicit GEMM over the main loop of gemm_tile.h (conv_igemm.hip): any groups, stride,
// padding, dilation; bias fused into the forward; split-K for the weight gradient.
void conv2d_forward_igemm(const ConvForwardArgs& a);
void conv2d_backward_data_igemm(const ConvBackwardDataArgs& a);
void conv2d_backward_weight_igemm(const ConvBackwardWeightArgs& a);
// Depthwise (groups == C, one input channel per group): direct kernels (conv_depthwise.hip).
bool conv2d_is_depthwise(const ConvGeometry& g);
void conv2d_forward_depthwise(const ConvForwardArgs& a);
void conv2d_backward_data_depthwise(const ConvBackwardDataArgs& a);
void conv2d_backward_weight_depthwise(const ConvBackwardWeightArgs& a);
// v0 references: one thread per output element, plain loops (conv_v0.hip).
void conv2d_forward_v0(const ConvForwardArgs& a);
void conv2d_backward_data_v0(const ConvBackwardDataArgs& a);
void conv2d_backward_weight_v0(const ConvBackwardWeightArgs& a);
// conv2d_bias_act: the forward kernels above with the bias + activation epilogue fused in.
void conv2d_bias_act_igemm(const ConvBiasActArgs& a);
void conv2d_bias_act_depthwise(const ConvBiasActArgs& a);

// Attention composed of vendor calls (the vendor variant; attention.hip drives it, the vendor
// files pass their library's calls): S = scale q k^T and the products with S by the strided-batched
// SGEMM, the row softmax and its backward by the DNN library; the causal mask and the rows'
// log-sum-exp by two small handwritten kernels. Materializes (B*H, Tq, Tk) scores (2-3 buffers).
struct ComposedAttentionOps {
  void (*gemm)(const GemmStrided& g);  // row-major, as gemm_strided
  // y = softmax over the last axis of x (rows, cols); masked entries are -inf
  void (*softmax)(const float* x, float* y, int64_t rows, int64_t cols);
  // dx = alpha * y * (dy - rowsum(dy * y))
  void (*softmax_backward)(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols,
                           float alpha);
};
// The handwritten layer norm (layer_norm.hip), for the MIOpen path's cases MIOpen does not take.
void layer_norm_gpu(const LayerNormArgs& a);
// Strided-batched SGEMM (row-major, as gemm_strided; c unused) by the vendor BLAS, defined in
// vendor/rocblas.cpp / vendor/cublas.cpp when that library is built.
void gemm_strided_rocblas(const GemmStrided& g);
void gemm_strided_cublas(const GemmStrided& g);
void attention_composed(const AttentionArgs& a, const ComposedAttentionOps& ops);
void attention_backward_composed(const AttentionBackwardArgs& a, const ComposedAttentionOps& ops);

}  // namespace hg::gpu
