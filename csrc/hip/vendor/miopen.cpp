// MIOpen wrapper (AMD builds with HIPGRAD_HAVE_MIOPEN): gpu vendor kernels for
//   conv2d_forward / _backward_data / _backward_weight
//       miopenConvolution{Forward,BackwardData,BackwardWeights} after the Find call MIOpen
//       requires on the same handle (miopenFind*Algorithm, non-exhaustive); the chosen algorithm
//       and its workspace size (perf[0]) are remembered per (device, shape); the Find workspace
//       comes from the *GetWorkSpaceSize query. MIOpen's 2-D convolution takes alpha = 1, beta = 0
//       only, so the bias is added afterwards, in place, by hipgrad's bias_add kernel.
//   conv2d_bias_act
//       a fusion plan conv -> bias -> activation (miopenCreateFusionPlan, miopenCreateOp*Forward,
//       miopenCompileFusionPlan once per shape; miopenSetOpArgs* and miopenExecuteFusionPlan per
//       call); where MIOpen compiles no plan, or for GELU and ELU, the separate calls below.
//   activation / activation_backward
//       miopenActivation{Forward,Backward} for relu, leaky_relu (LEAKYRELU, alpha), sigmoid
//       (LOGISTIC) and tanh (TANH with alpha = beta = 1: MIOpen computes beta tanh(alpha x)).
//       MIOpen has no GELU, and its ELU computes alpha (exp(x) - 1) (MIOpen's neuron kernels),
//       which cancels near 0 (cuDNN's does the same; measured there on an H100, 2026-11-23: 0
//       instead of -1e-7): for gelu, gelu_tanh and elu this same vendor kernel calls hipgrad's
//       handwritten kernel (expm1), and its registered name says so. (A registry fallback is
//       per op, not per kind, so it would misreport the four kinds MIOpen does run.)
//   avg_pool2d / avg_pool2d_backward
//       miopenPooling{Forward,Backward} with miopenPoolingAverageInclusive (divisor kh*kw, padding
//       counted, as hipgrad's default). Ceil mode and count_include_pad=False run hipgrad's
//       kernels (named so): MIOpen's descriptor has no ceil mode, and its exclusive average is
//       not checked against PyTorch's divisors. Max pooling is a registered fallback: MIOpen keeps its max indices in
//       its own workspace (window offsets, uint8 by default) and cannot return hipgrad's int64
//       argmax (h*W + w in the plane), which max_pool2d_backward takes.
// Descriptors are built once per shape and kept; one handle per device, bound to hipgrad's stream
// at every call. Every status is checked and thrown as hg::BackendError ("MIOpen", status, call,
// file:line, miopenGetErrorString).
//
// Test:  PYTHONPATH=python python3 -m pytest -q tests/ops -k "conv or activation or pool"
//        (device gpu, impl vendor)
#include "../../core/build_facts.h"
#include "../gpu_kernels.h"
#include "../kernels_elementwise.h"

#if HIPGRAD_HAVE_MIOPEN
#define MIOPEN_BETA_API 1  // miopenLayerNormForward (ROCm >= 6.0) is a beta API
#include <miopen/miopen.h>
#if __has_include(<miopen/version.h>)
#include <miopen/version.h>
#endif

#include <climits>
#include <map>
#include <memory>
#include <mutex>

#define HG_MIOPEN_CHECK(call)                                                                  \
  do {                                                                                         \
    const miopenStatus_t hg_st_ = (call);                                                      \
    if (hg_st_ != miopenStatusSuccess)                                                         \
      throw ::hg::BackendError("MIOpen", static_cast<long long>(hg_st_), #call, HG_LOCATION,  \
                               miopenGetErrorString(hg_st_));                                  \
  } while (0)

