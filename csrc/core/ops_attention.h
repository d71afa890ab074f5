// The language-model ops (declared once here, included by ops.h): layer norm, attention,
// batched GEMM, and the gradient-clipping helpers (sum of squares, in-place scale). Their rows
// of the op table (HG_OP_TABLE in ops.h) give the kernel tables `<op>_op()`.
//
// Layouts, row-major and contiguous, float32:
//   layer_norm          x (..., C); weight, bias (C) or absent; mean, rstd x.shape[:-1]
//   attention           q (B, H, Tq, D), k and v (B, H, Tk, D); out (B, H, Tq, D);
//                       lse (B, H, Tq) = log sum_j exp(scale * q_i . k_j) over the visible keys;
//                       causal: query i sees keys j <= i + (Tk - Tq) (aligned to the end)
//                       forward only: k and v may be longer buffers of which the first Tk keys
//                       are read (kv_len), laid out (B, H, L, D) or position-major (L, B, H, D),
//                       the KV cache of decoding (read in place, never copied)
//   bmm                 a (batch, M, K) or (batch, K, M) when trans_a; b (batch, K, N) or
//                       (batch, N, K) when trans_b; y (batch, M, N) = alpha * op(a) @ op(b)
#pragma once
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "dispatch.h"
#include "tensor.h"

namespace hg {

// ---- Layer norm over the last axis ---------------------------------------------------------
struct LayerNormArgs {
  int64_t rows = 0, C = 0; float eps = 1e-5f;
  const float* x = nullptr;
  const float* weight = nullptr;  // (C) or nullptr (1)
  const float* bias = nullptr;    // (C) or nullptr (0)
  float* y = nullptr; float* mean = nullptr; float* rstd = nullptr;  // (rows, C), (rows), (rows)
};
struct LayerNormBackwardArgs {
  int64_t rows = 0, C = 0;
  const float* dy = nullptr; const float* x = nullptr;
  const float* weight = nullptr;  // (C) or nullptr (1)
  const float* mean = nullptr; const float* rstd = nullptr;
  float* dx = nullptr;                               // (rows, C), fully written
  float* dweight = nullptr; float* dbias = nullptr;  // (C) each, fully written
};
std::tuple<Tensor, Tensor, Tensor> layer_norm(const Tensor& x, const OptionalTensor& weight,
                                              const OptionalTensor& bias, float eps, Impl impl);
std::tuple<Tensor, Tensor, Tensor> layer_norm_backward(const Tensor& dy, const Tensor& x,
                                                       const OptionalTensor& weight,
                                                       const Tensor& mean, const Tensor& rstd,
                                                       Impl impl);

// ---- Scaled dot-product attention -----------------------------------------------------------
struct AttentionGeometry {
  int64_t B = 0, H = 0, Tq = 0, Tk = 0, D = 0;
  bool causal = false;
  float scale = 1.f;
  // Key j of head bh = b * H + h starts at element bh * kv_head + j * kv_row of k (and of v).
  // Contiguous (B, H, Tk, D): kv_head = Tk * D, kv_row = D (always so in the backward); a
  // (B, H, L, D) cache read up to kv_len: L * D, D; a position-major (L, B, H, D) cache: D, B * H * D.
  int64_t kv_head = 0, kv_row = 0;
};

struct AttentionArgs {
  AttentionGeometry g;
  const float* q = nullptr; const float* k = nullptr; const float* v = nullptr;
  float* out = nullptr;  // (B, H, Tq, D)
  float* lse = nullptr;  // (B, H, Tq)
};
struct AttentionBackwardArgs {
  AttentionGeometry g;
  const float* dout = nullptr; const float* q = nullptr; const float* k = nullptr;
  const float* v = nullptr; const float* out = nullptr; const float* lse = nullptr;
  float* dq = nullptr; float* dk = nullptr; float* dv = nullptr;  // fully written
};
// scale <= 0 or NaN is refused; callers pass 1/sqrt(D) for the default. kv_len absent: every key
// of k and v; else the first kv_len keys (1 <= kv_len <= L). kv_layout: "bhtd" (k, v (B, H, L,
// D)) or "tbhd" (position-major (L, B, H, D)). `out`, when given, receives out.
std::tuple<Tensor, Tensor> attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                     bool causal, float scale, std::optional<int64_t> kv_len,
                                     const std::string& kv_layout, Impl impl,
                                     const Tensor* out = nullptr);
std::tuple<Tensor, Tensor, Tensor> attention_backward(const Tensor& dout, const Tensor& q,
                                                      const Tensor& k, const Tensor& v,
                                                      const Tensor& out, const Tensor& lse,
                                                      bool causal, float scale, Impl impl);

// ---- Batched GEMM over a leading batch axis ------------------------------------------------
struct BmmArgs {
  int64_t batch = 0, M = 0, N = 0, K = 0;
  bool trans_a = false, trans_b = false;
  float alpha = 1.f;
  const float* a = nullptr; const float* b = nullptr;  // strides M*K and K*N per batch
  float* y = nullptr;                                  // (batch, M, N), never aliases a or b
};
Tensor bmm(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, float alpha, Impl impl,
           const Tensor* out = nullptr);

// ---- Gradient clipping by global norm: sum of squares per tensor, in-place scale -----------
struct SumSquaresArgs { int64_t n = 0; const float* x = nullptr; float* out = nullptr; };  // one element
struct ScaleArgs { int64_t n = 0; float alpha = 1.f; float* x = nullptr; };              // x *= alpha
// (count,) float32 on the tensors' device: entry i = sum of squares of tensors[i] (accumulated in
// double on the CPU, in float per thread and double across blocks on the GPU).
Tensor sum_squares(const std::vector<Tensor>& tensors, Impl impl);
void scale_(Tensor& x, float alpha, Impl impl);

}  // namespace hg
