// cuDNN wrapper (NVIDIA builds with HIPGRAD_HAVE_CUDNN; cuDNN 9's legacy API) : gpu vendor kernels
//   conv2d_forward / _backward_data / _backward_weight
//       cudnnConvolution{Forward,BackwardData,BackwardFilter} (CUDNN_CROSS_CORRELATION, groups via
//       cudnnSetConvolutionGroupCount). The algorithm is cuDNN's heuristic choice
//       (cudnnGet*Algorithm_v7: the first result with status SUCCESS and an allowed math type),
//       remembered per (device, shape) with its workspace size from cudnnGet*WorkspaceSize.
//       Math: CUDNN_FMA_MATH (strict FP32 -- CUDNN_DEFAULT_MATH would allow TF32 on A100 and
//       newer) unless HIPGRAD_ALLOW_TF32=1. The bias is added afterwards, in place, by hipgrad's
//       bias_add kernel.
//   conv2d_bias_act
//       cudnnConvolutionBiasActivationForward for relu and no activation (cuDNN fuses only ReLU
//       and identity); other kinds run cudnnConvolutionForward, then hipgrad's epilogue pass.
//   activation / activation_backward
//       cudnnActivation{Forward,Backward} (CUDNN_PROPAGATE_NAN) for relu, sigmoid and tanh.
//       cuDNN has neither leaky ReLU nor GELU, and its ELU is not accurate enough (cuDNN 9.19 on
//       an H100, 2026-11-23: the forward computes exp(x) - 1, 0 instead of -1e-7 at x = -1e-7 and
//       2% off at -6e-6; the backward was 18% off at some elements): for leaky_relu, gelu,
//       gelu_tanh and elu this same vendor kernel calls hipgrad's handwritten kernel, and its
//       registered name says so (a registry fallback is per op, not per kind).
//   avg_pool2d / avg_pool2d_backward
//       cudnnPooling{Forward,Backward} with CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING (divisor
//       kh*kw, as hipgrad's default; ceil mode and count_include_pad=False run hipgrad's kernels,
//       named so: the legacy descriptor has no ceil mode). Max pooling is a registered fallback: cuDNN returns no argmax, and
//       max_pool2d_backward takes hipgrad's int64 argmax.
// Descriptors are built once per shape and kept; one handle per device, bound to hipgrad's stream
// at every call. Every status is checked and thrown as hg::BackendError ("cuDNN", status, call,
// file:line, cudnnGetErrorString).
//
// Test:  PYTHONPATH=python python3 -m pytest -q tests/ops -k "conv or activation or pool"
//        (device gpu, impl vendor)
#include "../../core/build_facts.h"
#include "../gpu_kernels.h"
#include "../kernels_elementwise.h"

#if HIPGRAD_HAVE_CUDNN
#include <cudnn.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>

#define HG_CUDNN_CHECK(call)                                                                  \
  do {                                                                                        \
    const cudnnStatus_t hg_st_ = (call);                                                      \
    if (hg_st_ != CUDNN_STATUS_SUCCESS)                                                       \
      throw ::hg::BackendError("cuDNN", static_cast<long long>(hg_st_), #call, HG_LOCATION,  \
                               cudnnGetErrorString(hg_st_));                                  \
  } while (0)

namespace hg::gpu {
namespace {

std::mutex g_mu;  // guards the handles and descriptor caches below

bool allow_tf32() {
  static const bool allowed = [] {
    const char* e = std::getenv("HIPGRAD_ALLOW_TF32");
    return e != nullptr && std::strcmp(e, "1") == 0;
  }();
  return allowed;
}

cudnnHandle_t cudnn_handle(int device) {
  static std::map<int, cudnnHandle_t> handles;  // kept for the process (see cublas.cpp)
  auto it = handles.find(device);
  if (it == handles.end()) {
    cudnnHandle_t h = nullptr;
    HG_CUDNN_CHECK(cudnnCreate(&h));
    it = handles.emplace(device, h).first;
  }
  HG_CUDNN_CHECK(cudnnSetStream(it->second, stream(device)));
  return it->second;
}

int to_int(int64_t v, const char* what) {
  HG_REQUIRE(v >= 0 && v <= INT_MAX, "cuDNN takes 32-bit sizes; ", what, " is ", v);
  return static_cast<int>(v);
}

cudnnTensorDescriptor_t tensor4d(int64_t n, int64_t c, int64_t h, int64_t w) {
  cudnnTensorDescriptor_t d = nullptr;
  HG_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d));
  HG_CUDNN_CHECK(cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, to_int(n, "N"),
                                            to_int(c, "C"), to_int(h, "H"), to_int(w, "W")));
  return d;
}

