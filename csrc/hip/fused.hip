// The fused forward ops on the GPU, handwritten: conv2d_bias_act
// y = act(conv2d(x, w) + bias + residual) and linear_bias_act y = act(x @ w^T + bias), x (M, K),
// w (N, K).
//   conv:   the conv2d forward kernels with the epilogue fused (activation_device.h): implicit
//           GEMM (conv_igemm.hip), depthwise direct (conv_depthwise.hip), each reading the
//           residual (optional, y's layout, may be y itself) where it writes y; the reference
//           kernel gpu.conv2d_v0+activation: the v0 conv, then the activation kernel (or, with a
//           residual, the epilogue pass below adding it and the activation).
//   linear: the tiled GEMM main loop (gemm_tile.h), A = x (k contiguous), B = w^T (w's rows k
//           contiguous); each thread's 4-wide output fragments get bias[n] and the activation in
//           registers before the (float4 where aligned) store. One kernel instance per kind.
// Which thread computes which output element and what shared memory holds: gemm_tile.h.
// fused_epilogue_pass (declared in kernels_elementwise.h) is the same epilogue as one pass over
// y, for the vendor wrappers after a library GEMM or convolution; residual_kept_aside gives those
// passes a residual that the convolution writing y would otherwise overwrite.
// Tests: tests/ops/test_fused.py (gpu params).
#include "activation_device.h"
#include "gemm_tile.h"
#include "gpu_kernels.h"
#include "kernels_elementwise.h"

namespace hg::gpu {
namespace {

template <class Act>
struct LinearEpilogue {
  float* y;
  int64_t ldy;
  const float* bias;  // (N) or nullptr
  Act act;
  bool vec;  // y and ldy aligned to float4
  __device__ void operator()(int64_t, int, int64_t m, int64_t n, const float* v, int count) const {
    float out[4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
      out[i] = i < count ? act(v[i] + (bias != nullptr ? bias[n + i] : 0.f)) : 0.f;
    float* dst = y + m * ldy + n;
    if (vec && count == 4) {
      *reinterpret_cast<float4*>(dst) = make_float4(out[0], out[1], out[2], out[3]);
    } else {
#pragma unroll
      for (int i = 0; i < 4; ++i)
        if (i < count) dst[i] = out[i];
    }
  }
};

template <class Cfg, class Act>
void linear_with(const LinearBiasActArgs& a, Act act) {
  using LoadA = tile::LoadKContiguous<Cfg, Cfg::BM>;
  using LoadB = tile::LoadKContiguous<Cfg, Cfg::BN>;
  const bool vec_k = a.K % 4 == 0;
  const typename LoadA::Params pa{a.x, a.K, 0, a.M, tile::aligned16(a.x) && vec_k};
  const typename LoadB::Params pb{a.w, a.K, 0, a.N, tile::aligned16(a.w) && vec_k};
  const LinearEpilogue<Act> epi{a.y, a.N, a.epi.bias, act, tile::aligned16(a.y) && a.N % 4 == 0};
  tile::Problem pr;
  pr.M = a.M, pr.N = a.N, pr.K = a.K, pr.nz = 1, pr.splits = 1, pr.k_chunk = a.K;
  tile::launch<Cfg, LoadA, LoadB>(pa, pb, epi, pr);
}

void linear_bias_act_tiled(const LinearBiasActArgs& a) {
  with_activation(a.epi, [&](auto act) {
    if (tile::prefer_large(a.M, a.N, 1)) linear_with<tile::Large>(a, act);
    else linear_with<tile::Small>(a, act);
  });
}

void conv2d_bias_act_v0(const ConvBiasActArgs& a) {
  if (a.residual != nullptr) {
    Tensor kept;
    const float* residual = residual_kept_aside(a, &kept);
    conv2d_forward_v0(ConvForwardArgs{a.g, a.x, a.w, a.epi.bias, a.y});
    FusedEpilogue act_only = a.epi;
    act_only.bias = nullptr;  // the v0 conv added it
    return fused_epilogue_pass(act_only, a.y, a.g.N, a.g.K, a.g.P * a.g.Q, residual);
  }
  conv2d_forward_v0(ConvForwardArgs{a.g, a.x, a.w, a.epi.bias, a.y});
  if (a.epi.has_act) {
    const int64_t n = a.g.N * a.g.K * a.g.P * a.g.Q;
    activation_handwritten(ActivationArgs{a.epi.act, a.epi.alpha, n, a.y, a.y});
  }
}

void conv2d_bias_act_gpu(const ConvBiasActArgs& a) {
  if (conv2d_is_depthwise(a.g)) {
    conv2d_bias_act_depthwise(a);
  } else {
    conv2d_bias_act_igemm(a);
  }
}

// y viewed as (outer, C, inner): y[o, c, i] = act(y[o, c, i] + bias[c] + residual[o, c, i]),
// grid-stride; residual (nullptr: none) never aliases y here.
template <class Act>
__global__ void __launch_bounds__(kThreads)
    epilogue_pass_kernel(float* __restrict__ y, const float* __restrict__ bias,
                         const float* __restrict__ residual, int64_t total, int64_t C,
                         int64_t inner, Act act) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float b = bias != nullptr ? bias[(i / inner) % C] : 0.f;
    y[i] = act(y[i] + b + (residual != nullptr ? residual[i] : 0.f));
  }
}

}  // namespace

void fused_epilogue_pass(const FusedEpilogue& e, float* y, int64_t outer, int64_t C,
                         int64_t inner, const float* residual) {
  const int64_t total = outer * C * inner;
  if (total == 0 || (e.bias == nullptr && !e.has_act && residual == nullptr)) return;
  with_activation(e, [&](auto act) {
    epilogue_pass_kernel<<<blocks_for(total), kThreads, 0, current_stream()>>>(
        y, e.bias, residual, total, C, inner, act);
    HG_LAUNCH_CHECK("epilogue_pass_kernel");
  });
}

const float* residual_kept_aside(const ConvBiasActArgs& a, Tensor* kept) {
  if (a.residual != a.y) return a.residual;
  const int64_t n = a.g.N * a.g.K * a.g.P * a.g.Q;
  *kept = scratch(n);
  HG_GPU_CHECK(hipMemcpyAsync(kept->data<float>(), a.residual, size_t(n) * sizeof(float),
                              hipMemcpyDeviceToDevice, current_stream()));
  return kept->data<float>();
}

}  // namespace hg::gpu

HG_REGISTER_KERNEL(conv2d_bias_act_op, gpu, handwritten,
                   "gpu.conv2d_implicit_gemm_epilogue|depthwise_direct",
                   &hg::gpu::conv2d_bias_act_gpu);
HG_REGISTER_REFERENCE(conv2d_bias_act_op, gpu, "gpu.conv2d_v0+activation",
                      &hg::gpu::conv2d_bias_act_v0);
HG_REGISTER_KERNEL(linear_bias_act_op, gpu, handwritten, "gpu.gemm_tiled_epilogue",
                   &hg::gpu::linear_bias_act_tiled);
