// The op contract, declared once. Every op has:
//   - an argument struct handed to kernels (raw pointers and resolved sizes; checked already),
//   - a row in the op table at the end of this file, which gives it a kernel table
//     (`<op>_op()`) where backends register kernels,
//   - a front end (core/ops_<family>.cpp) that checks arguments, allocates outputs on the
//     inputs' device and dispatches.
// Layouts: NCHW activations, PyTorch weight layouts (conv: K, C/groups, R, S), row-major,
// contiguous. All math is float32; labels and indices are int64 (int32 labels accepted).
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <tuple>

#include "dispatch.h"
#include "tensor.h"

namespace hg {

using Pair = std::array<int64_t, 2>;  // (h, w)
// A tensor argument or result that may be absent (None in Python).
using OptionalTensor = std::optional<Tensor>;
// The tensor, or an undefined Tensor when absent.
inline const Tensor& or_undefined(const OptionalTensor& t) {
  static const Tensor undefined;
  return t ? *t : undefined;
}

// ---- GEMM: y = alpha * op(a) @ op(b) + beta * c, row-major --------------------------------
struct GemmArgs {
  bool trans_a = false, trans_b = false;
  int64_t M = 0, N = 0, K = 0;
  float alpha = 1.f, beta = 0.f;
  const float* a = nullptr;  int64_t lda = 0;  // a is (M, K), or (K, M) when trans_a
  const float* b = nullptr;  int64_t ldb = 0;  // b is (K, N), or (N, K) when trans_b
  const float* c = nullptr;                    // (M, N) read-only, or nullptr (then beta is unused)
  float* y = nullptr;        int64_t ldy = 0;  // (M, N), never aliases a, b or c
};
Tensor gemm(const Tensor& a, const Tensor& b, const OptionalTensor& c, bool trans_a, bool trans_b,
            float alpha, float beta, Impl impl, const Tensor* out = nullptr);

// ---- Convolution ----------------------------------------------------------------------------
struct ConvGeometry {
  int64_t N = 0, C = 0, H = 0, W = 0;  // input
  int64_t K = 0, R = 0, S = 0;         // output channels, kernel height, width
  int64_t P = 0, Q = 0;                // output height, width
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dil_h = 1, dil_w = 1, groups = 1;
};
struct ConvForwardArgs {
  ConvGeometry g;
  const float* x = nullptr;     // (N, C, H, W)
  const float* w = nullptr;     // (K, C/groups, R, S)
  const float* bias = nullptr;  // (K) or nullptr
  float* y = nullptr;           // (N, K, P, Q)
};
struct ConvBackwardDataArgs {
  ConvGeometry g;
  const float* dy = nullptr;  // (N, K, P, Q)
  const float* w = nullptr;
  float* dx = nullptr;        // (N, C, H, W), fully written
};
struct ConvBackwardWeightArgs {
  ConvGeometry g;
  const float* dy = nullptr;
  const float* x = nullptr;
  float* dw = nullptr;        // (K, C/groups, R, S), fully written
};
Tensor conv2d(const Tensor& x, const Tensor& w, const OptionalTensor& bias, Pair stride, Pair padding,
              Pair dilation, int64_t groups, Impl impl, const Tensor* out = nullptr);
Tensor conv2d_backward_data(const Tensor& dy, const Tensor& w, const Shape& x_shape, Pair stride,
                            Pair padding, Pair dilation, int64_t groups, Impl impl);
Tensor conv2d_backward_weight(const Tensor& dy, const Tensor& x, const Shape& w_shape, Pair stride,
                              Pair padding, Pair dilation, int64_t groups, Impl impl);

// ---- Bias: y = x + bias broadcast over axis 1; db = sum of dy over every axis but 1 ----------
struct BiasAddArgs {
  int64_t outer = 0, C = 0, inner = 0;  // x viewed as (outer, C, inner)
  const float* x = nullptr; const float* bias = nullptr; float* y = nullptr;
};
struct BiasBackwardArgs {
  int64_t outer = 0, C = 0, inner = 0;
  const float* dy = nullptr; float* db = nullptr;
};
Tensor bias_add(const Tensor& x, const Tensor& bias, Impl impl, const Tensor* out = nullptr);
Tensor bias_backward(const Tensor& dy, Impl impl);

// ---- Activations ------------------------------------------------------------------------------
// relu6 = min(max(x, 0), 6); hardsigmoid = min(max(x + 3, 0), 6) / 6 (PyTorch's, = clip(x/6 + 1/2,
// 0, 1)); hardswish = x * hardsigmoid(x).
enum class ActKind : int8_t { relu, leaky_relu, sigmoid, tanh, gelu, gelu_tanh, elu, relu6, hardsigmoid,
                              hardswish };
ActKind parse_activation(const std::string& kind);  // ValueError naming the known kinds
const char* activation_name(ActKind k);
struct ActivationArgs {
  ActKind kind = ActKind::relu; float alpha = 0.01f; int64_t n = 0;
  const float* x = nullptr; float* y = nullptr;
};
struct ActivationBackwardArgs {
  ActKind kind = ActKind::relu; float alpha = 0.01f; int64_t n = 0;
  const float* dy = nullptr; const float* x = nullptr; const float* y = nullptr; float* dx = nullptr;
};
Tensor activation(const Tensor& x, ActKind kind, float alpha, Impl impl,
                  const Tensor* out = nullptr);
Tensor activation_backward(const Tensor& dy, const Tensor& x, const Tensor& y, ActKind kind,
                           float alpha, Impl impl);

// ---- Fused forward ops (inference): y = act(conv2d(x, w) + bias), y = act(x @ w^T + bias) ----
// The bias (optional) and the activation (optional: has_act false is the identity) are applied
// while each output tile is written, not in a second pass over y.
struct FusedEpilogue {
  const float* bias = nullptr;  // (K) or (N) for linear, or nullptr
  bool has_act = false;
  ActKind act = ActKind::relu;
  float alpha = 0.01f;  // leaky_relu's slope, elu's alpha
};
struct ConvBiasActArgs {
  ConvGeometry g;
  const float* x = nullptr;  // (N, C, H, W)
  const float* w = nullptr;  // (K, C/groups, R, S)
  FusedEpilogue epi;         // bias (K)
  float* y = nullptr;        // (N, K, P, Q)
  // (N, K, P, Q) added before the activation, y = act(conv + bias + residual), or nullptr. It
  // is either y itself (out= aliases it: the conv accumulates onto it) or disjoint from y.
  const float* residual = nullptr;
};
struct LinearBiasActArgs {
  int64_t M = 0, N = 0, K = 0;
  const float* x = nullptr;  // (M, K)
  const float* w = nullptr;  // (N, K), PyTorch Linear layout
  FusedEpilogue epi;         // bias (N)
  float* y = nullptr;        // (M, N), never aliases x or w
};
// Frozen linear weights packed once for the CPU's packed GEMM (the inference engine's fp32
// linear layers): packed (P, K, NR) = ceil(N / NR) panels, panel q holding w[q * NR + j][k] at
// [q][k][j] (zero for rows past N); NR is the active CPU micro-kernel's width (16 floats per
// vector x 2 on AVX-512). linear_bias_act_packed is linear_bias_act with w given that way: no
// per-call packing of w. CPU only; packed for one NR, refused (ValueError) under another.
struct PackLinearWeightArgs {
  int64_t N = 0, K = 0, P = 0, NR = 0;
  const float* w = nullptr;  // (N, K)
  float* packed = nullptr;   // (P, K, NR)
};
struct LinearPackedArgs {
  int64_t M = 0, N = 0, K = 0, NR = 0;
  const float* x = nullptr;       // (M, K)
  const float* packed = nullptr;  // (ceil(N / NR), K, NR)
  FusedEpilogue epi;              // bias (N)
  float* y = nullptr;             // (M, N)
};
// The panel width the CPU's packed GEMM expects now (follows the CPU ISA in use).
int64_t cpu_gemm_panel_width();
Tensor pack_linear_weight(const Tensor& w, Impl impl);
Tensor linear_bias_act_packed(const Tensor& x, const Tensor& packed, const OptionalTensor& bias,
                              int64_t n,
                              const std::string& activation, float alpha, Impl impl,
                              const Tensor* out = nullptr);
// conv2d_bias_act (groups 1) with w (K, C, R, S) given as pack_linear_weight(w viewed as
// (K, C*R*S)), the inference engine's frozen conv weights: the output pixels of all images are
// the GEMM's rows, out (N*P*Q, K) = im2col(x)^T @ w^T, against the packed panels (no per-call
// packing), then scattered to (N, K, P, Q) with the bias, residual and activation. w_shape
// stands in for w in the geometry checks. CPU only.
struct ConvPackedArgs {
  ConvGeometry g;                 // groups == 1
  int64_t NR = 0;
  const float* x = nullptr;       // (N, C, H, W)
  const float* packed = nullptr;  // (ceil(K / NR), C*R*S, NR)
  FusedEpilogue epi;              // bias (K)
  float* y = nullptr;             // (N, K, P, Q)
  const float* residual = nullptr;  // as ConvBiasActArgs::residual
};
Tensor conv2d_bias_act_packed(const Tensor& x, const Tensor& packed, const Shape& w_shape,
                              const OptionalTensor& bias, const OptionalTensor& residual,
                              Pair stride, Pair padding, Pair dilation,
                              const std::string& activation, float alpha, Impl impl,
                              const Tensor* out = nullptr);
// activation: one of the activation kinds, or "" / "none" for none.
// residual: y's shape, added before the activation; `out` may be residual itself (the same
// tensor) but must not overlap it otherwise.
Tensor conv2d_bias_act(const Tensor& x, const Tensor& w, const OptionalTensor& bias,
                       const OptionalTensor& residual, Pair stride, Pair padding, Pair dilation,
                       int64_t groups, const std::string& activation, float alpha, Impl impl,
                       const Tensor* out = nullptr);
Tensor linear_bias_act(const Tensor& x, const Tensor& w, const OptionalTensor& bias,
                       const std::string& activation, float alpha, Impl impl,
                       const Tensor* out = nullptr);

// ---- Pooling ----------------------------------------------------------------------------------
struct PoolGeometry {
  int64_t N = 0, C = 0, H = 0, W = 0, kh = 1, kw = 1, sh = 1, sw = 1, ph = 0, pw = 0, P = 0, Q = 0;
  // ceil_mode: P and Q rounded up (PyTorch / ONNX), a window that would start in the bottom or
  // right padding dropped, so every window still holds an input element; windows may reach past
  // the padding. count_include_pad (average pooling): the divisor is the window's extent inside
  // the padded input ((min(h0 + kh, H + ph) - h0) * (likewise in w), kh*kw in floor mode), else
  // the number of input elements it covers.
  bool ceil_mode = false, count_include_pad = true;
};
struct MaxPoolArgs {
  PoolGeometry g; const float* x = nullptr; float* y = nullptr;
  int64_t* argmax = nullptr;  // (N, C, P, Q): index h*W + w of the max inside its (n, c) plane;
                              // nullptr when the caller needs no backward (inference)
};
struct MaxPoolBackwardArgs {
  PoolGeometry g; const float* dy = nullptr; const int64_t* argmax = nullptr; float* dx = nullptr;
};
struct AvgPoolArgs { PoolGeometry g; const float* x = nullptr; float* y = nullptr; };
struct AvgPoolBackwardArgs { PoolGeometry g; const float* dy = nullptr; float* dx = nullptr; };
// with_argmax=false: no argmax is computed and the second tensor is absent (inference).
std::tuple<Tensor, OptionalTensor> max_pool2d(const Tensor& x, Pair kernel, Pair stride, Pair padding,
                                      Impl impl, const Tensor* out = nullptr,
                                      bool with_argmax = true, bool ceil_mode = false);
Tensor max_pool2d_backward(const Tensor& dy, const Tensor& argmax, const Shape& x_shape, Impl impl);
Tensor avg_pool2d(const Tensor& x, Pair kernel, Pair stride, Pair padding, Impl impl,
                  const Tensor* out = nullptr, bool ceil_mode = false,
                  bool count_include_pad = true);
Tensor avg_pool2d_backward(const Tensor& dy, const Shape& x_shape, Pair kernel, Pair stride,
                           Pair padding, Impl impl, bool ceil_mode = false,
                           bool count_include_pad = true);

// ---- Losses -----------------------------------------------------------------------------------
struct SoftmaxXentArgs {
  int64_t N = 0, C = 0;
  const float* logits = nullptr; const void* labels = nullptr; DType label_dtype = DType::i64;
  float* probs = nullptr;     // (N, C)
  float* loss = nullptr;      // one element: the mean over N
  int32_t* bad_label = nullptr;  // one element, set to 1 by the kernel when a label is outside [0, C)
};
struct SoftmaxXentBackwardArgs {
  int64_t N = 0, C = 0;
  const float* probs = nullptr; const void* labels = nullptr; DType label_dtype = DType::i64;
  float* dlogits = nullptr;   // (probs - onehot) / N
  int32_t* bad_label = nullptr;
};
struct SoftmaxArgs { int64_t rows = 0, cols = 0; const float* x = nullptr; float* y = nullptr; };
struct MseArgs { int64_t n = 0; const float* pred = nullptr; const float* target = nullptr; float* loss = nullptr; };
struct MseBackwardArgs { int64_t n = 0; const float* pred = nullptr; const float* target = nullptr; float* dpred = nullptr; };
std::tuple<Tensor, Tensor> softmax_cross_entropy(const Tensor& logits, const Tensor& labels, Impl impl);
Tensor softmax_cross_entropy_backward(const Tensor& probs, const Tensor& labels, Impl impl);
Tensor softmax(const Tensor& x, Impl impl, const Tensor* out = nullptr);  // over the last axis
Tensor mse_loss(const Tensor& pred, const Tensor& target, Impl impl);  // mean, shape ()
Tensor mse_loss_backward(const Tensor& pred, const Tensor& target, Impl impl);

// ---- Optimizer steps (in place, PyTorch semantics) -----------------------------------------
struct SgdArgs {
  int64_t n = 0; float* param = nullptr; const float* grad = nullptr;
  float* momentum_buf = nullptr;  // nullptr when momentum == 0
  float lr = 0.f, momentum = 0.f, weight_decay = 0.f; bool nesterov = false;
};
struct AdamArgs {
  int64_t n = 0; float* param = nullptr; const float* grad = nullptr; float* m = nullptr; float* v = nullptr;
  int64_t step = 1; float lr = 0.f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.f;
  bool decoupled = false;
};
void sgd_step(Tensor& param, const Tensor& grad, const OptionalTensor& momentum_buf, float lr, float momentum,
              float weight_decay, bool nesterov, Impl impl);
void adam_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, int64_t step, float lr,
               float beta1, float beta2, float eps, float weight_decay, bool decoupled, Impl impl);