struct Workspace {
  Tensor t;
  void* ptr = nullptr;
  explicit Workspace(size_t bytes) {
    if (bytes == 0) return;
    t = scratch(static_cast<int64_t>((bytes + 3) / 4));
    ptr = t.raw();
  }
};

const float kOne = 1.f, kZero = 0.f;

// ---- convolution ---------------------------------------------------------------------------------
struct ConvPlan {
  cudnnTensorDescriptor_t x, y;
  cudnnFilterDescriptor_t w;
  cudnnConvolutionDescriptor_t conv;
  bool have_fwd = false, have_bwd_data = false, have_bwd_filter = false;
  cudnnConvolutionFwdAlgo_t fwd{};
  cudnnConvolutionBwdDataAlgo_t bwd_data{};
  cudnnConvolutionBwdFilterAlgo_t bwd_filter{};
  cudnnMathType_t fwd_math{}, bwd_data_math{}, bwd_filter_math{};
  size_t fwd_ws = 0, bwd_data_ws = 0, bwd_filter_ws = 0;
  bool have_precomp = false;  // conv2d_bias_act without activation: IMPLICIT_PRECOMP_GEMM
  size_t precomp_ws = 0;
};

cudnnMathType_t base_math() { return allow_tf32() ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH; }

ConvPlan& conv_plan(int device, const ConvGeometry& g) {
  static std::map<std::array<int64_t, 17>, std::unique_ptr<ConvPlan>> plans;
  const std::array<int64_t, 17> key = {device, g.N, g.C, g.H, g.W, g.K, g.R, g.S, g.P, g.Q,
                                       g.stride_h, g.stride_w, g.pad_h, g.pad_w, g.dil_h, g.dil_w,
                                       g.groups};
  auto it = plans.find(key);
  if (it != plans.end()) return *it->second;
  auto p = std::make_unique<ConvPlan>();
  p->x = tensor4d(g.N, g.C, g.H, g.W);
  p->y = tensor4d(g.N, g.K, g.P, g.Q);
  HG_CUDNN_CHECK(cudnnCreateFilterDescriptor(&p->w));
  HG_CUDNN_CHECK(cudnnSetFilter4dDescriptor(p->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, to_int(g.K, "K"),
                                            to_int(g.C / g.groups, "C/groups"), to_int(g.R, "R"),
                                            to_int(g.S, "S")));
  HG_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&p->conv));
  HG_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(
      p->conv, to_int(g.pad_h, "pad_h"), to_int(g.pad_w, "pad_w"), to_int(g.stride_h, "stride_h"),
      to_int(g.stride_w, "stride_w"), to_int(g.dil_h, "dil_h"), to_int(g.dil_w, "dil_w"),
      CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  HG_CUDNN_CHECK(cudnnSetConvolutionGroupCount(p->conv, to_int(g.groups, "groups")));
  HG_CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv, base_math()));
  int n = 0, k = 0, pp = 0, q = 0;
  HG_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(p->conv, p->x, p->w, &n, &k, &pp, &q));
  if (n != g.N || k != g.K || pp != g.P || q != g.Q) {
    throw BackendError("cuDNN", CUDNN_STATUS_BAD_PARAM, "cudnnGetConvolution2dForwardOutputDim", HG_LOCATION,
                       cat("cuDNN's output (", n, ", ", k, ", ", pp, ", ", q, ") differs from hipgrad's (",
                           g.N, ", ", g.K, ", ", g.P, ", ", g.Q, ")"));
  }
  return *plans.emplace(key, std::move(p)).first->second;
}

