// Front ends of the language-model ops: layer norm, attention, bmm, sum of squares, scale.
// Checks (each names the op, the argument and the expected form), output allocation, dispatch.
#include <cmath>

#include "checks.h"

namespace hg {

namespace {

Shape leading(const Tensor& t) { return Shape(t.shape().begin(), t.shape().end() - 1); }

// The layouts of k and v the forward takes: (B, H, L, D) or position-major (L, B, H, D).
enum class KvLayout : int8_t { bhtd, tbhd };

KvLayout parse_kv_layout(const char* op, const std::string& s) {
  if (s == "bhtd") return KvLayout::bhtd;
  if (s == "tbhd") return KvLayout::tbhd;
  fail(ErrorKind::value, op, ": kv_layout must be 'bhtd' (k, v (B, H, L, D)) or 'tbhd' ",
       "(position-major (L, B, H, D)), got '", s, "'");
}

// weight / bias of a layer norm over C features: absent, or float32 (C).
void check_affine(const char* op, const char* name, const Tensor& t, int64_t C) {
  if (!t.defined()) return;
  require_f32(op, name, t);
  HG_REQUIRE(t.dim() == 1 && t.size(0) == C, op, ": ", name, " must have shape (", C,
             ",) to match x's last axis, got ", shape_str(t.shape()));
}

}  // namespace

std::tuple<Tensor, Tensor, Tensor> layer_norm(const Tensor& x, const OptionalTensor& weight_arg,
                                              const OptionalTensor& bias_arg, float eps, Impl impl) {
  const char* op = "layer_norm";
  const Tensor& weight = or_undefined(weight_arg);
  const Tensor& bias = or_undefined(bias_arg);
  require_f32(op, "x", x);
  HG_REQUIRE(x.dim() >= 1 && x.size(-1) >= 1, op,
             ": x must be (..., C) with C >= 1, got shape ", shape_str(x.shape()));
  HG_REQUIRE(std::isfinite(eps) && eps >= 0.f, op, ": eps must be a finite number >= 0, got ", eps);
  const int64_t C = x.size(-1);
  check_affine(op, "weight", weight, C);
  check_affine(op, "bias", bias, C);
  const Device dev = require_same_device(op, {{"x", &x}, {"weight", &weight}, {"bias", &bias}});
  Tensor y = empty(x.shape(), DType::f32, dev);
  Tensor mean = empty(leading(x), DType::f32, dev);
  Tensor rstd = empty(leading(x), DType::f32, dev);
  if (x.numel() == 0) return {y, mean, rstd};
  LayerNormArgs a;
  a.rows = x.numel() / C;
  a.C = C;
  a.eps = eps;
  a.x = x.data<float>();
  a.weight = weight.defined() ? weight.data<float>() : nullptr;
  a.bias = bias.defined() ? bias.data<float>() : nullptr;
  a.y = y.data<float>();
  a.mean = mean.data<float>();
  a.rstd = rstd.data<float>();
  layer_norm_op().run(dev, impl, a, cat("rows=", a.rows, ",C=", C, ",w=", bool(a.weight),
                                        ",b=", bool(a.bias)));
  return {y, mean, rstd};
}

std::tuple<Tensor, Tensor, Tensor> layer_norm_backward(const Tensor& dy, const Tensor& x,
                                                       const OptionalTensor& weight_arg,
                                                       const Tensor& mean, const Tensor& rstd,
                                                       Impl impl) {
  const char* op = "layer_norm_backward";
  const Tensor& weight = or_undefined(weight_arg);
  require_f32(op, "x", x);
  HG_REQUIRE(x.dim() >= 1 && x.size(-1) >= 1, op,
             ": x must be (..., C) with C >= 1, got shape ", shape_str(x.shape()));
  const int64_t C = x.size(-1);
  require_f32(op, "dy", dy);
  require_shape(op, "dy", dy, x.shape());
  check_affine(op, "weight", weight, C);
  require_f32(op, "mean", mean);
  require_shape(op, "mean", mean, leading(x));
  require_f32(op, "rstd", rstd);
  require_shape(op, "rstd", rstd, leading(x));
  const Device dev = require_same_device(
      op, {{"dy", &dy}, {"x", &x}, {"weight", &weight}, {"mean", &mean}, {"rstd", &rstd}});
  Tensor dx = empty(x.shape(), DType::f32, dev);
  Tensor dweight = empty({C}, DType::f32, dev);
  Tensor dbias = empty({C}, DType::f32, dev);
  if (x.numel() == 0) {
    dweight.zero_();
    dbias.zero_();
    return {dx, dweight, dbias};
  }
  LayerNormBackwardArgs a;
  a.rows = x.numel() / C;
  a.C = C;
  a.dy = dy.data<float>();
  a.x = x.data<float>();
  a.weight = weight.defined() ? weight.data<float>() : nullptr;
  a.mean = mean.data<float>();
  a.rstd = rstd.data<float>();
  a.dx = dx.data<float>();
  a.dweight = dweight.data<float>();
  a.dbias = dbias.data<float>();
  layer_norm_backward_op().run(dev, impl, a,
                               cat("rows=", a.rows, ",C=", C, ",w=", bool(a.weight)));
  return {dx, dweight, dbias};
}

namespace {

// q (B, H, Tq, D); k and v (B, H, L, D), or (L, B, H, D) with KvLayout::tbhd; float32, one
// device; sizes >= 1; the first Tk = kv_len keys are read (all L without kv_len); causal needs
// Tq <= Tk; scale finite and > 0.
AttentionGeometry attention_geometry(const char* op, const Tensor& q, const Tensor& k,
                                     const Tensor& v, bool causal, float scale,
                                     std::optional<int64_t> kv_len = std::nullopt,
                                     KvLayout layout = KvLayout::bhtd) {
  require_f32(op, "q", q);
  require_f32(op, "k", k);
  require_f32(op, "v", v);
  const bool pos_major = layout == KvLayout::tbhd;
  const char* form = pos_major ? "(L, B, H, D) (kv_layout='tbhd')" : "(B, H, T, D)";
  HG_REQUIRE(q.dim() == 4, op, ": q must be (B, H, T, D) with 4 dimensions, got shape ",
             shape_str(q.shape()));
  for (auto [name, t] : {std::pair<const char*, const Tensor*>{"k", &k}, {"v", &v}})
    HG_REQUIRE(t->dim() == 4, op, ": ", name, " must be ", form, " with 4 dimensions, got shape ",
               shape_str(t->shape()));
  AttentionGeometry g;
  g.B = q.size(0);
  g.H = q.size(1);
  g.Tq = q.size(2);
  g.D = q.size(3);
  const int64_t kb = pos_major ? k.size(1) : k.size(0), kh = pos_major ? k.size(2) : k.size(1);
  const int64_t L = pos_major ? k.size(0) : k.size(2);
  HG_REQUIRE(g.B >= 1 && g.H >= 1 && g.Tq >= 1 && g.D >= 1, op,
             ": q must be (B, H, Tq, D) with every size >= 1, got shape ", shape_str(q.shape()));
  HG_REQUIRE(kb == g.B && kh == g.H, op, ": k has batch and heads (", kb, ", ", kh,
             ") but q has (", g.B, ", ", g.H, "); they must match");
  HG_REQUIRE(k.size(3) == g.D, op, ": k has head size ", k.size(3), " but q has ", g.D,
             "; they must match");
  HG_REQUIRE(L >= 1, op, ": k must hold at least one key (Tk >= 1), got shape ",
             shape_str(k.shape()));
  require_shape(op, "v", v, k.shape());
  HG_REQUIRE(!kv_len || (*kv_len >= 1 && *kv_len <= L), op, ": kv_len must be in [1, ", L,
             "] (the keys held by k), got ", kv_len.value_or(0));
  g.Tk = kv_len ? *kv_len : L;
  HG_REQUIRE(!causal || g.Tq <= g.Tk, op, ": causal attention needs Tq <= Tk (queries aligned to "
             "the last keys), got Tq=", g.Tq, " and Tk=", g.Tk);
  HG_REQUIRE(std::isfinite(scale) && scale > 0.f, op,
             ": scale must be a finite number > 0 (default 1/sqrt(D)), got ", scale);
  g.causal = causal;
  g.scale = scale;
  g.kv_head = pos_major ? g.D : L * g.D;
  g.kv_row = pos_major ? g.B * g.H * g.D : g.D;
  return g;
}

std::string attention_key(const AttentionGeometry& g) {
  return cat("B=", g.B, ",H=", g.H, ",Tq=", g.Tq, ",Tk=", g.Tk, ",D=", g.D, ",causal=", g.causal,
             ",kv=", g.kv_head, "/", g.kv_row);
}

}  // namespace

std::tuple<Tensor, Tensor> attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                     bool causal, float scale, std::optional<int64_t> kv_len,
                                     const std::string& kv_layout, Impl impl,
                                     const Tensor* out_arg) {
  const char* op = "attention";
  const AttentionGeometry g = attention_geometry(op, q, k, v, causal, scale, kv_len,
                                                 parse_kv_layout(op, kv_layout));
  const Device dev = require_same_device(op, {{"q", &q}, {"k", &k}, {"v", &v}});
  Tensor out = output_tensor(op, out_arg, q.shape(), dev, {{"q", &q}, {"k", &k}, {"v", &v}});
  Tensor lse = empty({g.B, g.H, g.Tq}, DType::f32, dev);
  AttentionArgs a;
  a.g = g;
  a.q = q.data<float>();
  a.k = k.data<float>();
  a.v = v.data<float>();
  a.out = out.data<float>();
  a.lse = lse.data<float>();
  attention_op().run(dev, impl, a, attention_key(g));
  return {out, lse};
}