// ---- Helpers the layers need (beyond the contract's table) ---------------------------------
struct AddArgs { int64_t n = 0; float alpha = 1.f; const float* a = nullptr; const float* b = nullptr; float* y = nullptr; };  // y may alias a
struct FillArgs { int64_t n = 0; float value = 0.f; float* y = nullptr; };
struct BatchNormArgs {
  int64_t N = 0, C = 0, HW = 0; bool training = true; float momentum = 0.1f, eps = 1e-5f;
  const float* x = nullptr; const float* gamma = nullptr; const float* beta = nullptr;
  float* running_mean = nullptr; float* running_var = nullptr;  // updated in training (unbiased var)
  float* y = nullptr; float* save_mean = nullptr; float* save_invstd = nullptr;  // (C) each
};
struct BatchNormBackwardArgs {
  int64_t N = 0, C = 0, HW = 0; bool training = true;
  const float* dy = nullptr; const float* x = nullptr; const float* gamma = nullptr;
  const float* save_mean = nullptr; const float* save_invstd = nullptr;
  float* dx = nullptr; float* dgamma = nullptr; float* dbeta = nullptr;
};
struct DropoutArgs { int64_t n = 0; float p = 0.f; uint64_t seed = 0; const float* x = nullptr; float* y = nullptr; uint8_t* mask = nullptr; };
struct DropoutBackwardArgs { int64_t n = 0; float p = 0.f; const float* dy = nullptr; const uint8_t* mask = nullptr; float* dx = nullptr; };
struct EmbeddingArgs { int64_t num = 0, dim = 0, count = 0; const float* weight = nullptr; const int64_t* idx = nullptr; float* y = nullptr; int32_t* bad_index = nullptr; };
struct EmbeddingBackwardArgs {
  int64_t num = 0, dim = 0, count = 0; const float* dy = nullptr; const int64_t* idx = nullptr;
  float* dw = nullptr;              // (num, dim), fully written
  int32_t* bad_index = nullptr;     // one element, set to 1 when an index is outside [0, num)
};
Tensor add(const Tensor& a, const Tensor& b, float alpha, Impl impl, const Tensor* out = nullptr);
void add_(Tensor& a, const Tensor& b, float alpha, Impl impl);  // a += alpha * b
void fill_(Tensor& y, float value, Impl impl);
std::tuple<Tensor, Tensor, Tensor> batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                              Tensor& running_mean, Tensor& running_var,
                                              bool training, float momentum, float eps, Impl impl,
                                              const Tensor* out = nullptr);