namespace hg::gpu {
namespace {

std::mutex g_mu;  // guards the handles and descriptor caches below

miopenHandle_t miopen_handle(int device) {
  static std::map<int, miopenHandle_t> handles;  // kept for the process (see cublas.cpp)
  auto it = handles.find(device);
  if (it == handles.end()) {
    miopenHandle_t h = nullptr;
    HG_MIOPEN_CHECK(miopenCreateWithStream(&h, stream(device)));
    it = handles.emplace(device, h).first;
  }
  HG_MIOPEN_CHECK(miopenSetStream(it->second, stream(device)));
  return it->second;
}

int to_int(int64_t v, const char* what) {
  HG_REQUIRE(v >= 0 && v <= INT_MAX, "MIOpen takes 32-bit sizes; ", what, " is ", v);
  return static_cast<int>(v);
}

miopenTensorDescriptor_t tensor4d(int64_t n, int64_t c, int64_t h, int64_t w) {
  miopenTensorDescriptor_t d = nullptr;
  HG_MIOPEN_CHECK(miopenCreateTensorDescriptor(&d));
  HG_MIOPEN_CHECK(miopenSet4dTensorDescriptor(d, miopenFloat, to_int(n, "N"), to_int(c, "C"),
                                              to_int(h, "H"), to_int(w, "W")));
  return d;
}

// Device memory for a library workspace (nullptr when none is needed).
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
  miopenTensorDescriptor_t x, w, y;
  miopenConvolutionDescriptor_t conv;
  bool have_fwd = false, have_bwd_data = false, have_bwd_weights = false;
  miopenConvFwdAlgorithm_t fwd{};
  miopenConvBwdDataAlgorithm_t bwd_data{};
  miopenConvBwdWeightsAlgorithm_t bwd_weights{};
  size_t fwd_ws = 0, bwd_data_ws = 0, bwd_weights_ws = 0;
};

ConvPlan& conv_plan(int device, const ConvGeometry& g) {
  static std::map<std::array<int64_t, 17>, std::unique_ptr<ConvPlan>> plans;
  const std::array<int64_t, 17> key = {device, g.N, g.C, g.H, g.W, g.K, g.R, g.S, g.P, g.Q,
                                       g.stride_h, g.stride_w, g.pad_h, g.pad_w, g.dil_h, g.dil_w,
                                       g.groups};
  auto it = plans.find(key);
  if (it != plans.end()) return *it->second;
  auto p = std::make_unique<ConvPlan>();
  p->x = tensor4d(g.N, g.C, g.H, g.W);
  p->w = tensor4d(g.K, g.C / g.groups, g.R, g.S);
  p->y = tensor4d(g.N, g.K, g.P, g.Q);
  HG_MIOPEN_CHECK(miopenCreateConvolutionDescriptor(&p->conv));
  HG_MIOPEN_CHECK(miopenInitConvolutionDescriptor(p->conv, miopenConvolution, to_int(g.pad_h, "pad_h"),
                                                  to_int(g.pad_w, "pad_w"), to_int(g.stride_h, "stride_h"),
                                                  to_int(g.stride_w, "stride_w"), to_int(g.dil_h, "dil_h"),
                                                  to_int(g.dil_w, "dil_w")));
  HG_MIOPEN_CHECK(miopenSetConvolutionGroupCount(p->conv, to_int(g.groups, "groups")));
  int n = 0, k = 0, pp = 0, q = 0;
  HG_MIOPEN_CHECK(miopenGetConvolutionForwardOutputDim(p->conv, p->x, p->w, &n, &k, &pp, &q));
  if (n != g.N || k != g.K || pp != g.P || q != g.Q) {
    throw BackendError("MIOpen", miopenStatusBadParm, "miopenGetConvolutionForwardOutputDim", HG_LOCATION,
                       cat("MIOpen's output (", n, ", ", k, ", ", pp, ", ", q, ") differs from hipgrad's (",
                           g.N, ", ", g.K, ", ", g.P, ", ", g.Q, ")"));
  }
  return *plans.emplace(key, std::move(p)).first->second;
}

void require_found(int returned, const char* call) {
  if (returned < 1) {
    throw BackendError("MIOpen", miopenStatusUnknownError, call, HG_LOCATION, "Find returned no algorithm");
  }
}

void conv_forward_miopen(const ConvForwardArgs& a) {
  const int device = current_device();
  std::lock_guard<std::mutex> lock(g_mu);
  miopenHandle_t h = miopen_handle(device);
  ConvPlan& p = conv_plan(device, a.g);
  if (!p.have_fwd) {
    size_t bytes = 0;
    HG_MIOPEN_CHECK(miopenConvolutionForwardGetWorkSpaceSize(h, p.w, p.x, p.conv, p.y, &bytes));
    Workspace ws(bytes);
    miopenConvAlgoPerf_t perf[4];
    int returned = 0;
    HG_MIOPEN_CHECK(miopenFindConvolutionForwardAlgorithm(h, p.x, a.x, p.w, a.w, p.conv, p.y, a.y, 4,
                                                          &returned, perf, ws.ptr, bytes, false));
    require_found(returned, "miopenFindConvolutionForwardAlgorithm");
    p.fwd = perf[0].fwd_algo;
    p.fwd_ws = perf[0].memory;
    p.have_fwd = true;
  }
  Workspace ws(p.fwd_ws);
  HG_MIOPEN_CHECK(miopenConvolutionForward(h, &kOne, p.x, a.x, p.w, a.w, p.conv, p.fwd, &kZero, p.y, a.y,
                                           ws.ptr, p.fwd_ws));
  if (a.bias != nullptr) bias_add_handwritten(BiasAddArgs{a.g.N, a.g.K, a.g.P * a.g.Q, a.y, a.bias, a.y});
}

void conv_backward_data_miopen(const ConvBackwardDataArgs& a) {
  const int device = current_device();
  std::lock_guard<std::mutex> lock(g_mu);
  miopenHandle_t h = miopen_handle(device);
  ConvPlan& p = conv_plan(device, a.g);
  if (!p.have_bwd_data) {
    size_t bytes = 0;
    HG_MIOPEN_CHECK(miopenConvolutionBackwardDataGetWorkSpaceSize(h, p.y, p.w, p.conv, p.x, &bytes));
    Workspace ws(bytes);
    miopenConvAlgoPerf_t perf[4];
    int returned = 0;
    HG_MIOPEN_CHECK(miopenFindConvolutionBackwardDataAlgorithm(h, p.y, a.dy, p.w, a.w, p.conv, p.x, a.dx, 4,
                                                               &returned, perf, ws.ptr, bytes, false));
    require_found(returned, "miopenFindConvolutionBackwardDataAlgorithm");
    p.bwd_data = perf[0].bwd_data_algo;
    p.bwd_data_ws = perf[0].memory;
    p.have_bwd_data = true;
  }
  Workspace ws(p.bwd_data_ws);
  HG_MIOPEN_CHECK(miopenConvolutionBackwardData(h, &kOne, p.y, a.dy, p.w, a.w, p.conv, p.bwd_data, &kZero,
                                                p.x, a.dx, ws.ptr, p.bwd_data_ws));
}

void conv_backward_weight_miopen(const ConvBackwardWeightArgs& a) {
  const int device = current_device();
  std::lock_guard<std::mutex> lock(g_mu);
  miopenHandle_t h = miopen_handle(device);
  ConvPlan& p = conv_plan(device, a.g);
  if (!p.have_bwd_weights) {
    size_t bytes = 0;
    HG_MIOPEN_CHECK(miopenConvolutionBackwardWeightsGetWorkSpaceSize(h, p.y, p.x, p.conv, p.w, &bytes));
    Workspace ws(bytes);
    miopenConvAlgoPerf_t perf[4];
    int returned = 0;
    HG_MIOPEN_CHECK(miopenFindConvolutionBackwardWeightsAlgorithm(h, p.y, a.dy, p.x, a.x, p.conv, p.w, a.dw,
                                                                  4, &returned, perf, ws.ptr, bytes, false));
    require_found(returned, "miopenFindConvolutionBackwardWeightsAlgorithm");
    p.bwd_weights = perf[0].bwd_weights_algo;
    p.bwd_weights_ws = perf[0].memory;
    p.have_bwd_weights = true;
  }
  Workspace ws(p.bwd_weights_ws);
  HG_MIOPEN_CHECK(miopenConvolutionBackwardWeights(h, &kOne, p.y, a.dy, p.x, a.x, p.conv, p.bwd_weights,
                                                   &kZero, p.w, a.dw, ws.ptr, p.bwd_weights_ws));
}

// ---- activation ----------------------------------------------------------------------------------
constexpr int64_t kActChunk = int64_t(1) << 30;  // elements per call: MIOpen's sizes are int

bool miopen_has(ActKind k) {
  // elu: see the top; relu6 and the hard kinds: MIOpen's CLIPPEDRELU / hard modes are not
  // checked against PyTorch's kinks and NaN rules, so hipgrad's kernels run them
  return k == ActKind::relu || k == ActKind::leaky_relu || k == ActKind::sigmoid ||
         k == ActKind::tanh;
}

// MIOpen's mode and parameters for a kind it has (miopen_has).
struct ActMode {
  miopenActivationMode_t mode = miopenActivationRELU;
  double a = 0.0, b = 0.0;
};
ActMode act_mode(ActKind kind, float alpha) {
  switch (kind) {
    case ActKind::relu: return {miopenActivationRELU, 0.0, 0.0};
    case ActKind::leaky_relu: return {miopenActivationLEAKYRELU, alpha, 0.0};
    case ActKind::sigmoid: return {miopenActivationLOGISTIC, 0.0, 0.0};
    case ActKind::tanh: return {miopenActivationTANH, 1.0, 1.0};
    default: break;  // not reached: handwritten (miopen_has)
  }
  return {};
}

miopenActivationDescriptor_t activation_desc(ActKind kind, float alpha) {
  static std::map<std::pair<int, float>, miopenActivationDescriptor_t> descs;
  const std::pair<int, float> key{int(kind), kind == ActKind::leaky_relu ? alpha : 0.f};
  auto it = descs.find(key);
  if (it != descs.end()) return it->second;
  const ActMode m = act_mode(kind, alpha);
  miopenActivationDescriptor_t d = nullptr;
  HG_MIOPEN_CHECK(miopenCreateActivationDescriptor(&d));
  HG_MIOPEN_CHECK(miopenSetActivationDescriptor(d, m.mode, m.a, m.b, 0.0));
  return descs.emplace(key, d).first->second;
}

// A flat chunk of n elements as (1, 1, 1, n).
miopenTensorDescriptor_t flat_desc(int64_t n) {
  static std::map<int64_t, miopenTensorDescriptor_t> descs;
  auto it = descs.find(n);
  if (it != descs.end()) return it->second;
  return descs.emplace(n, tensor4d(1, 1, 1, n)).first->second;
}

void activation_miopen(const ActivationArgs& a) {
  if (!miopen_has(a.kind)) return activation_handwritten(a);
  std::lock_guard<std::mutex> lock(g_mu);
  miopenHandle_t h = miopen_handle(current_device());
  miopenActivationDescriptor_t ad = activation_desc(a.kind, a.alpha);
  for (int64_t off = 0; off < a.n; off += kActChunk) {
    miopenTensorDescriptor_t d = flat_desc(std::min(kActChunk, a.n - off));
    HG_MIOPEN_CHECK(miopenActivationForward(h, ad, &kOne, d, a.x + off, &kZero, d, a.y + off));
  }
}

void activation_backward_miopen(const ActivationBackwardArgs& a) {
  if (!miopen_has(a.kind)) return activation_backward_handwritten(a);
  std::lock_guard<std::mutex> lock(g_mu);
  miopenHandle_t h = miopen_handle(current_device());
  miopenActivationDescriptor_t ad = activation_desc(a.kind, a.alpha);
  for (int64_t off = 0; off < a.n; off += kActChunk) {
    miopenTensorDescriptor_t d = flat_desc(std::min(kActChunk, a.n - off));
    HG_MIOPEN_CHECK(miopenActivationBackward(h, ad, &kOne, d, a.y + off, d, a.dy + off, d, a.x + off, &kZero,
                                             d, a.dx + off));
  }
}

// ---- conv2d_bias_act: the fusion plan ---------------------------------------------------------------
// A vertical plan conv -> bias (when given) -> activation (when given), built and compiled once
// per (device, shape, bias, kind); its operator arguments (weights, bias, activation parameters)
// are set at every call. Where MIOpen cannot build or compile the plan (e.g. grouped or unusual
// shapes: miopenStatusUnsupportedOp), where nothing is to be fused, and for the GELU kinds MIOpen
// lacks: conv_forward_miopen (+ bias_add), then activation_miopen in place. A residual (no
// fusion-plan operator adds a tensor) is added after the library's convolution:
// conv_forward_miopen, then hipgrad's pass adding bias + residual + activation (the residual
// copied aside first when out= is the residual itself).
struct FusedPlan {
  bool ok = false;
  miopenFusionPlanDescriptor_t plan = nullptr;
  miopenFusionOpDescriptor_t conv = nullptr, bias = nullptr, act = nullptr;
  miopenTensorDescriptor_t bias_desc = nullptr;
  miopenOperatorArgs_t args = nullptr;
};

// Builds and compiles the plan; false (and the plan destroyed) where MIOpen declines it.
bool build_fused(miopenHandle_t h, const ConvPlan& p, const ConvGeometry& g, const FusedEpilogue& e,
                 FusedPlan& f) {
  if (miopenCreateFusionPlan(&f.plan, miopenVerticalFusion, p.x) != miopenStatusSuccess) return false;
  bool ok = miopenCreateOpConvForward(f.plan, &f.conv, p.conv, p.w) == miopenStatusSuccess;
  if (ok && e.bias != nullptr) {
    f.bias_desc = tensor4d(1, g.K, 1, 1);
    ok = miopenCreateOpBiasForward(f.plan, &f.bias, f.bias_desc) == miopenStatusSuccess;
  }
  if (ok && e.has_act) {
    ok = miopenCreateOpActivationForward(f.plan, &f.act, act_mode(e.act, e.alpha).mode) ==
         miopenStatusSuccess;
  }
  ok = ok && miopenCompileFusionPlan(h, f.plan) == miopenStatusSuccess;
  if (!ok) {
    miopenDestroyFusionPlan(f.plan);
    f.plan = nullptr;
    return false;
  }
  HG_MIOPEN_CHECK(miopenCreateOperatorArgs(&f.args));
  return true;
}

FusedPlan& fused_plan(miopenHandle_t h, int device, const ConvPlan& p, const ConvGeometry& g,
                      const FusedEpilogue& e) {
  static std::map<std::array<int64_t, 19>, FusedPlan> plans;
  const std::array<int64_t, 19> key = {device, g.N, g.C, g.H, g.W, g.K, g.R, g.S, g.P, g.Q,
                                       g.stride_h, g.stride_w, g.pad_h, g.pad_w, g.dil_h, g.dil_w,
                                       g.groups, e.bias != nullptr, e.has_act ? int(e.act) : -1};
  auto it = plans.find(key);
  if (it != plans.end()) return it->second;
  FusedPlan f;
  f.ok = build_fused(h, p, g, e, f);
  return plans.emplace(key, f).first->second;
}

// Runs the plan; false where there is none for this case (the caller runs the ops separately).
bool conv_bias_act_plan(const ConvBiasActArgs& a) {
  const FusedEpilogue& e = a.epi;
  if ((e.bias == nullptr && !e.has_act) || (e.has_act && !miopen_has(e.act))) return false;
  const int device = current_device();
  std::lock_guard<std::mutex> lock(g_mu);
  miopenHandle_t h = miopen_handle(device);
  const ConvPlan& p = conv_plan(device, a.g);
  FusedPlan& f = fused_plan(h, device, p, a.g, e);
  if (!f.ok) return false;
  HG_MIOPEN_CHECK(miopenSetOpArgsConvForward(f.args, f.conv, &kOne, &kZero, a.w));
  if (f.bias != nullptr) HG_MIOPEN_CHECK(miopenSetOpArgsBiasForward(f.args, f.bias, &kOne, &kZero, e.bias));
  if (f.act != nullptr) {
    const ActMode m = act_mode(e.act, e.alpha);
    HG_MIOPEN_CHECK(miopenSetOpArgsActivForward(f.args, f.act, &kOne, &kZero, m.a, m.b, 0.0));
  }
  HG_MIOPEN_CHECK(miopenExecuteFusionPlan(h, f.plan, p.x, a.x, p.y, a.y, f.args));
  return true;
}

void conv_bias_act_miopen(const ConvBiasActArgs& a) {
  if (a.residual != nullptr) {
    Tensor kept;
    const float* residual = residual_kept_aside(a, &kept);
    conv_forward_miopen(ConvForwardArgs{a.g, a.x, a.w, nullptr, a.y});
    return fused_epilogue_pass(a.epi, a.y, a.g.N, a.g.K, a.g.P * a.g.Q, residual);
  }
  if (conv_bias_act_plan(a)) return;
  conv_forward_miopen(ConvForwardArgs{a.g, a.x, a.w, a.epi.bias, a.y});
  if (a.epi.has_act) {
    activation_miopen(ActivationArgs{a.epi.act, a.epi.alpha, a.g.N * a.g.K * a.g.P * a.g.Q, a.y, a.y});
  }
}

// ---- average pooling -----------------------------------------------------------------------------
struct PoolPlan {
  miopenPoolingDescriptor_t pool;
  miopenTensorDescriptor_t x, y;
};

PoolPlan& pool_plan(const PoolGeometry& g) {
  static std::map<std::array<int64_t, 12>, PoolPlan> plans;
  const std::array<int64_t, 12> key = {g.N, g.C, g.H, g.W, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.P, g.Q};
  auto it = plans.find(key);
  if (it != plans.end()) return it->second;
  PoolPlan p;
  HG_MIOPEN_CHECK(miopenCreatePoolingDescriptor(&p.pool));
  HG_MIOPEN_CHECK(miopenSet2dPoolingDescriptor(p.pool, miopenPoolingAverageInclusive, to_int(g.kh, "kh"),
                                               to_int(g.kw, "kw"), to_int(g.ph, "ph"), to_int(g.pw, "pw"),
                                               to_int(g.sh, "sh"), to_int(g.sw, "sw")));
  p.x = tensor4d(g.N, g.C, g.H, g.W);
  p.y = tensor4d(g.N, g.C, g.P, g.Q);
  return plans.emplace(key, p).first->second;
}

void avg_pool2d_miopen(const AvgPoolArgs& a) {
  if (a.g.ceil_mode || !a.g.count_include_pad) return avg_pool2d_gpu(a);  // see the top
  std::lock_guard<std::mutex> lock(g_mu);
  miopenHandle_t h = miopen_handle(current_device());
  PoolPlan& p = pool_plan(a.g);
  HG_MIOPEN_CHECK(miopenPoolingForward(h, p.pool, &kOne, p.x, a.x, &kZero, p.y, a.y, false, nullptr, 0));
}

// MIOpen's average backward reads neither y nor x; their descriptors only give the shapes, so dy
// and dx stand in for the pointers.
void avg_pool2d_backward_miopen(const AvgPoolBackwardArgs& a) {
  if (a.g.ceil_mode || !a.g.count_include_pad) return avg_pool2d_backward_gpu(a);
  std::lock_guard<std::mutex> lock(g_mu);
  miopenHandle_t h = miopen_handle(current_device());
  PoolPlan& p = pool_plan(a.g);
  HG_MIOPEN_CHECK(miopenPoolingBackward(h, p.pool, &kOne, p.y, a.dy, p.y, a.dy, p.x, a.dx, &kZero, p.x, a.dx,
                                        nullptr));
}

std::string miopen_version() {
#ifdef MIOPEN_VERSION_MAJOR
  return cat(MIOPEN_VERSION_MAJOR, ".", MIOPEN_VERSION_MINOR, ".", MIOPEN_VERSION_PATCH);
#else
  return "found (no miopen/version.h)";
#endif
}

}  // namespace
}  // namespace hg::gpu