// The first heuristic result that ran the query successfully and keeps to the math policy.
template <class Perf>
const Perf& pick(const Perf* perf, int returned, const char* call) {
  for (int i = 0; i < returned; ++i) {
    const bool tensor_ops = perf[i].mathType == CUDNN_TENSOR_OP_MATH ||
                            perf[i].mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
    if (perf[i].status == CUDNN_STATUS_SUCCESS && (allow_tf32() || !tensor_ops)) return perf[i];
  }
  throw BackendError("cuDNN", CUDNN_STATUS_NOT_SUPPORTED, call, HG_LOCATION,
                     "no algorithm for this shape under the FP32 math policy");
}

// Under strict FP32 the descriptor stays CUDNN_FMA_MATH; with TF32 allowed it takes the math type
// cuDNN reported for the chosen algorithm (the pair decides which kernels run).
cudnnMathType_t run_math(cudnnMathType_t reported) { return allow_tf32() ? reported : CUDNN_FMA_MATH; }

constexpr int kMaxAlgos = 8;

// The heuristic forward algorithm of the plan, chosen once (caller holds g_mu).
void choose_forward(cudnnHandle_t h, ConvPlan& p) {
  if (!p.have_fwd) {
    cudnnConvolutionFwdAlgoPerf_t perf[kMaxAlgos];
    int returned = 0;
    HG_CUDNN_CHECK(
        cudnnGetConvolutionForwardAlgorithm_v7(h, p.x, p.w, p.conv, p.y, kMaxAlgos, &returned, perf));
    const auto& best = pick(perf, returned, "cudnnGetConvolutionForwardAlgorithm_v7");
    p.fwd = best.algo;
    p.fwd_math = run_math(best.mathType);
    HG_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, p.fwd_math));
    HG_CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(h, p.x, p.w, p.conv, p.y, p.fwd, &p.fwd_ws));
    p.have_fwd = true;
  }
}

void conv_forward_cudnn(const ConvForwardArgs& a) {
  const int device = current_device();
  std::lock_guard<std::mutex> lock(g_mu);
  cudnnHandle_t h = cudnn_handle(device);
  ConvPlan& p = conv_plan(device, a.g);
  choose_forward(h, p);
  HG_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, p.fwd_math));
  Workspace ws(p.fwd_ws);
  HG_CUDNN_CHECK(cudnnConvolutionForward(h, &kOne, p.x, a.x, p.w, a.w, p.conv, p.fwd, ws.ptr, p.fwd_ws,
                                         &kZero, p.y, a.y));
  if (a.bias != nullptr) bias_add_handwritten(BiasAddArgs{a.g.N, a.g.K, a.g.P * a.g.Q, a.y, a.bias, a.y});
}

void conv_backward_data_cudnn(const ConvBackwardDataArgs& a) {
  const int device = current_device();
  std::lock_guard<std::mutex> lock(g_mu);
  cudnnHandle_t h = cudnn_handle(device);
  ConvPlan& p = conv_plan(device, a.g);
  if (!p.have_bwd_data) {
    cudnnConvolutionBwdDataAlgoPerf_t perf[kMaxAlgos];
    int returned = 0;
    HG_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, p.w, p.y, p.conv, p.x, kMaxAlgos, &returned,
                                                               perf));
    const auto& best = pick(perf, returned, "cudnnGetConvolutionBackwardDataAlgorithm_v7");
    p.bwd_data = best.algo;
    p.bwd_data_math = run_math(best.mathType);
    HG_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, p.bwd_data_math));
    HG_CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(h, p.w, p.y, p.conv, p.x, p.bwd_data,
                                                                &p.bwd_data_ws));
    p.have_bwd_data = true;
  }
  HG_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, p.bwd_data_math));
  Workspace ws(p.bwd_data_ws);
  HG_CUDNN_CHECK(cudnnConvolutionBackwardData(h, &kOne, p.w, a.w, p.y, a.dy, p.conv, p.bwd_data, ws.ptr,
                                              p.bwd_data_ws, &kZero, p.x, a.dx));
}