std::tuple<Tensor, Tensor, Tensor> batch_norm_backward(const Tensor& dy, const Tensor& x,
                                                       const Tensor& gamma, const Tensor& save_mean,
                                                       const Tensor& save_invstd, bool training, Impl impl);
std::tuple<Tensor, Tensor> dropout(const Tensor& x, float p, uint64_t seed, Impl impl);
Tensor dropout_backward(const Tensor& dy, const Tensor& mask, float p, Impl impl);
Tensor embedding(const Tensor& weight, const Tensor& idx, Impl impl, const Tensor* out = nullptr);
Tensor embedding_backward(const Tensor& dy, const Tensor& idx, int64_t num, Impl impl);

}  // namespace hg

// ---- INT8 inference (post-training quantization, symmetric) --------------------------------
namespace hg {

// q = clamp(round_half_even(x / scale), -127, 127)
struct QuantizeArgs { int64_t n = 0; float inv_scale = 1.f; const float* x = nullptr; int8_t* q = nullptr; };
// y[m, n] = act(x_scale * w_scale[n] * sum_k xq[m, k] * wq[n, k] + bias[n]); int32 accumulation.
// xq (M, K) int8, wq (N, K) int8 (PyTorch Linear layout), y (M, N) float32.
struct QGemmArgs {
  int64_t M = 0, N = 0, K = 0;
  const int8_t* xq = nullptr; const int8_t* wq = nullptr;
  float x_scale = 1.f; const float* w_scale = nullptr; const float* bias = nullptr;
  bool has_act = false; ActKind act = ActKind::relu; float alpha = 0.01f;
  float* y = nullptr;
};
// The same as a convolution: xq (N, C, H, W) int8, wq (K, C/groups, R, S) int8, y (N, K, P, Q).
struct QConvArgs {
  ConvGeometry g;
  const int8_t* xq = nullptr; const int8_t* wq = nullptr;
  float x_scale = 1.f; const float* w_scale = nullptr; const float* bias = nullptr;
  bool has_act = false; ActKind act = ActKind::relu; float alpha = 0.01f;
  float* y = nullptr;
  const int32_t* packed = nullptr;  // CPU: wq as qpack_weight made it (checked), or null
};
// Frozen INT8 weights packed once for the CPU's qconv2d kernel (the inference engine's conv
// weights): wq (rows, ...) viewed as (rows, K) becomes a 1-D int32 tensor of
// kQPackHeader + rows * (groups + 1) words: a header {tag, rows, K, groups, k values per group},
// the rows packed in the active ISA's k-groups (rows * groups words: 4 int8 or 2 int16 in a
// word), then each row's correction term (rows words: 128 * sum_k wq, or 0 without the shift).
// The tag names the ISA layout; qconv2d refuses (ValueError) a buffer packed under another ISA
// or for another shape. CPU only.
struct QPackWeightArgs {
  int64_t rows = 0, K = 0, groups = 0;
  const int8_t* wq = nullptr;
  int32_t* packed = nullptr;
};
constexpr int64_t kQPackHeader = 5;
int32_t cpu_qpack_tag();                   // the tag of the CPU ISA in use
int64_t cpu_qpack_groups(int64_t K);       // k-groups per packed row under that ISA
Tensor qpack_weight(const Tensor& wq, Impl impl);
Tensor quantize(const Tensor& x, float scale, Impl impl, const Tensor* out = nullptr);  // out: int8
Tensor qgemm(const Tensor& xq, const Tensor& wq, float x_scale, const Tensor& w_scale,
             const OptionalTensor& bias, const std::string& activation, float alpha, Impl impl,
             const Tensor* out = nullptr);
Tensor qconv2d(const Tensor& xq, const Tensor& wq, float x_scale, const Tensor& w_scale,
               const OptionalTensor& bias, Pair stride, Pair padding, Pair dilation, int64_t groups,
               const std::string& activation, float alpha, Impl impl, const Tensor* out = nullptr,
               const OptionalTensor& packed = std::nullopt);

}  // namespace hg