HG_REGISTER_KERNEL(conv2d_forward_op, gpu, vendor, "gpu.miopen_conv_forward (+ gpu.bias_add)",
                   &hg::gpu::conv_forward_miopen);
HG_REGISTER_KERNEL(conv2d_bias_act_op, gpu, vendor,
                   "gpu.miopen_fusion_plan_conv_bias_activation (no plan, no epilogue, or a kind MIOpen "
                   "lacks: gpu.miopen_conv_forward + gpu.bias_add + gpu.miopen_activation; a residual: "
                   "gpu.miopen_conv_forward + gpu.epilogue_pass)",
                   &hg::gpu::conv_bias_act_miopen);
HG_REGISTER_KERNEL(conv2d_backward_data_op, gpu, vendor, "gpu.miopen_conv_backward_data",
                   &hg::gpu::conv_backward_data_miopen);
HG_REGISTER_KERNEL(conv2d_backward_weight_op, gpu, vendor, "gpu.miopen_conv_backward_weights",
                   &hg::gpu::conv_backward_weight_miopen);
HG_REGISTER_KERNEL(activation_op, gpu, vendor,
                   "gpu.miopen_activation (gelu, gelu_tanh, elu, relu6, hardsigmoid, hardswish: "
                   "gpu.activation_vec4, MIOpen has no GELU, its ELU loses accuracy, and its clipped "
                   "and hard modes are not checked against PyTorch's kinks)",
                   &hg::gpu::activation_miopen);