void conv_backward_weight_cudnn(const ConvBackwardWeightArgs& a) {
  const int device = current_device();
  std::lock_guard<std::mutex> lock(g_mu);
  cudnnHandle_t h = cudnn_handle(device);
  ConvPlan& p = conv_plan(device, a.g);
  if (!p.have_bwd_filter) {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[kMaxAlgos];
    int returned = 0;
    HG_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, p.x, p.y, p.conv, p.w, kMaxAlgos,
                                                                 &returned, perf));
    const auto& best = pick(perf, returned, "cudnnGetConvolutionBackwardFilterAlgorithm_v7");
    p.bwd_filter = best.algo;
    p.bwd_filter_math = run_math(best.mathType);
    HG_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, p.bwd_filter_math));
    HG_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(h, p.x, p.y, p.conv, p.w, p.bwd_filter,
                                                                  &p.bwd_filter_ws));
    p.have_bwd_filter = true;
  }
  HG_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, p.bwd_filter_math));
  Workspace ws(p.bwd_filter_ws);
  HG_CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, &kOne, p.x, a.x, p.y, a.dy, p.conv, p.bwd_filter, ws.ptr,
                                                p.bwd_filter_ws, &kZero, p.w, a.dw));
}

// ---- activation ----------------------------------------------------------------------------------
constexpr int64_t kActChunk = int64_t(1) << 30;  // elements per call: cuDNN's sizes are int

bool cudnn_has(ActKind k) {
  return k == ActKind::relu || k == ActKind::sigmoid || k == ActKind::tanh;  // elu: see the top
}

cudnnActivationDescriptor_t activation_desc(ActKind kind) {  // relu, sigmoid or tanh (cudnn_has)
  static std::map<int, cudnnActivationDescriptor_t> descs;
  const int key = int(kind);
  auto it = descs.find(key);
  if (it != descs.end()) return it->second;
  cudnnActivationMode_t mode = CUDNN_ACTIVATION_RELU;
  if (kind == ActKind::sigmoid) mode = CUDNN_ACTIVATION_SIGMOID;
  if (kind == ActKind::tanh) mode = CUDNN_ACTIVATION_TANH;
  cudnnActivationDescriptor_t d = nullptr;
  HG_CUDNN_CHECK(cudnnCreateActivationDescriptor(&d));
  HG_CUDNN_CHECK(cudnnSetActivationDescriptor(d, mode, CUDNN_PROPAGATE_NAN, 0.0));
  return descs.emplace(key, d).first->second;
}

// A flat chunk of n elements as (1, 1, 1, n).
cudnnTensorDescriptor_t flat_desc(int64_t n) {
  static std::map<int64_t, cudnnTensorDescriptor_t> descs;
  auto it = descs.find(n);
  if (it != descs.end()) return it->second;
  return descs.emplace(n, tensor4d(1, 1, 1, n)).first->second;
}

void activation_cudnn(const ActivationArgs& a) {
  if (!cudnn_has(a.kind)) return activation_handwritten(a);
  std::lock_guard<std::mutex> lock(g_mu);
  cudnnHandle_t h = cudnn_handle(current_device());
  cudnnActivationDescriptor_t ad = activation_desc(a.kind);
  for (int64_t off = 0; off < a.n; off += kActChunk) {
    cudnnTensorDescriptor_t d = flat_desc(std::min(kActChunk, a.n - off));
    HG_CUDNN_CHECK(cudnnActivationForward(h, ad, &kOne, d, a.x + off, &kZero, d, a.y + off));
  }
}

void activation_backward_cudnn(const ActivationBackwardArgs& a) {
  if (!cudnn_has(a.kind)) return activation_backward_handwritten(a);
  std::lock_guard<std::mutex> lock(g_mu);
  cudnnHandle_t h = cudnn_handle(current_device());
  cudnnActivationDescriptor_t ad = activation_desc(a.kind);
  for (int64_t off = 0; off < a.n; off += kActChunk) {
    cudnnTensorDescriptor_t d = flat_desc(std::min(kActChunk, a.n - off));
    HG_CUDNN_CHECK(cudnnActivationBackward(h, ad, &kOne, d, a.y + off, d, a.dy + off, d, a.x + off, &kZero, d,
                                           a.dx + off));
  }
}

