// Front ends of the fused forward ops conv2d_bias_act and linear_bias_act: checks once, output
// allocation (or the caller's `out`), dispatch. The convolution's shape checks are
// conv_geometry's (ops_conv.cpp), so messages read as conv2d's do, with this op's name.
#include "checks.h"

namespace hg {

namespace {

// The epilogue's activation: "" or "none" for none, else one of the kinds (ValueError naming
// `activation` and the kinds otherwise).
void parse_fused_activation(const char* op, const std::string& name, float alpha,
                            FusedEpilogue* e) {
  e->alpha = alpha;
  if (name.empty() || name == "none") return;
  std::string known = "'none'";
  for (int k = 0; k <= int(ActKind::hardswish); ++k) {  // hardswish: ActKind's last kind
    const ActKind kind = static_cast<ActKind>(k);
    if (name == activation_name(kind)) {
      e->has_act = true;
      e->act = kind;
      return;
    }
    known += std::string(", '") + activation_name(kind) + "'";
  }
  fail(ErrorKind::value, op, ": activation must be one of ", known, "; got '", name, "'");
}

// The epilogue of a fused op whose output has `n` channels: the bias (float32 (n), or
// undefined for none) and the activation, checked.
FusedEpilogue fused_epilogue(const char* op, const Tensor& bias, int64_t n,
                             const std::string& activation, float alpha) {
  FusedEpilogue e;
  if (bias.defined()) {
    require_f32(op, "bias", bias, 1);
    require_shape(op, "bias", bias, {n});
    e.bias = bias.data<float>();
  }
  parse_fused_activation(op, activation, alpha, &e);
  return e;
}

std::string epilogue_key(const FusedEpilogue& e) {
  return cat(e.bias ? ",bias" : "", ",act=", e.has_act ? activation_name(e.act) : "none");
}

// The output of a fused conv (N, K, P, Q): checks the residual (y's shape) and `out`, which may be
// the residual itself (accumulated in place, *in_place set) but must not overlap it otherwise.
Tensor fused_conv_output(const char* op, const ConvGeometry& g, const Tensor& x, const char* wname,
                         const Tensor& w, const Tensor& bias, const Tensor& residual,
                         const Tensor* out, Device dev, bool* in_place) {
  const Shape y_shape{g.N, g.K, g.P, g.Q};
  if (residual.defined()) {
    require_f32(op, "residual", residual, 4);
    HG_REQUIRE(residual.shape() == y_shape, op, ": residual must have the output's shape ",
               shape_str(y_shape), " (N, K, P, Q), got ", shape_str(residual.shape()));
  }
  *in_place = out && out->defined() && residual.defined() && out->overlaps(residual);
  if (*in_place) {
    HG_REQUIRE(out->raw() == residual.raw() && out->shape() == residual.shape(), op,
               ": out may be residual itself but must not overlap it otherwise");
  }
  return output_tensor(op, out, y_shape, dev,
                       {{"x", &x}, {wname, &w}, {"bias", &bias},
                        {"residual", *in_place ? nullptr : &residual}});
}

std::string fused_conv_key(const ConvGeometry& g, const FusedEpilogue& e, bool residual) {
  return cat("N=", g.N, ",C=", g.C, ",H=", g.H, ",W=", g.W, ",K=", g.K, ",R=", g.R, ",S=", g.S,
             ",st=", g.stride_h, "x", g.stride_w, ",pad=", g.pad_h, "x", g.pad_w, ",dil=", g.dil_h,
             "x", g.dil_w, ",g=", g.groups, epilogue_key(e), residual ? ",res" : "");
}

}  // namespace

Tensor conv2d_bias_act(const Tensor& x, const Tensor& w, const OptionalTensor& bias_arg,
                       const OptionalTensor& residual_arg, Pair stride, Pair padding,
                       Pair dilation, int64_t groups, const std::string& activation, float alpha,
                       Impl impl, const Tensor* out) {
  const Tensor& bias = or_undefined(bias_arg);
  const Tensor& residual = or_undefined(residual_arg);
  const char* op = "conv2d_bias_act";
  require_f32(op, "x", x, 4);
  require_f32(op, "w", w, 4);
  const Device dev = require_same_device(
      op, {{"x", &x}, {"w", &w}, {"bias", &bias}, {"residual", &residual}});
  ConvBiasActArgs a;
  a.g = conv_geometry(op, "x", x.shape(), "w", w.shape(), stride, padding, dilation, groups);
  const ConvGeometry& g = a.g;
  a.epi = fused_epilogue(op, bias, g.K, activation, alpha);
  bool in_place = false;
  Tensor y = fused_conv_output(op, g, x, "w", w, bias, residual, out, dev, &in_place);
  if (y.numel() == 0) return y;
  const Shape y_shape{g.N, g.K, g.P, g.Q};
  a.x = x.data<float>();
  a.w = w.data<float>();
  a.y = y.data<float>();
  const std::string key = fused_conv_key(g, a.epi, residual.defined());
  Tensor saved;  // the residual, copied aside for a tuning call that writes into it
  if (residual.defined()) {
    a.residual = residual.data<float>();
    // impl="auto" times every candidate on these arguments before the winner runs, and a call
    // accumulating onto its own residual is not repeatable: the timed runs read a copy.
    if (in_place && conv2d_bias_act_op().would_tune(dev, impl, key)) {
      saved = empty(y_shape, DType::f32, dev);
      saved.copy_from(residual);
      a.residual = saved.data<float>();
    }
  }
  conv2d_bias_act_op().run(dev, impl, a, key);
  return y;
}

Tensor linear_bias_act(const Tensor& x, const Tensor& w, const OptionalTensor& bias_arg,
                       const std::string& activation, float alpha, Impl impl, const Tensor* out) {
  const Tensor& bias = or_undefined(bias_arg);
  const char* op = "linear_bias_act";
  require_f32(op, "x", x);
  require_f32(op, "w", w);
  HG_REQUIRE(x.dim() == 2, op, ": x must be 2-D (M, K), got shape ", shape_str(x.shape()));
  HG_REQUIRE(w.dim() == 2, op, ": w must be 2-D (N, K) (PyTorch Linear layout), got shape ",
             shape_str(w.shape()));
  HG_REQUIRE(x.size(1) == w.size(1), op, ": x is ", shape_str(x.shape()), " but w is ",
             shape_str(w.shape()), "; w must have as many columns (K) as x");
  const Device dev = require_same_device(op, {{"x", &x}, {"w", &w}, {"bias", &bias}});
  LinearBiasActArgs a;
  a.M = x.size(0);
  a.N = w.size(0);
  a.K = x.size(1);
  a.epi = fused_epilogue(op, bias, a.N, activation, alpha);
  Tensor y = output_tensor(op, out, {a.M, a.N}, dev, {{"x", &x}, {"w", &w}, {"bias", &bias}});
  if (y.numel() == 0) return y;
  a.x = x.data<float>();
  a.w = w.data<float>();
  a.y = y.data<float>();
  linear_bias_act_op().run(dev, impl, a,
                           cat("M=", a.M, ",N=", a.N, ",K=", a.K, epilogue_key(a.epi)));
  return y;
}

Tensor pack_linear_weight(const Tensor& w, Impl impl) {
  const char* op = "pack_linear_weight";
  require_f32(op, "w", w);
  HG_REQUIRE(w.dim() == 2, op, ": w must be 2-D (N, K) (PyTorch Linear layout), got shape ",
             shape_str(w.shape()));
  HG_REQUIRE(w.device().is_cpu(), op, ": w must be on the CPU (packed weights feed the CPU's GEMM), "
             "got device ", w.device().str());
  PackLinearWeightArgs a;
  a.N = w.size(0);
  a.K = w.size(1);
  a.NR = cpu_gemm_panel_width();
  a.P = (a.N + a.NR - 1) / a.NR;
  Tensor packed = output_tensor(op, nullptr, {a.P, a.K, a.NR}, w.device(), {{"w", &w}});
  if (packed.numel() == 0) return packed;
  a.w = w.data<float>();
  a.packed = packed.data<float>();
  pack_linear_weight_op().run(w.device(), impl, a, cat("N=", a.N, ",K=", a.K, ",NR=", a.NR));
  return packed;
}

Tensor linear_bias_act_packed(const Tensor& x, const Tensor& packed, const OptionalTensor& bias_arg,
                              int64_t n, const std::string& activation, float alpha, Impl impl,
                              const Tensor* out) {
  const Tensor& bias = or_undefined(bias_arg);
  const char* op = "linear_bias_act_packed";
  require_f32(op, "x", x);
  require_f32(op, "packed", packed);
  HG_REQUIRE(x.dim() == 2, op, ": x must be 2-D (M, K), got shape ", shape_str(x.shape()));
  HG_REQUIRE(packed.dim() == 3, op, ": packed must be 3-D (panels, K, NR) from pack_linear_weight, "
             "got shape ", shape_str(packed.shape()));
  const Device dev = require_same_device(op, {{"x", &x}, {"packed", &packed}, {"bias", &bias}});
  HG_REQUIRE(dev.is_cpu(), op, ": CPU only (packed weights feed the CPU's GEMM), got device ",
             dev.str());
  LinearPackedArgs a;
  a.M = x.size(0);
  a.K = x.size(1);
  a.N = n;
  a.NR = packed.size(2);
  HG_REQUIRE(packed.size(1) == a.K, op, ": x is ", shape_str(x.shape()), " but packed is ",
             shape_str(packed.shape()), "; packed must have as many rows (K) as x has columns");
  HG_REQUIRE(a.NR == cpu_gemm_panel_width(), op, ": packed has panels ", a.NR,
             " wide but the CPU GEMM in use takes ", cpu_gemm_panel_width(),
             " (packed under another CPU ISA); pack the weight again");
  HG_REQUIRE(n >= 1 && (n + a.NR - 1) / a.NR == packed.size(0), op, ": n must be the weight's N, "
             "with ceil(n / ", a.NR, ") == ", packed.size(0), " panels; got n = ", n);
  a.epi = fused_epilogue(op, bias, a.N, activation, alpha);
  Tensor y = output_tensor(op, out, {a.M, a.N}, dev, {{"x", &x}, {"packed", &packed}, {"bias", &bias}});
  if (y.numel() == 0) return y;
  a.x = x.data<float>();
  a.packed = packed.data<float>();
  a.y = y.data<float>();
  linear_bias_act_packed_op().run(dev, impl, a,
                                  cat("M=", a.M, ",N=", a.N, ",K=", a.K, epilogue_key(a.epi)));
  return y;
}

Tensor conv2d_bias_act_packed(const Tensor& x, const Tensor& packed, const Shape& w_shape,
                              const OptionalTensor& bias_arg, const OptionalTensor& residual_arg,
                              Pair stride, Pair padding, Pair dilation,
                              const std::string& activation, float alpha, Impl impl,
                              const Tensor* out) {
  const Tensor& bias = or_undefined(bias_arg);
  const Tensor& residual = or_undefined(residual_arg);
  const char* op = "conv2d_bias_act_packed";
  require_f32(op, "x", x, 4);
  require_f32(op, "packed", packed);
  HG_REQUIRE(packed.dim() == 3, op, ": packed must be 3-D (panels, C*R*S, NR) from "
             "pack_linear_weight of w viewed as (K, C*R*S), got shape ", shape_str(packed.shape()));
  const Device dev = require_same_device(
      op, {{"x", &x}, {"packed", &packed}, {"bias", &bias}, {"residual", &residual}});
  HG_REQUIRE(dev.is_cpu(), op, ": CPU only (packed weights feed the CPU's GEMM), got device ",
             dev.str());
  ConvPackedArgs a;
  a.g = conv_geometry(op, "x", x.shape(), "w_shape", w_shape, stride, padding, dilation, 1);
  const ConvGeometry& g = a.g;
  a.NR = packed.size(2);
  const int64_t crs = g.C * g.R * g.S;
  HG_REQUIRE(a.NR == cpu_gemm_panel_width(), op, ": packed has panels ", a.NR,
             " wide but the CPU GEMM in use takes ", cpu_gemm_panel_width(),
             " (packed under another CPU ISA); pack the weight again");
  HG_REQUIRE(packed.size(1) == crs && packed.size(0) == (g.K + a.NR - 1) / a.NR, op,
             ": packed is ", shape_str(packed.shape()), " but w_shape ", shape_str(w_shape),
             " packs to (", (g.K + a.NR - 1) / a.NR, ", ", crs, ", ", a.NR, ")");
  a.epi = fused_epilogue(op, bias, g.K, activation, alpha);
  bool in_place = false;
  Tensor y = fused_conv_output(op, g, x, "packed", packed, bias, residual, out, dev, &in_place);
  if (y.numel() == 0) return y;
  a.x = x.data<float>();
  a.packed = packed.data<float>();
  a.y = y.data<float>();
  if (residual.defined()) a.residual = residual.data<float>();
  conv2d_bias_act_packed_op().run(dev, impl, a, fused_conv_key(g, a.epi, residual.defined()));
  return y;
}

}  // namespace hg