HG_REGISTER_KERNEL(activation_backward_op, gpu, vendor,
                   "gpu.miopen_activation_backward (gelu, gelu_tanh, elu, relu6, hardsigmoid, hardswish: "
                   "gpu.activation_backward_vec4, MIOpen has no GELU, its ELU loses accuracy, and its "
                   "clipped and hard modes are not checked against PyTorch's kinks)",
                   &hg::gpu::activation_backward_miopen);
HG_REGISTER_KERNEL(avg_pool2d_op, gpu, vendor,
                   "gpu.miopen_pooling_average_inclusive (ceil_mode, count_include_pad=False: "
                   "gpu.avg_pool2d_direct)",
                   &hg::gpu::avg_pool2d_miopen);
HG_REGISTER_KERNEL(avg_pool2d_backward_op, gpu, vendor,
                   "gpu.miopen_pooling_average_inclusive_backward (ceil_mode, count_include_pad="
                   "False: gpu.avg_pool2d_backward_gather)",
                   &hg::gpu::avg_pool2d_backward_miopen);
HG_REGISTER_VENDOR_LIBRARY(gpu, dnn, amd, "MIOpen", true);
static const bool hg_miopen_fact = hg::add_build_fact("gpu.vendor.miopen", hg::gpu::miopen_version());