// ---- conv2d_bias_act ------------------------------------------------------------------------------
// cudnnConvolutionBiasActivationForward computes y = act(conv(x) + alpha2 z + bias) with
// act RELU or IDENTITY only, IDENTITY only with CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
// and a bias always. So: relu with the heuristic algorithm, no activation with
// IMPLICIT_PRECOMP_GEMM, a zero bias where none is given, z = y with alpha2 = 0 (as PyTorch's
// cudnn_convolution_relu passes it; y is not meant to be read). Other kinds: the plain
// cudnnConvolutionForward, then hipgrad's bias + activation pass (fused_epilogue_pass).
// A residual is added after the library's convolution too: cudnnConvolutionForward, then
// hipgrad's pass adding bias + residual + activation (the residual copied aside first when out=
// is the residual itself), whatever the kind.
cudnnTensorDescriptor_t bias_desc(int64_t K) {
  static std::map<int64_t, cudnnTensorDescriptor_t> descs;
  auto it = descs.find(K);
  if (it != descs.end()) return it->second;
  return descs.emplace(K, tensor4d(1, K, 1, 1)).first->second;
}

cudnnActivationDescriptor_t identity_desc() {
  static cudnnActivationDescriptor_t d = [] {
    cudnnActivationDescriptor_t ad = nullptr;
    HG_CUDNN_CHECK(cudnnCreateActivationDescriptor(&ad));
    HG_CUDNN_CHECK(cudnnSetActivationDescriptor(ad, CUDNN_ACTIVATION_IDENTITY, CUDNN_PROPAGATE_NAN, 0.0));
    return ad;
  }();
  return d;
}

void conv_bias_act_cudnn(const ConvBiasActArgs& a) {
  const bool relu = a.epi.has_act && a.epi.act == ActKind::relu;
  if (a.residual != nullptr) {
    Tensor kept;
    const float* residual = residual_kept_aside(a, &kept);
    conv_forward_cudnn(ConvForwardArgs{a.g, a.x, a.w, nullptr, a.y});
    return fused_epilogue_pass(a.epi, a.y, a.g.N, a.g.K, a.g.P * a.g.Q, residual);
  }
  if (a.epi.has_act && !relu) {
    conv_forward_cudnn(ConvForwardArgs{a.g, a.x, a.w, nullptr, a.y});
    return fused_epilogue_pass(a.epi, a.y, a.g.N, a.g.K, a.g.P * a.g.Q);
  }
  Tensor zeros;  // cuDNN needs a bias
  const float* bias = a.epi.bias;
  if (bias == nullptr) {
    zeros = scratch(a.g.K);
    zeros.zero_();
    bias = zeros.data<float>();
  }
  const int device = current_device();
  std::lock_guard<std::mutex> lock(g_mu);
  cudnnHandle_t h = cudnn_handle(device);
  ConvPlan& p = conv_plan(device, a.g);
  cudnnConvolutionFwdAlgo_t algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM;
  cudnnMathType_t math = base_math();
  size_t ws_bytes = 0;
  if (relu) {
    choose_forward(h, p);
    algo = p.fwd, math = p.fwd_math, ws_bytes = p.fwd_ws;
  } else {
    HG_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, math));
    if (!p.have_precomp) {
      HG_CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(h, p.x, p.w, p.conv, p.y, algo, &p.precomp_ws));
      p.have_precomp = true;
    }
    ws_bytes = p.precomp_ws;
  }
  HG_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, math));
  Workspace ws(ws_bytes);
  HG_CUDNN_CHECK(cudnnConvolutionBiasActivationForward(
      h, &kOne, p.x, a.x, p.w, a.w, p.conv, algo, ws.ptr, ws_bytes, &kZero, p.y, a.y, bias_desc(a.g.K),
      bias, relu ? activation_desc(ActKind::relu) : identity_desc(), p.y, a.y));
}

// ---- average pooling -----------------------------------------------------------------------------
struct PoolPlan {
  cudnnPoolingDescriptor_t pool;
  cudnnTensorDescriptor_t x, y;
};

