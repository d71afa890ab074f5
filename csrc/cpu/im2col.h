// CPU convolution internals shared by conv.cpp (im2col + GEMM, handwritten and vendor) and
// conv_depthwise.cpp (the direct depthwise kernels the handwritten variant uses).
// Layouts follow ops.h: x is one image (C, H, W); col is (C*R*S, P*Q) row-major, its row
// (c*R + r)*S + s holding x[c, p*sh - ph + r*dh, q*sw - pw + s*dw] for every output pixel
// (p, q), or 0 where that tap falls in the padding.
#pragma once
#include <algorithm>
#include <cstdint>

#include "../core/ops.h"

namespace hg::cpu {

// The output columns q whose input column q*stride + off lies inside [0, W), as [lo, hi).
// `off` is the kernel column's offset s*dil - pad (the same formula serves rows).
inline void valid_range(int64_t off, int64_t stride, int64_t W, int64_t Q, int64_t* lo,
                        int64_t* hi) {
  const int64_t first = off >= 0 ? 0 : (-off + stride - 1) / stride;
  const int64_t end = off >= W ? 0 : (W - 1 - off) / stride + 1;
  *lo = std::min(first, Q);
  *hi = std::max(std::min(end, Q), *lo);
}

// A 1x1 kernel with stride 1 and no padding: col is x itself, no copy needed.
inline bool im2col_is_identity(const ConvGeometry& g) {
  return g.R == 1 && g.S == 1 && g.stride_h == 1 && g.stride_w == 1 && g.pad_h == 0 &&
         g.pad_w == 0;
}

// col = im2col(x) for one image with all g.C channels. `threaded`: split the rows over the CPU
// threads (off when the caller already runs one image per thread). `ldcol`: the distance between
// col rows (P*Q when 0); a wider ldcol places several images' blocks side by side in one col.
void im2col(const ConvGeometry& g, const float* x, float* col, bool threaded, int64_t ldcol = 0);

// Several small images at once (the narrow-plane forward): col (C*R*S, ld) gets images
// x[0..nb) side by side, image b's block at columns [b*P*Q, (b+1)*P*Q). Each channel's nb planes
// are first copied into `pad` with their zero border (nb*(H+2*pad_h)*(W+2*pad_w) floats), so
// every col row is one gather, out[j] = pad[tap0 + taps[j]], with no bounds tests; `taps` (nb*P*Q
// entries) comes from im2col_images_taps. Single-threaded (callers run one chunk per thread).
void im2col_images_taps(const ConvGeometry& g, int64_t nb, int32_t* taps);
void im2col_images(const ConvGeometry& g, const float* x, int64_t nb, float* col, int64_t ld,
                   float* pad, const int32_t* taps);

// x = col2im(col): every element of x (one image, g.C channels) is overwritten with the sum of
// the col entries that im2col would have copied from it (0 where none).
void col2im(const ConvGeometry& g, const float* col, float* x, bool threaded);

// Depthwise: every group is one input channel and one output channel (groups == C == K), so
// im2col + GEMM would multiply 1-row matrices; conv_depthwise.cpp computes these directly.
inline bool is_depthwise(const ConvGeometry& g) { return g.groups == g.C && g.groups == g.K; }
// Whether the handwritten kernel runs the direct kernels below: depthwise, and their per-thread
// zero-padded plane at most a few times the input and output planes (a padding that a large
// stride or dilation mostly skips would make it huge; im2col + GEMM then runs instead).
bool depthwise_direct(const ConvGeometry& g);
// epi (conv2d_bias_act): its activation is applied to each output plane right after the plane is
// computed (a.bias is the bias, added as the accumulators' initial value); residual
// (conv2d_bias_act, y's shape, may be a.y itself) is added before the activation.
void conv2d_depthwise_forward(const ConvForwardArgs& a, const FusedEpilogue* epi = nullptr,
                              const float* residual = nullptr);
void conv2d_depthwise_backward_data(const ConvBackwardDataArgs& a);
void conv2d_depthwise_backward_weight(const ConvBackwardWeightArgs& a);

// Winograd F(2x2, 3x3) (conv_winograd.cpp): 3x3, stride 1, dilation 1, groups 1, padding <= 2.
// Each returns false, doing nothing, where it does not apply.
bool winograd_applies(const ConvGeometry& g);
bool conv2d_winograd_forward(const ConvForwardArgs& a);
bool conv2d_winograd_backward_data(const ConvBackwardDataArgs& a);
bool conv2d_winograd_backward_weight(const ConvBackwardWeightArgs& a);
// conv2d_bias_act: bias and residual (may be a.y) added by the output transform, the activation
// over each chunk's rows right after.
bool conv2d_bias_act_winograd(const ConvBiasActArgs& a);

// Direct convolution for few channels (conv_direct.cpp): dilation 1, groups 1, padding at most
// the kernel size, stride 1 unless any_stride (the kvec kernels). Each returns false, doing
// nothing, where it does not apply.
bool direct_applies(const ConvGeometry& g, bool any_stride);
bool conv2d_direct_forward(const ConvForwardArgs& a);
bool conv2d_direct_backward_weight(const ConvBackwardWeightArgs& a);
// The same, 16 output channels per vector (for K a multiple of 16: LeNet's 6 -> 16).
bool conv2d_direct_kvec_forward(const ConvForwardArgs& a);
bool conv2d_direct_kvec_backward_weight(const ConvBackwardWeightArgs& a);
// Backward data (padding <= kernel size - 1) as the direct forward over dy.
bool conv2d_direct_backward_data(const ConvBackwardDataArgs& a);
// Backward weight as register tiles of taps x output-channel vectors (conv_bwd_weight.cpp),
// any stride; false, doing nothing, where direct_applies(g, true) does not hold.
bool conv2d_taps_backward_weight(const ConvBackwardWeightArgs& a);

// conv2d_bias_act through im2col + GEMM (conv.cpp): our GEMM with its per-micro-tile epilogue,
// or (vendor) the OpenBLAS sgemm and one epilogue pass per (image, group) block.
void conv2d_bias_act_lowered(const ConvBiasActArgs& a, bool vendor);
// The default handwritten conv2d_bias_act (fused.cpp): the direct depthwise kernels where they
// apply, else conv2d_bias_act_lowered; the alternates fall back to it where they do not apply.
void conv2d_bias_act_handwritten(const ConvBiasActArgs& a);

}  // namespace hg::cpu