// ---- softmax (composed attention with rocBLAS) and layer norm ----------------------------------
namespace hg::gpu {
namespace {

// (rows, cols) as a 4-D (rows, cols, 1, 1) tensor: INSTANCE mode is a softmax over each row.
struct RowsDesc {
  miopenTensorDescriptor_t d;
  RowsDesc(int64_t rows, int64_t cols) : d(tensor4d(rows, cols, 1, 1)) {}
  ~RowsDesc() { miopenDestroyTensorDescriptor(d); }
};

void softmax_miopen(const float* x, float* y, int64_t rows, int64_t cols) {
  RowsDesc d(rows, cols);
  HG_MIOPEN_CHECK(miopenSoftmaxForward_V2(miopen_handle(current_device()), &kOne, d.d, x, &kZero,
                                          d.d, y, MIOPEN_SOFTMAX_ACCURATE,
                                          MIOPEN_SOFTMAX_MODE_INSTANCE));
}

void softmax_backward_miopen(const float* y, const float* dy, float* dx, int64_t rows,
                             int64_t cols, float alpha) {
  RowsDesc d(rows, cols);
  HG_MIOPEN_CHECK(miopenSoftmaxBackward_V2(miopen_handle(current_device()), &alpha, d.d, y, d.d,
                                           dy, &kZero, d.d, dx, MIOPEN_SOFTMAX_ACCURATE,
                                           MIOPEN_SOFTMAX_MODE_INSTANCE));
}

#if HIPGRAD_HAVE_ROCBLAS
const ComposedAttentionOps kComposed = {&gemm_strided_rocblas, &softmax_miopen,
                                        &softmax_backward_miopen};
void attention_miopen(const AttentionArgs& a) { attention_composed(a, kComposed); }
void attention_backward_miopen(const AttentionBackwardArgs& a) {
  attention_backward_composed(a, kComposed);
}
#endif

#if defined(MIOPEN_VERSION_MAJOR) && MIOPEN_VERSION_MAJOR >= 3
// miopenLayerNormForward normalizes the axes from normalized_dim on: x as (rows, C) with
// normalized_dim 1; mode MIOPEN_WEIGHT_BIAS needs both weight and bias, MIOPEN_ELEMENTWISE_AFFINE
// neither. A weight without a bias (or the reverse) runs hipgrad's kernel (named so).
void layer_norm_miopen(const LayerNormArgs& a) {
  if ((a.weight == nullptr) != (a.bias == nullptr)) return layer_norm_gpu(a);
  miopenTensorDescriptor_t x = nullptr, w = nullptr, stats = nullptr;
  int dims[2] = {to_int(a.rows, "rows"), to_int(a.C, "C")}, strides[2] = {dims[1], 1};
  int cdim[1] = {dims[1]}, one[1] = {1}, rdim[1] = {dims[0]};
  HG_MIOPEN_CHECK(miopenCreateTensorDescriptor(&x));
  HG_MIOPEN_CHECK(miopenCreateTensorDescriptor(&w));
  HG_MIOPEN_CHECK(miopenCreateTensorDescriptor(&stats));
  struct Destroy {
    miopenTensorDescriptor_t* d[3];
    ~Destroy() { for (auto* p : d) miopenDestroyTensorDescriptor(*p); }
  } destroy{{&x, &w, &stats}};
  HG_MIOPEN_CHECK(miopenSetTensorDescriptor(x, miopenFloat, 2, dims, strides));
  HG_MIOPEN_CHECK(miopenSetTensorDescriptor(w, miopenFloat, 1, cdim, one));
  HG_MIOPEN_CHECK(miopenSetTensorDescriptor(stats, miopenFloat, 1, rdim, one));
  const miopenNormMode_t mode = a.weight ? MIOPEN_WEIGHT_BIAS : MIOPEN_ELEMENTWISE_AFFINE;
  HG_MIOPEN_CHECK(miopenLayerNormForward(miopen_handle(current_device()), mode, x, a.x, w, a.weight,
                                         w, a.bias, a.eps, 1, x, a.y, stats, a.mean, stats,
                                         a.rstd));
}
#endif

}  // namespace
}  // namespace hg::gpu

#if HIPGRAD_HAVE_ROCBLAS
HG_REGISTER_KERNEL(attention_op, gpu, vendor,
                   "gpu.rocblas_sgemm_strided_batched+miopen_softmax_composed (+ gpu.lse_rows)",
                   &hg::gpu::attention_miopen);
HG_REGISTER_KERNEL(attention_backward_op, gpu, vendor,
                   "gpu.rocblas_sgemm_strided_batched+miopen_softmax_backward_composed",
                   &hg::gpu::attention_backward_miopen);
#endif
#if defined(MIOPEN_VERSION_MAJOR) && MIOPEN_VERSION_MAJOR >= 3
HG_REGISTER_KERNEL(layer_norm_op, gpu, vendor,
                   "gpu.miopen_layer_norm_forward (weight xor bias: gpu.layer_norm_warp_rows)",
                   &hg::gpu::layer_norm_miopen);
#endif

#elif defined(HIPGRAD_PLATFORM_AMD)
HG_REGISTER_VENDOR_LIBRARY(gpu, dnn, amd, "MIOpen", false);
static const bool hg_miopen_fact = hg::add_build_fact("gpu.vendor.miopen", "not found");
#endif