std::tuple<Tensor, Tensor, Tensor> attention_backward(const Tensor& dout, const Tensor& q,
                                                      const Tensor& k, const Tensor& v,
                                                      const Tensor& out, const Tensor& lse,
                                                      bool causal, float scale, Impl impl) {
  const char* op = "attention_backward";
  const AttentionGeometry g = attention_geometry(op, q, k, v, causal, scale);
  require_f32(op, "dout", dout);
  require_shape(op, "dout", dout, q.shape());
  require_f32(op, "out", out);
  require_shape(op, "out", out, q.shape());
  require_f32(op, "lse", lse);
  require_shape(op, "lse", lse, {g.B, g.H, g.Tq});
  const Device dev = require_same_device(
      op, {{"dout", &dout}, {"q", &q}, {"k", &k}, {"v", &v}, {"out", &out}, {"lse", &lse}});
  Tensor dq = empty(q.shape(), DType::f32, dev);
  Tensor dk = empty(k.shape(), DType::f32, dev);
  Tensor dv = empty(v.shape(), DType::f32, dev);
  AttentionBackwardArgs a;
  a.g = g;
  a.dout = dout.data<float>();
  a.q = q.data<float>();
  a.k = k.data<float>();
  a.v = v.data<float>();
  a.out = out.data<float>();
  a.lse = lse.data<float>();
  a.dq = dq.data<float>();
  a.dk = dk.data<float>();
  a.dv = dv.data<float>();
  attention_backward_op().run(dev, impl, a, attention_key(g));
  return {dq, dk, dv};
}