#include "ops_attention.h"  // layer norm, attention, bmm, gradient clipping (Args, front ends)
#include "ops_graph.h"      // binary broadcasting, concat, split, transpose, reduce_mean, pad2d

// ---- The op table -----------------------------------------------------------------------------
// One row per op: X(accessor, "name", Args, tunable, cpu vendor, gpu vendor). From it come the
// kernel tables `<accessor>_op()` (declared below, defined in core/op_table.cpp), op_names() in
// table order, a compile-time check of the names, and the vendor fallback reasons. tunable: the
// op is pure (outputs depend on inputs only), so impl="auto" may time its candidates by running
// each; an op that works in place (add_ through add), draws random numbers (dropout) or updates
// state (batch_norm's running statistics) is not.
// Vendor columns, per backend:
//   HG_BY_LIB(blas|dnn)               the backend's vendor library of that family registers a
//                                     kernel (OpenBLAS; rocBLAS / cuBLAS; MIOpen / cuDNN)
//   HG_LIB_LACKS(dnn, amd, nvidia)    that family's library is wrapped but not used for this op,
//                                     and why, on AMD and on NVIDIA
//   HG_NO_VENDOR(why)                 no vendor library has the op; impl="vendor" runs the
//                                     handwritten kernel, reported with this reason
//   HG_NO_KERNEL                      the backend has no kernel for the op
#define HG_BY_LIB(lib) ::hg::VendorCover{::hg::VendorLib::lib}
#define HG_LIB_LACKS(lib, amd, nvidia) ::hg::VendorCover{::hg::VendorLib::lib, nullptr, amd, nvidia}
#define HG_NO_VENDOR(why) ::hg::VendorCover{::hg::VendorLib::none, why}
#define HG_NO_KERNEL ::hg::VendorCover{}
#define HG_NO_GPU_LIBRARY_FOR(what) \
  HG_NO_VENDOR("no GPU vendor library (rocBLAS, MIOpen, cuBLAS, cuDNN) " what)

