// The GPU convolution ops: picks the kernel per call and registers the handwritten kernels.
//   groups == C > 1 (depthwise):  direct kernels (conv_depthwise.hip);
//   otherwise:                    implicit GEMM on the tiled main loop (conv_igemm.hip);
//   reference kernels gpu.conv2d_*_v0: the v0 kernels for every shape (conv_v0.hip).
// Kernels index with 32-bit ints: conv2d_dims refuses tensors of 2^31 elements or more.
// Tests: tests/ops/test_conv.py (gpu params), tests/gpu/test_reference_kernels.py.
#include <cstdint>
#include <limits>

#include "gpu_kernels.h"
#include "runtime.h"

namespace hg::gpu {

ConvDims conv2d_dims(const ConvGeometry& g) {
  const int64_t x = g.N * g.C * g.H * g.W, y = g.N * g.K * g.P * g.Q;
  const int64_t w = g.K * (g.C / g.groups) * g.R * g.S;
  const int64_t limit = std::numeric_limits<int32_t>::max();
  if (x > limit || y > limit || w > limit)
    fail(ErrorKind::not_implemented, "conv2d on the GPU supports tensors of fewer than 2^31 ",
         "elements; here x has ", x, ", y has ", y, " and w has ", w);
  return ConvDims{int(g.N),        int(g.C),        int(g.H),          int(g.W),
                  int(g.K),        int(g.R),        int(g.S),          int(g.P),
                  int(g.Q),        int(g.stride_h), int(g.stride_w),   int(g.pad_h),
                  int(g.pad_w),    int(g.dil_h),    int(g.dil_w),      int(g.groups),
                  int(g.C / g.groups), int(g.K / g.groups)};
}

namespace {

void conv2d_forward_gpu(const ConvForwardArgs& a) {
  if (conv2d_is_depthwise(a.g)) conv2d_forward_depthwise(a);
  else conv2d_forward_igemm(a);
}

void conv2d_backward_data_gpu(const ConvBackwardDataArgs& a) {
  if (conv2d_is_depthwise(a.g)) conv2d_backward_data_depthwise(a);
  else conv2d_backward_data_igemm(a);
}

void conv2d_backward_weight_gpu(const ConvBackwardWeightArgs& a) {
  if (conv2d_is_depthwise(a.g)) conv2d_backward_weight_depthwise(a);
  else conv2d_backward_weight_igemm(a);
}

}  // namespace
}  // namespace hg::gpu

HG_REGISTER_KERNEL(conv2d_forward_op, gpu, handwritten,
                   "gpu.conv2d_implicit_gemm|depthwise_direct", &hg::gpu::conv2d_forward_gpu);
HG_REGISTER_KERNEL(conv2d_backward_data_op, gpu, handwritten,
                   "gpu.conv2d_backward_data_implicit_gemm|depthwise_direct",
                   &hg::gpu::conv2d_backward_data_gpu);
HG_REGISTER_KERNEL(conv2d_backward_weight_op, gpu, handwritten,
                   "gpu.conv2d_backward_weight_implicit_gemm_splitk|depthwise_reduce",
                   &hg::gpu::conv2d_backward_weight_gpu);
HG_REGISTER_REFERENCE(conv2d_forward_op, gpu, "gpu.conv2d_forward_v0", &hg::gpu::conv2d_forward_v0);
HG_REGISTER_REFERENCE(conv2d_backward_data_op, gpu, "gpu.conv2d_backward_data_v0",
                      &hg::gpu::conv2d_backward_data_v0);
HG_REGISTER_REFERENCE(conv2d_backward_weight_op, gpu, "gpu.conv2d_backward_weight_v0",
                      &hg::gpu::conv2d_backward_weight_v0);