PoolPlan& pool_plan(const PoolGeometry& g) {
  static std::map<std::array<int64_t, 12>, PoolPlan> plans;
  const std::array<int64_t, 12> key = {g.N, g.C, g.H, g.W, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.P, g.Q};
  auto it = plans.find(key);
  if (it != plans.end()) return it->second;
  PoolPlan p;
  HG_CUDNN_CHECK(cudnnCreatePoolingDescriptor(&p.pool));
  HG_CUDNN_CHECK(cudnnSetPooling2dDescriptor(p.pool, CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING,
                                             CUDNN_PROPAGATE_NAN, to_int(g.kh, "kh"), to_int(g.kw, "kw"),
                                             to_int(g.ph, "ph"), to_int(g.pw, "pw"), to_int(g.sh, "sh"),
                                             to_int(g.sw, "sw")));
  p.x = tensor4d(g.N, g.C, g.H, g.W);
  p.y = tensor4d(g.N, g.C, g.P, g.Q);
  return plans.emplace(key, p).first->second;
}

void avg_pool2d_cudnn(const AvgPoolArgs& a) {
  if (a.g.ceil_mode || !a.g.count_include_pad) return avg_pool2d_gpu(a);  // see the top
  std::lock_guard<std::mutex> lock(g_mu);
  cudnnHandle_t h = cudnn_handle(current_device());
  PoolPlan& p = pool_plan(a.g);
  HG_CUDNN_CHECK(cudnnPoolingForward(h, p.pool, &kOne, p.x, a.x, &kZero, p.y, a.y));
}

// Average-pooling backward depends on dy only; y and x are not kept by hipgrad's avg_pool2d
// backward, so dy and dx stand in for their pointers (the descriptors give the shapes).
void avg_pool2d_backward_cudnn(const AvgPoolBackwardArgs& a) {
  if (a.g.ceil_mode || !a.g.count_include_pad) return avg_pool2d_backward_gpu(a);
  std::lock_guard<std::mutex> lock(g_mu);
  cudnnHandle_t h = cudnn_handle(current_device());
  PoolPlan& p = pool_plan(a.g);
  HG_CUDNN_CHECK(cudnnPoolingBackward(h, p.pool, &kOne, p.y, a.dy, p.y, a.dy, p.x, a.dx, &kZero, p.x, a.dx));
}

}  // namespace
}  // namespace hg::gpu

HG_REGISTER_KERNEL(conv2d_forward_op, gpu, vendor, "gpu.cudnn_conv_forward (+ gpu.bias_add)",
                   &hg::gpu::conv_forward_cudnn);
HG_REGISTER_KERNEL(conv2d_bias_act_op, gpu, vendor,
                   "gpu.cudnn_conv_bias_activation (relu, none; other kinds and any residual: "
                   "gpu.cudnn_conv_forward + gpu.epilogue_pass, cuDNN fuses only ReLU and identity)",
                   &hg::gpu::conv_bias_act_cudnn);
HG_REGISTER_KERNEL(conv2d_backward_data_op, gpu, vendor, "gpu.cudnn_conv_backward_data",
                   &hg::gpu::conv_backward_data_cudnn);
HG_REGISTER_KERNEL(conv2d_backward_weight_op, gpu, vendor, "gpu.cudnn_conv_backward_filter",
                   &hg::gpu::conv_backward_weight_cudnn);
HG_REGISTER_KERNEL(activation_op, gpu, vendor,
                   "gpu.cudnn_activation (leaky_relu, gelu, gelu_tanh, elu, relu6, hardsigmoid, "
                   "hardswish: gpu.activation_vec4, cuDNN has neither leaky ReLU, GELU nor the hard "
                   "kinds, its ELU loses accuracy, and its CLIPPED_RELU is not checked against "
                   "PyTorch's kinks)",
                   &hg::gpu::activation_cudnn);