#define HG_OP_TABLE(X)                                                                            \
  X(gemm, "gemm", GemmArgs, true, HG_BY_LIB(blas), HG_BY_LIB(blas))                               \
  X(conv2d_forward, "conv2d_forward", ConvForwardArgs, true, HG_BY_LIB(blas), HG_BY_LIB(dnn))     \
  X(conv2d_backward_data, "conv2d_backward_data", ConvBackwardDataArgs, true, HG_BY_LIB(blas),    \
    HG_BY_LIB(dnn))                                                                               \
  X(conv2d_backward_weight, "conv2d_backward_weight", ConvBackwardWeightArgs, true,               \
    HG_BY_LIB(blas), HG_BY_LIB(dnn))                                                              \
  X(bias_add, "bias_add", BiasAddArgs, true,                                                      \
    HG_NO_VENDOR("no BLAS routine reduces or broadcasts a bias"),                                 \
    HG_NO_VENDOR("hipgrad does not wrap miopenConvolutionForwardBias / cudnnAddTensor for a lone " \
                 "bias add"))                                                                     \
  X(bias_backward, "bias_backward", BiasBackwardArgs, true,                                       \
    HG_NO_VENDOR("no BLAS routine reduces or broadcasts a bias"),                                 \
    HG_NO_VENDOR("hipgrad does not wrap miopenConvolutionBackwardBias / "                         \
                 "cudnnConvolutionBackwardBias"))                                                 \
  X(activation, "activation", ActivationArgs, false,                                              \
    HG_NO_VENDOR("OpenBLAS, the CPU vendor library, has no activation routine"), HG_BY_LIB(dnn))  \
  X(activation_backward, "activation_backward", ActivationBackwardArgs, false,                    \
    HG_NO_VENDOR("OpenBLAS, the CPU vendor library, has no activation routine"), HG_BY_LIB(dnn))  \
  X(conv2d_bias_act, "conv2d_bias_act", ConvBiasActArgs, true, HG_BY_LIB(blas), HG_BY_LIB(dnn))   \
  X(linear_bias_act, "linear_bias_act", LinearBiasActArgs, true, HG_BY_LIB(blas),                 \
    HG_BY_LIB(blas))                                                                              \
  X(pack_linear_weight, "pack_linear_weight", PackLinearWeightArgs, false,                        \
    HG_NO_VENDOR("the panels are hipgrad's packed GEMM's own layout; OpenBLAS packs internally"), \
    HG_NO_KERNEL)                                                                                 \
  X(linear_bias_act_packed, "linear_bias_act_packed", LinearPackedArgs, false,                    \
    HG_NO_VENDOR("OpenBLAS takes no weight packed in hipgrad's GEMM layout"), HG_NO_KERNEL)       \
  X(max_pool2d, "max_pool2d", MaxPoolArgs, false,                                                 \
    HG_NO_VENDOR("OpenBLAS, the CPU vendor library, has no pooling routine"),                     \
    HG_LIB_LACKS(dnn,                                                                             \
                 "MIOpen keeps max-pooling indices in its own workspace layout, not hipgrad's "   \
                 "int64 argmax (h*W + w)",                                                        \
                 "cuDNN's max pooling returns no argmax, and max_pool2d_backward takes "          \
                 "hipgrad's int64 argmax (h*W + w)"))                                             \
  X(max_pool2d_backward, "max_pool2d_backward", MaxPoolBackwardArgs, false,                       \
    HG_NO_VENDOR("OpenBLAS, the CPU vendor library, has no pooling routine"),                     \
    HG_LIB_LACKS(dnn,                                                                             \
                 "MIOpen's max-pooling backward reads its own workspace, not hipgrad's int64 "    \
                 "argmax",                                                                        \
                 "cuDNN's max-pooling backward recomputes the max from x and y instead of "       \
                 "taking hipgrad's argmax"))                                                      \
  X(avg_pool2d, "avg_pool2d", AvgPoolArgs, false,                                                 \
    HG_NO_VENDOR("OpenBLAS, the CPU vendor library, has no pooling routine"), HG_BY_LIB(dnn))     \
  X(avg_pool2d_backward, "avg_pool2d_backward", AvgPoolBackwardArgs, false,                       \
    HG_NO_VENDOR("OpenBLAS, the CPU vendor library, has no pooling routine"), HG_BY_LIB(dnn))     \
  X(softmax_cross_entropy, "softmax_cross_entropy", SoftmaxXentArgs, true,                        \
    HG_NO_VENDOR("no BLAS routine computes a cross-entropy loss"),                                \
    HG_NO_VENDOR("neither MIOpen nor cuDNN has a fused softmax cross-entropy with a label "       \
                 "check"))                                                                        \
  X(softmax_cross_entropy_backward, "softmax_cross_entropy_backward", SoftmaxXentBackwardArgs,    \
    true, HG_NO_VENDOR("no BLAS routine computes a cross-entropy gradient"),                      \
    HG_NO_VENDOR("neither MIOpen nor cuDNN has a softmax cross-entropy backward"))                \
  X(softmax, "softmax", SoftmaxArgs, true, HG_NO_VENDOR("no BLAS routine computes a softmax"),    \
    HG_NO_VENDOR("hipgrad does not wrap miopenSoftmaxForward_V2 / cudnnSoftmaxForward"))          \
  X(mse_loss, "mse_loss", MseArgs, true,                                                          \
    HG_NO_VENDOR("no BLAS routine computes a mean squared error"),                                \
    HG_NO_VENDOR("neither MIOpen nor cuDNN has an MSE loss"))                                     \
  X(mse_loss_backward, "mse_loss_backward", MseBackwardArgs, true,                                \
    HG_NO_VENDOR("no BLAS routine computes a mean squared error gradient"),                       \
    HG_NO_VENDOR("neither MIOpen nor cuDNN has an MSE loss"))                                     \
  X(sgd_step, "sgd_step", SgdArgs, false, HG_NO_VENDOR("no BLAS routine performs an SGD update"), \
    HG_NO_GPU_LIBRARY_FOR("has an SGD step"))                                                     \
  X(adam_step, "adam_step", AdamArgs, false,                                                      \
    HG_NO_VENDOR("no BLAS routine performs an Adam update"),                                      \
    HG_NO_GPU_LIBRARY_FOR("has an Adam step"))                                                    \
  X(add, "add", AddArgs, false,                                                                   \
    HG_NO_VENDOR("BLAS saxpy updates in place only; add is a single fused pass here"),            \
    HG_NO_GPU_LIBRARY_FOR("is wrapped for elementwise add"))                                      \
  X(fill, "fill_", FillArgs, false, HG_NO_VENDOR("no BLAS routine fills a vector"),               \
    HG_NO_GPU_LIBRARY_FOR("is wrapped for fill"))                                                 \
  X(batch_norm, "batch_norm", BatchNormArgs, false,                                               \
    HG_NO_VENDOR("no BLAS routine computes batch normalization"),                                 \
    HG_NO_VENDOR("hipgrad does not wrap MIOpen / cuDNN batch normalization (the vendor layer "    \
                 "covers GEMM, convolution, activation and pooling)"))                            \
  X(batch_norm_backward, "batch_norm_backward", BatchNormBackwardArgs, true,                      \
    HG_NO_VENDOR("no BLAS routine computes the batch normalization gradient"),                    \
    HG_NO_VENDOR("hipgrad does not wrap MIOpen / cuDNN batch normalization (the vendor layer "    \
                 "covers GEMM, convolution, activation and pooling)"))                            \
  X(dropout, "dropout", DropoutArgs, false, HG_NO_VENDOR("no BLAS routine draws a dropout mask"), \
    HG_NO_VENDOR("MIOpen / cuDNN dropout draw their own random stream, which cannot match the "   \
                 "CPU mask; hipgrad's counter-based hash does"))                                  \
  X(dropout_backward, "dropout_backward", DropoutBackwardArgs, true,                              \
    HG_NO_VENDOR("no BLAS routine applies a dropout mask"),                                       \
    HG_NO_VENDOR("the mask comes from hipgrad's dropout kernel, so its backward is hipgrad's "    \
                 "too"))                                                                          \
  X(embedding, "embedding", EmbeddingArgs, true,                                                  \
    HG_NO_VENDOR("no BLAS routine gathers rows by index"),                                        \
    HG_NO_GPU_LIBRARY_FOR("is wrapped for embedding lookups"))                                    \
  X(embedding_backward, "embedding_backward", EmbeddingBackwardArgs, true,                        \
    HG_NO_VENDOR("no BLAS routine scatter-adds rows by index"),                                   \
    HG_NO_GPU_LIBRARY_FOR("is wrapped for embedding gradients"))                                  \
  X(quantize, "quantize", QuantizeArgs, false,                                                    \
    HG_NO_VENDOR("no CPU vendor library quantizes tensors"),                                      \
    HG_NO_VENDOR("no GPU vendor library hipgrad wraps quantizes tensors"))                        \
  X(layer_norm, "layer_norm", LayerNormArgs, true, HG_NO_VENDOR("OpenBLAS has no layer norm"),    \
    HG_LIB_LACKS(dnn,                                                                             \
                 "miopenLayerNormForward (beta API) needs MIOpen >= 3 (ROCm 6.0)",               \
                 "cuDNN's legacy API has no layer norm (only its graph API does)"))               \
  X(layer_norm_backward, "layer_norm_backward", LayerNormBackwardArgs, true,                      \
    HG_NO_VENDOR("OpenBLAS has no layer norm"),                                                   \
    HG_LIB_LACKS(dnn,                                                                             \
                 "MIOpen's layer-norm backward (miopenLayerNormBackward) appears only around "    \
                 "ROCm 7.1; headers up to ROCm 6.3 have just the RMS-style T5 backward",          \
                 "cuDNN's legacy API has no layer norm (only its graph API does)"))               \
  X(attention, "attention", AttentionArgs, true, HG_BY_LIB(blas),                                 \
    HG_LIB_LACKS(dnn,                                                                             \
                 "the vendor attention is composed of rocBLAS strided-batched SGEMM and MIOpen's "\
                 "softmax (MIOpen's MHA problem API has no fp32 causal path) and this build "     \
                 "lacks one of them",                                                             \
                 "the vendor attention is composed of cuBLAS strided-batched SGEMM and cuDNN's "  \
                 "softmax and this build lacks one of them"))                                     \
  X(attention_backward, "attention_backward", AttentionBackwardArgs, true, HG_BY_LIB(blas),       \
    HG_LIB_LACKS(dnn,                                                                             \
                 "the vendor attention backward is composed of rocBLAS strided-batched SGEMM and "\
                 "MIOpen's softmax backward (MIOpen's MHA problem API has no fp32 causal path) "  \
                 "and this build lacks one of them",                                              \
                 "the vendor attention backward is composed of cuBLAS strided-batched SGEMM and " \
                 "cuDNN's softmax backward and this build lacks one of them"))                    \
  X(bmm, "bmm", BmmArgs, true, HG_BY_LIB(blas), HG_BY_LIB(blas))                                  \
  X(sum_squares, "sum_squares", SumSquaresArgs, true,                                             \
    HG_NO_VENDOR("OpenBLAS's snrm2 is not a fixed-order double sum"),                             \
    HG_NO_VENDOR("rocBLAS / cuBLAS snrm2 is not a fixed-order sum"))                              \
  X(scale, "scale_", ScaleArgs, false,                                                            \
    HG_NO_VENDOR("sscal would start OpenBLAS's thread pool beside hipgrad's"),                    \
    HG_NO_GPU_LIBRARY_FOR("is wrapped for an in-place scale"))                                    \
  X(qgemm, "qgemm", QGemmArgs, true, HG_NO_VENDOR("OpenBLAS has no INT8 GEMM"), HG_BY_LIB(blas))  \
  X(qconv2d, "qconv2d", QConvArgs, true, HG_NO_VENDOR("OpenBLAS has no INT8 GEMM"),               \
    HG_NO_VENDOR("hipgrad wraps no INT8 convolution (MIOpen / cuDNN int8 paths need NHWC or "     \
                 "packed int8x4 layouts)"))                                                       \
  X(binary, "binary", BinaryArgs, false,                                                          \
    HG_NO_VENDOR("no BLAS routine broadcasts an elementwise add, sub, mul or div"),               \
    HG_NO_VENDOR("hipgrad does not wrap miopenOpTensor / cudnnOpTensor (cuDNN 9 deprecates it, "  \
                 "and neither divides)"))                                                         \
  X(concat, "concat", BlockCopyArgs, true, HG_NO_VENDOR("a block copy; no BLAS routine needed"),  \
    HG_NO_VENDOR("a block copy; no GPU vendor library routine needed"))                           \
  X(split, "split", BlockCopyArgs, true, HG_NO_VENDOR("a block copy; no BLAS routine needed"),    \
    HG_NO_VENDOR("a block copy; no GPU vendor library routine needed"))                           \
  X(transpose, "transpose", TransposeArgs, true,                                                  \
    HG_NO_VENDOR("OpenBLAS's somatcopy transposes 2-D matrices only"),                            \
    HG_NO_VENDOR("hipgrad does not wrap miopenTransformTensor / cudnnTransformTensor"))           \
  X(reduce_mean, "reduce_mean", ReduceMeanArgs, true,                                             \
    HG_NO_VENDOR("no BLAS routine averages over arbitrary axes"),                                 \
    HG_NO_VENDOR("hipgrad does not wrap miopenReduceTensor / cudnnReduceTensor"))                 \
  X(pad2d, "pad2d", Pad2dArgs, true, HG_NO_VENDOR("no BLAS routine pads a tensor"),               \
    HG_NO_VENDOR("neither MIOpen nor cuDNN pads a tensor on its own"))                            \
  X(conv2d_bias_act_packed, "conv2d_bias_act_packed", ConvPackedArgs, false,                      \
    HG_NO_VENDOR("OpenBLAS takes no weight packed in hipgrad's GEMM layout"), HG_NO_KERNEL)       \
  X(qpack_weight, "qpack_weight", QPackWeightArgs, false,                                         \
    HG_NO_VENDOR("the packed rows are hipgrad's INT8 kernels' own layout"), HG_NO_KERNEL)

namespace hg {

#define HG_DECLARE_OP(accessor, name, Args, ...) OpKernels<Args>& accessor##_op();
HG_OP_TABLE(HG_DECLARE_OP)
#undef HG_DECLARE_OP

// Every op, in table order.
enum class OpId : int {
#define HG_OP_ID(accessor, ...) accessor,
  HG_OP_TABLE(HG_OP_ID)
#undef HG_OP_ID
  count
};
constexpr int kOpCount = int(OpId::count);

}  // namespace hg
