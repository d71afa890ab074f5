// GPU bias, float32, x viewed as (outer, C, inner) (NCHW activations: (N, C, H*W); linear layers:
// (N, C, 1)):
//   bias_add       y[o, c, i] = x[o, c, i] + bias[c]   (x may be y: the vendor convolution
//                  wrappers add the bias in place after MIOpen / cuDNN, which run with beta = 0);
//   bias_backward  db[c] = sum of dy over (o, i).
//
// Kernels (handwritten, the only registered ones):
//   gpu.bias_add: grid-stride, one thread per element, channel from two multiply-high divisions;
//   gpu.bias_backward_two_stage: channel_sums (kernels_elementwise.h): coalesced block partials
//     (planar for inner >= 32, column-wise for small inner), then a fixed-order finalize in
//     double -- deterministic, no atomics;
//   gpu.bias_backward_v0 (reference): one thread per channel.
//
// Test:  PYTHONPATH=python python3 -m pytest -q tests/ops/test_conv.py -k bias -m gpu
// Bench (one command line): PYTHONPATH=python python3 -m timeit -s "import numpy as np, hipgrad as hg"
//          -s "dy = hg.tensor(np.random.randn(64, 64, 56, 56).astype('f4'), device='gpu:0')"
//          "hg.ops.bias_backward(dy); hg.synchronize()"
#include "kernels_elementwise.h"

namespace hg::gpu {
namespace {

template <class D>
__global__ void bias_add_kernel(typename D::Index total, D inner_d, D C_d, const float* x,
                                const float* __restrict__ bias, float* y) {
  using I = typename D::Index;
  for (I j = I(blockIdx.x) * blockDim.x + threadIdx.x; j < total; j += I(gridDim.x) * blockDim.x) {
    const I t = inner_d.div(j);
    const I c = t - C_d.div(t) * I(C_d.d);
    y[j] = x[j] + bias[c];
  }
}

struct SumDy {
  const float* dy;
  __device__ void operator()(int64_t off, int64_t, float (&acc)[1]) const { acc[0] += dy[off]; }
};

template <Path P>
void bias_backward_gpu(const BiasBackwardArgs& a) {
  if (a.C == 0) return;
  channel_sums<1>(P, SumDy{a.dy}, a.outer, a.C, a.inner, ChannelOut<1>{{a.db}, {1.f}});
}

}  // namespace

void bias_add_handwritten(const BiasAddArgs& a) {
  const int64_t total = a.outer * a.C * a.inner;
  if (total == 0) return;
  with_divider(total, [&](auto tag) {
    using D = decltype(tag);
    bias_add_kernel<D><<<blocks_for(total), kThreads, 0, current_stream()>>>(
        typename D::Index(total), D(a.inner), D(a.C), a.x, a.bias, a.y);
    HG_LAUNCH_CHECK("bias_add_kernel");
  });
}

}  // namespace hg::gpu

HG_REGISTER_KERNEL(bias_add_op, gpu, handwritten, "gpu.bias_add", &hg::gpu::bias_add_handwritten);
HG_REGISTER_KERNEL(bias_backward_op, gpu, handwritten, "gpu.bias_backward_two_stage",
                   &hg::gpu::bias_backward_gpu<hg::gpu::Path::fast>);
HG_REGISTER_REFERENCE(bias_backward_op, gpu, "gpu.bias_backward_v0",
                      &hg::gpu::bias_backward_gpu<hg::gpu::Path::reference>);
