// Front ends of the INT8 inference ops: quantize, qgemm, qconv2d.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "checks.h"

namespace hg {

namespace {

void require_scale(const char* op, const char* arg, float scale) {
  HG_REQUIRE(std::isfinite(scale) && scale > 0.f, op, ": ", arg, " must be a finite positive scale, got ", scale);
}

// Parses the optional fused activation ("" or "none": no activation).
bool epilogue(const std::string& activation, ActKind* kind) {
  if (activation.empty() || activation == "none") return false;
  *kind = parse_activation(activation);
  return true;
}

void require_channel_params(const char* op, const Tensor& w_scale, const Tensor& bias, int64_t n,
                            Device dev) {
  require_f32(op, "w_scale", w_scale, 1);
  require_shape(op, "w_scale", w_scale, {n});
  if (bias.defined()) {
    require_f32(op, "bias", bias, 1);
    require_shape(op, "bias", bias, {n});
  }
  require_same_device(op, {{"w_scale", &w_scale}, {"bias", &bias}});
  HG_REQUIRE(w_scale.device() == dev, op, ": w_scale is on ", w_scale.device().str(),
             " but xq is on ", dev.str());
}

// `packed` came from qpack_weight for (rows, K) weights under the CPU ISA in use.
void require_packed(const char* op, const Tensor& packed, int64_t rows, int64_t K) {
  require_dtype(op, "packed", packed, DType::i32);
  HG_REQUIRE(packed.device().is_cpu(), op, ": packed must be on the CPU (qpack_weight's buffer), "
             "got device ", packed.device().str());
  const int64_t groups = cpu_qpack_groups(K), words = kQPackHeader + rows * (groups + 1);
  HG_REQUIRE(packed.dim() == 1 && packed.numel() >= kQPackHeader, op,
             ": packed must be the 1-D int32 tensor qpack_weight returns, got shape ",
             shape_str(packed.shape()));
  const int32_t* h = packed.data<int32_t>();
  HG_REQUIRE(h[0] == cpu_qpack_tag(), op, ": packed was made under another CPU ISA (tag ", h[0],
             ", the ISA in use has ", cpu_qpack_tag(), "); pack the weight again");
  HG_REQUIRE(h[1] == rows && h[2] == K && h[3] == groups && packed.numel() == words, op,
             ": packed holds (", h[1], ", ", h[2], ") weights in ", packed.numel(),
             " words but wq is (", rows, ", ", K, ") (", words, " words); pack this wq");
}

}  // namespace

Tensor qpack_weight(const Tensor& wq, Impl impl) {
  const char* op = "qpack_weight";
  require_dtype(op, "wq", wq, DType::i8);
  HG_REQUIRE(wq.dim() >= 2, op, ": wq must be at least 2-D (rows, ...), got shape ",
             shape_str(wq.shape()));
  HG_REQUIRE(wq.device().is_cpu(), op, ": wq must be on the CPU (packed weights feed the CPU's "
             "INT8 kernels), got device ", wq.device().str());
  QPackWeightArgs a;
  a.rows = wq.size(0);
  a.K = 1;
  for (int64_t d = 1; d < wq.dim(); ++d) a.K *= wq.size(d);
  a.groups = cpu_qpack_groups(a.K);
  HG_REQUIRE(a.rows <= INT32_MAX && a.K <= INT32_MAX && a.groups + 1 <= kMaxElements / std::max<int64_t>(a.rows, 1),
             op, ": wq ", shape_str(wq.shape()), " is too large to pack");
  Tensor packed = output_tensor(op, nullptr, {kQPackHeader + a.rows * (a.groups + 1)}, wq.device(),
                                {{"wq", &wq}}, DType::i32);
  a.wq = wq.data<int8_t>();
  a.packed = packed.data<int32_t>();
  qpack_weight_op().run(wq.device(), impl, a, cat("rows=", a.rows, ",K=", a.K));
  return packed;
}

Tensor quantize(const Tensor& x, float scale, Impl impl, const Tensor* out) {
  require_f32("quantize", "x", x);
  require_scale("quantize", "scale", scale);
  Tensor q = output_tensor("quantize", out, x.shape(), x.device(), {{"x", &x}}, DType::i8);
  if (x.numel() == 0) return q;
  QuantizeArgs a;
  a.n = x.numel();
  a.inv_scale = 1.f / scale;
  a.x = x.data<float>();
  a.q = q.data<int8_t>();
  quantize_op().run(x.device(), impl, a, cat("n=", a.n));
  return q;
}

Tensor qgemm(const Tensor& xq, const Tensor& wq, float x_scale, const Tensor& w_scale,
             const OptionalTensor& bias_arg, const std::string& activation, float alpha, Impl impl,
             const Tensor* out) {
  const Tensor& bias = or_undefined(bias_arg);
  require_dtype("qgemm", "xq", xq, DType::i8);
  require_dtype("qgemm", "wq", wq, DType::i8);
  HG_REQUIRE(xq.dim() == 2, "qgemm: xq must be 2-D (M, K), got shape ", shape_str(xq.shape()));
  HG_REQUIRE(wq.dim() == 2, "qgemm: wq must be 2-D (N, K), got shape ", shape_str(wq.shape()));
  HG_REQUIRE(xq.size(1) == wq.size(1), "qgemm: xq is ", shape_str(xq.shape()), " but wq is ",
             shape_str(wq.shape()), "; both must have K columns");
  require_scale("qgemm", "x_scale", x_scale);
  const Device dev = require_same_device("qgemm", {{"xq", &xq}, {"wq", &wq}});
  require_channel_params("qgemm", w_scale, bias, wq.size(0), dev);
  QGemmArgs a;
  a.has_act = epilogue(activation, &a.act);
  a.alpha = alpha;
  a.M = xq.size(0);
  a.N = wq.size(0);
  a.K = xq.size(1);
  Tensor y = output_tensor("qgemm", out, {a.M, a.N}, dev,
                           {{"xq", &xq}, {"wq", &wq}, {"w_scale", &w_scale}, {"bias", &bias}});
  if (y.numel() == 0) return y;
  a.xq = xq.data<int8_t>();
  a.wq = wq.data<int8_t>();
  a.x_scale = x_scale;
  a.w_scale = w_scale.data<float>();
  a.bias = bias.defined() ? bias.data<float>() : nullptr;
  a.y = y.data<float>();
  qgemm_op().run(dev, impl, a, cat("M=", a.M, ",N=", a.N, ",K=", a.K));
  return y;
}

Tensor qconv2d(const Tensor& xq, const Tensor& wq, float x_scale, const Tensor& w_scale,
               const OptionalTensor& bias_arg, Pair stride, Pair padding, Pair dilation, int64_t groups,
               const std::string& activation, float alpha, Impl impl, const Tensor* out,
               const OptionalTensor& packed_arg) {
  const Tensor& bias = or_undefined(bias_arg);
  const Tensor& packed = or_undefined(packed_arg);
  require_dtype("qconv2d", "xq", xq, DType::i8);
  require_dtype("qconv2d", "wq", wq, DType::i8);
  require_scale("qconv2d", "x_scale", x_scale);
  QConvArgs a;
  a.g = conv_geometry("qconv2d", "xq", xq.shape(), "wq", wq.shape(), stride, padding, dilation, groups);
  const Device dev = require_same_device("qconv2d", {{"xq", &xq}, {"wq", &wq}});
  require_channel_params("qconv2d", w_scale, bias, a.g.K, dev);
  if (packed.defined()) {
    HG_REQUIRE(dev.is_cpu(), "qconv2d: packed weights are CPU only, but xq is on ", dev.str());
    require_packed("qconv2d", packed, a.g.K, a.g.C / a.g.groups * a.g.R * a.g.S);
  }
  a.has_act = epilogue(activation, &a.act);
  a.alpha = alpha;
  {  // the CPU kernel copies one padded image per thread, split by stride phase: at most
     // C/groups * (padded_h + stride_h) * (padded_w + stride_w) bytes
    const ConvGeometry& g = a.g;
    int64_t h = 0, w = 0, rows = 0, bytes = 0;  // g.H + 2 * g.pad_h fits (conv_geometry)
    const bool fits = !__builtin_add_overflow(g.H + 2 * g.pad_h, g.stride_h, &h) &&
                      !__builtin_add_overflow(g.W + 2 * g.pad_w, g.stride_w, &w) &&
                      !__builtin_mul_overflow(g.C / g.groups, h, &rows) &&
                      !__builtin_mul_overflow(rows, w, &bytes) && bytes <= kMaxElements;
    if (!fits)
      fail(ErrorKind::memory, "qconv2d: padding (", g.pad_h, ", ", g.pad_w,
           ") makes the padded copy of one image larger than 2**59 bytes");
  }
  Tensor y = output_tensor("qconv2d", out, {a.g.N, a.g.K, a.g.P, a.g.Q}, dev,
                           {{"xq", &xq}, {"wq", &wq}, {"w_scale", &w_scale}, {"bias", &bias},
                            {"packed", &packed}});
  if (y.numel() == 0) return y;
  a.xq = xq.data<int8_t>();
  a.wq = wq.data<int8_t>();
  a.x_scale = x_scale;
  a.w_scale = w_scale.data<float>();
  a.bias = bias.defined() ? bias.data<float>() : nullptr;
  a.y = y.data<float>();
  a.packed = packed.defined() ? packed.data<int32_t>() : nullptr;
  const ConvGeometry& g = a.g;
  qconv2d_op().run(dev, impl, a,
                   cat("N=", g.N, ",C=", g.C, ",H=", g.H, ",W=", g.W, ",K=", g.K, ",R=", g.R, ",S=", g.S,
                       ",st=", g.stride_h, "x", g.stride_w, ",pad=", g.pad_h, "x", g.pad_w, ",dil=",
                       g.dil_h, "x", g.dil_w, ",g=", g.groups));
  return y;
}

}  // namespace hg