HG_REGISTER_KERNEL(activation_backward_op, gpu, vendor,
                   "gpu.cudnn_activation_backward (leaky_relu, gelu, gelu_tanh, elu, relu6, "
                   "hardsigmoid, hardswish: gpu.activation_backward_vec4, cuDNN has neither leaky "
                   "ReLU, GELU nor the hard kinds, its ELU loses accuracy, and its CLIPPED_RELU is "
                   "not checked against PyTorch's kinks)",
                   &hg::gpu::activation_backward_cudnn);
HG_REGISTER_KERNEL(avg_pool2d_op, gpu, vendor,
                   "gpu.cudnn_pooling_average_include_padding (ceil_mode, count_include_pad=False: "
                   "gpu.avg_pool2d_direct, cuDNN's legacy pooling has no ceil mode)",
                   &hg::gpu::avg_pool2d_cudnn);
HG_REGISTER_KERNEL(avg_pool2d_backward_op, gpu, vendor,
                   "gpu.cudnn_pooling_average_include_padding_backward (ceil_mode, "
                   "count_include_pad=False: gpu.avg_pool2d_backward_gather)",
                   &hg::gpu::avg_pool2d_backward_cudnn);
HG_REGISTER_VENDOR_LIBRARY(gpu, dnn, nvidia, "cuDNN", true);
static const bool hg_cudnn_fact = hg::add_build_fact(
    "gpu.vendor.cudnn",
    HG_STRINGIFY(CUDNN_MAJOR) "." HG_STRINGIFY(CUDNN_MINOR) "." HG_STRINGIFY(CUDNN_PATCHLEVEL));

// ---- softmax for the composed attention (with cuBLAS) -----------------------------------------
#if HIPGRAD_HAVE_CUBLAS
namespace hg::gpu {
namespace {

// (rows, cols) as NCHW (rows, cols, 1, 1): CUDNN_SOFTMAX_MODE_INSTANCE is a softmax over each row.
struct RowsDesc {
  cudnnTensorDescriptor_t d;
  RowsDesc(int64_t rows, int64_t cols) : d(tensor4d(rows, cols, 1, 1)) {}
  ~RowsDesc() { cudnnDestroyTensorDescriptor(d); }
};

void softmax_cudnn(const float* x, float* y, int64_t rows, int64_t cols) {
  RowsDesc d(rows, cols);
  HG_CUDNN_CHECK(cudnnSoftmaxForward(cudnn_handle(current_device()), CUDNN_SOFTMAX_ACCURATE,
                                     CUDNN_SOFTMAX_MODE_INSTANCE, &kOne, d.d, x, &kZero, d.d, y));
}

void softmax_backward_cudnn(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols,
                            float alpha) {
  RowsDesc d(rows, cols);
  HG_CUDNN_CHECK(cudnnSoftmaxBackward(cudnn_handle(current_device()), CUDNN_SOFTMAX_ACCURATE,
                                      CUDNN_SOFTMAX_MODE_INSTANCE, &alpha, d.d, y, d.d, dy, &kZero,
                                      d.d, dx));
}

const ComposedAttentionOps kComposed = {&gemm_strided_cublas, &softmax_cudnn,
                                        &softmax_backward_cudnn};
void attention_cudnn(const AttentionArgs& a) { attention_composed(a, kComposed); }
void attention_backward_cudnn(const AttentionBackwardArgs& a) {
  attention_backward_composed(a, kComposed);
}

}  // namespace
}  // namespace hg::gpu

HG_REGISTER_KERNEL(attention_op, gpu, vendor,
                   "gpu.cublas_sgemm_strided_batched+cudnn_softmax_composed (+ gpu.lse_rows)",
                   &hg::gpu::attention_cudnn);
HG_REGISTER_KERNEL(attention_backward_op, gpu, vendor,
                   "gpu.cublas_sgemm_strided_batched+cudnn_softmax_backward_composed",
                   &hg::gpu::attention_backward_cudnn);
#endif

#elif defined(HIPGRAD_PLATFORM_NVIDIA)
HG_REGISTER_VENDOR_LIBRARY(gpu, dnn, nvidia, "cuDNN", false);
static const bool hg_cudnn_fact = hg::add_build_fact("gpu.vendor.cudnn", "not found");
#endif