Tensor bmm(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, float alpha, Impl impl,
           const Tensor* out) {
  const char* op = "bmm";
  require_f32(op, "a", a, 3);
  require_f32(op, "b", b, 3);
  const Device dev = require_same_device(op, {{"a", &a}, {"b", &b}});
  HG_REQUIRE(a.size(0) == b.size(0), op, ": a has batch ", a.size(0), " but b has batch ",
             b.size(0), "; they must match");
  const int64_t M = trans_a ? a.size(2) : a.size(1);
  const int64_t K = trans_a ? a.size(1) : a.size(2);
  const int64_t Kb = trans_b ? b.size(2) : b.size(1);
  const int64_t N = trans_b ? b.size(1) : b.size(2);
  HG_REQUIRE(K == Kb, op, ": op(a) is (", M, ", ", K, ") per batch but op(b) is (", Kb, ", ", N,
             "); their inner sizes must match (trans_a=", trans_a, ", trans_b=", trans_b, ")");
  HG_REQUIRE(std::isfinite(alpha), op, ": alpha must be finite, got ", alpha);
  Tensor y = output_tensor(op, out, {a.size(0), M, N}, dev, {{"a", &a}, {"b", &b}});
  if (y.numel() == 0) return y;
  if (K == 0) {
    y.zero_();
    return y;
  }
  BmmArgs args;
  args.batch = a.size(0);
  args.M = M;
  args.N = N;
  args.K = K;
  args.trans_a = trans_a;
  args.trans_b = trans_b;
  args.alpha = alpha;
  args.a = a.data<float>();
  args.b = b.data<float>();
  args.y = y.data<float>();
  bmm_op().run(dev, impl, args, cat("batch=", args.batch, ",M=", M, ",N=", N, ",K=", K,
                                    ",ta=", trans_a, ",tb=", trans_b));
  return y;
}

Tensor sum_squares(const std::vector<Tensor>& tensors, Impl impl) {
  const char* op = "sum_squares";
  HG_REQUIRE(!tensors.empty(), op, ": tensors must hold at least one tensor, got none");
  const Device dev = tensors[0].defined() ? tensors[0].device() : Device{};
  for (size_t i = 0; i < tensors.size(); ++i) {
    const std::string name = cat("tensors[", i, "]");
    require_f32(op, name.c_str(), tensors[i]);
    HG_REQUIRE(tensors[i].device() == dev, op, ": ", name, " is on ", tensors[i].device().str(),
               " but tensors[0] is on ", dev.str(), "; they must share one device");
  }
  Tensor result = zeros({static_cast<int64_t>(tensors.size())}, DType::f32, dev);
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (tensors[i].numel() == 0) continue;
    SumSquaresArgs a;
    a.n = tensors[i].numel();
    a.x = tensors[i].data<float>();
    a.out = result.data<float>() + i;
    sum_squares_op().run(dev, impl, a, cat("n=", a.n));
  }
  return result;
}

void scale_(Tensor& x, float alpha, Impl impl) {
  require_f32("scale_", "x", x);
  if (x.numel() == 0) return;
  ScaleArgs a;
  a.n = x.numel();
  a.alpha = alpha;
  a.x = x.data<float>();
  scale_op().run(x.device(), impl, a, cat("n=", a.n));
}

}  // namespace hg
