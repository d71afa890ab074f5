// Front ends of the convolution family (conv2d forward, backward data, backward weight) and of
// bias_add / bias_backward: checks once, output allocation, dispatch.
#include <algorithm>

#include "checks.h"

namespace hg {

// The geometry of a convolution of an input of shape xs with a weight of shape ws; every check
// on shapes and hyper-parameters of the conv ops happens here (declared in checks.h).
ConvGeometry conv_geometry(const char* op, const char* x, const Shape& xs, const char* w,
                      const Shape& ws, Pair stride, Pair padding, Pair dilation, int64_t groups) {
  require_pair(op, "stride", stride, 1);
  require_pair(op, "padding", padding, 0);
  require_pair(op, "dilation", dilation, 1);
  HG_REQUIRE(groups >= 1, op, ": groups must be >= 1, got ", groups);
  HG_REQUIRE(xs.size() == 4, op, ": ", x, " must have 4 dimensions (N, C, H, W), got shape ",
             shape_str(xs));
  HG_REQUIRE(ws.size() == 4, op, ": ", w, " must have 4 dimensions (K, C/groups, R, S), got shape ",
             shape_str(ws));
  for (int64_t s : xs) {
    HG_REQUIRE(s >= 0, op, ": ", x, " has a negative size: ", shape_str(xs));
  }
  HG_REQUIRE(xs[1] >= 1 && xs[2] >= 1 && xs[3] >= 1, op, ": ", x,
             " must have at least one channel, row and column, got shape ", shape_str(xs));
  HG_REQUIRE(ws[0] >= 1 && ws[1] >= 1 && ws[2] >= 1 && ws[3] >= 1, op, ": ", w,
             " must have non-zero sizes, got shape ", shape_str(ws));
  ConvGeometry g;
  g.N = xs[0], g.C = xs[1], g.H = xs[2], g.W = xs[3];
  g.K = ws[0], g.R = ws[2], g.S = ws[3];
  g.stride_h = stride[0], g.stride_w = stride[1];
  g.pad_h = padding[0], g.pad_w = padding[1];
  g.dil_h = dilation[0], g.dil_w = dilation[1];
  g.groups = groups;
  HG_REQUIRE(g.C % groups == 0, op, ": ", x, " has ", g.C, " channels, not divisible by groups=",
             groups);
  HG_REQUIRE(g.K % groups == 0, op, ": ", w, " has ", g.K,
             " output channels (shape[0]), not divisible by groups=", groups);
  if (groups == 1) {
    HG_REQUIRE(ws[1] == g.C, op, ": ", w, " has ", ws[1], " input channels per group but ", x,
               " has ", g.C, " (groups=1)");
  } else {
    HG_REQUIRE(ws[1] == g.C / groups, op, ": ", w, " has ", ws[1], " input channels per group but ",
               x, " has ", g.C, " channels, ", g.C / groups, " per group (groups=", groups, ")");
  }
  // Every size below from user integers, overflow-checked and naming its argument.
  const int64_t eff_h = checked_mul(op, "dilation[0] * (kernel height - 1)", g.dil_h, g.R - 1) + 1;
  const int64_t eff_w = checked_mul(op, "dilation[1] * (kernel width - 1)", g.dil_w, g.S - 1) + 1;
  const int64_t padded_h = checked_add(op, "the input's height + 2 * padding[0]", g.H,
                                       checked_mul(op, "2 * padding[0]", 2, g.pad_h));
  const int64_t padded_w = checked_add(op, "the input's width + 2 * padding[1]", g.W,
                                       checked_mul(op, "2 * padding[1]", 2, g.pad_w));
  HG_REQUIRE(eff_h <= padded_h && eff_w <= padded_w, op,
             ": kernel larger than padded input: the ", g.R, "x", g.S, " kernel of ", w,
             " with dilation (", g.dil_h, ", ", g.dil_w, ") spans (", eff_h, ", ", eff_w, ") but ",
             x, " of size (", g.H, ", ", g.W, ") with padding (", g.pad_h, ", ", g.pad_w,
             ") is (", padded_h, ", ", padded_w, ")");
  g.P = (padded_h - eff_h) / g.stride_h + 1;
  g.Q = (padded_w - eff_w) / g.stride_w + 1;
  // A stride beyond the last window start changes nothing (one output row or column): the
  // kernels see the smallest equal stride, so their scratch (stride phases, lowered columns)
  // follows the input, not the stride.
  g.stride_h = std::min(g.stride_h, padded_h - eff_h + 1);
  g.stride_w = std::min(g.stride_w, padded_w - eff_w + 1);
  // What the kernels allocate or index: the output and the lowered columns (im2col). A padded
  // plane beyond memory is fine: the float kernels skip the padding (qconv2d, which copies it,
  // checks its own scratch).
  checked_count(op, "the output (N, K, P, Q) for this padding/stride/dilation",
                {g.N, g.K, g.P, g.Q});
  checked_count(op, "the lowered input (C * R * S, P * Q) for this padding/stride/dilation",
                {g.C, g.R, g.S, g.P, g.Q});
  return g;
}

namespace {

std::string conv_key(const ConvGeometry& g, bool bias) {
  return cat("N=", g.N, ",C=", g.C, ",H=", g.H, ",W=", g.W, ",K=", g.K, ",R=", g.R, ",S=", g.S,
             ",st=", g.stride_h, "x", g.stride_w, ",pad=", g.pad_h, "x", g.pad_w, ",dil=", g.dil_h,
             "x", g.dil_w, ",g=", g.groups, bias ? ",bias" : "");
}

// A shape handed in as a list (x_shape, w_shape): 4 entries (their values: geometry()).
void require_shape_arg(const char* op, const char* arg, const Shape& s) {
  HG_REQUIRE(s.size() == 4, op, ": ", arg, " must have 4 entries, got ", shape_str(s));
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& w, const OptionalTensor& bias_arg, Pair stride, Pair padding,
              Pair dilation, int64_t groups, Impl impl, const Tensor* out) {
  const Tensor& bias = or_undefined(bias_arg);
  const char* op = "conv2d";
  require_f32(op, "x", x, 4);
  require_f32(op, "w", w, 4);
  const Device dev = require_same_device(op, {{"x", &x}, {"w", &w}, {"bias", &bias}});
  const ConvGeometry g = conv_geometry(op, "x", x.shape(), "w", w.shape(), stride, padding, dilation,
                                  groups);
  if (bias.defined()) {
    require_f32(op, "bias", bias, 1);
    require_shape(op, "bias", bias, {g.K});
  }
  Tensor y = output_tensor(op, out, {g.N, g.K, g.P, g.Q}, dev,
                           {{"x", &x}, {"w", &w}, {"bias", &bias}});
  if (y.numel() == 0) return y;
  ConvForwardArgs args;
  args.g = g;
  args.x = x.data<float>();
  args.w = w.data<float>();
  args.bias = bias.defined() ? bias.data<float>() : nullptr;
  args.y = y.data<float>();
  conv2d_forward_op().run(dev, impl, args, conv_key(g, bias.defined()));
  return y;
}

Tensor conv2d_backward_data(const Tensor& dy, const Tensor& w, const Shape& x_shape, Pair stride,
                            Pair padding, Pair dilation, int64_t groups, Impl impl) {
  const char* op = "conv2d_backward_data";
  require_f32(op, "dy", dy, 4);
  require_f32(op, "w", w, 4);
  require_shape_arg(op, "x_shape", x_shape);
  const Device dev = require_same_device(op, {{"dy", &dy}, {"w", &w}});
  const ConvGeometry g = conv_geometry(op, "x_shape", x_shape, "w", w.shape(), stride, padding,
                                  dilation, groups);
  HG_REQUIRE(dy.shape() == Shape({g.N, g.K, g.P, g.Q}), op, ": dy must have shape ",
             shape_str({g.N, g.K, g.P, g.Q}),
             " (the conv2d output for x_shape, w and stride/padding/dilation), got ",
             shape_str(dy.shape()));
  Tensor dx = empty(x_shape, DType::f32, dev);
  if (dx.numel() == 0) return dx;
  ConvBackwardDataArgs args;
  args.g = g;
  args.dy = dy.data<float>();
  args.w = w.data<float>();
  args.dx = dx.data<float>();
  conv2d_backward_data_op().run(dev, impl, args, conv_key(g, false));
  return dx;
}

Tensor conv2d_backward_weight(const Tensor& dy, const Tensor& x, const Shape& w_shape, Pair stride,
                              Pair padding, Pair dilation, int64_t groups, Impl impl) {
  const char* op = "conv2d_backward_weight";
  require_f32(op, "dy", dy, 4);
  require_f32(op, "x", x, 4);
  require_shape_arg(op, "w_shape", w_shape);
  const Device dev = require_same_device(op, {{"dy", &dy}, {"x", &x}});
  const ConvGeometry g = conv_geometry(op, "x", x.shape(), "w_shape", w_shape, stride, padding,
                                  dilation, groups);
  HG_REQUIRE(dy.shape() == Shape({g.N, g.K, g.P, g.Q}), op, ": dy must have shape ",
             shape_str({g.N, g.K, g.P, g.Q}),
             " (the conv2d output for x, w_shape and stride/padding/dilation), got ",
             shape_str(dy.shape()));
  Tensor dw = empty(w_shape, DType::f32, dev);
  if (g.N == 0) {  // an empty batch contributes nothing
    dw.zero_();
    return dw;
  }
  ConvBackwardWeightArgs args;
  args.g = g;
  args.dy = dy.data<float>();
  args.x = x.data<float>();
  args.dw = dw.data<float>();
  conv2d_backward_weight_op().run(dev, impl, args, conv_key(g, false));
  return dw;
}

Tensor bias_add(const Tensor& x, const Tensor& bias, Impl impl, const Tensor* out) {
  require_f32("bias_add", "x", x);
  require_f32("bias_add", "bias", bias, 1);
  HG_REQUIRE(x.dim() >= 2, "bias_add: x must have at least 2 dimensions (N, C, ...), got shape ",
             shape_str(x.shape()));
  const Device dev = require_same_device("bias_add", {{"x", &x}, {"bias", &bias}});
  require_shape("bias_add", "bias", bias, {x.size(1)});
  Tensor y = output_tensor("bias_add", out, x.shape(), dev, {{"x", &x}, {"bias", &bias}});
  if (y.numel() == 0) return y;
  BiasAddArgs args;
  args.outer = x.size(0);
  args.C = x.size(1);
  args.inner = x.numel() / (args.outer * args.C);
  args.x = x.data<float>();
  args.bias = bias.data<float>();
  args.y = y.data<float>();
  bias_add_op().run(dev, impl, args,
                    cat("outer=", args.outer, ",C=", args.C, ",inner=", args.inner));
  return y;
}

Tensor bias_backward(const Tensor& dy, Impl impl) {
  require_f32("bias_backward", "dy", dy);
  HG_REQUIRE(dy.dim() >= 2,
             "bias_backward: dy must have at least 2 dimensions (N, C, ...), got shape ",
             shape_str(dy.shape()));
  const Device dev = dy.device();
  const int64_t C = dy.size(1);
  Tensor db = empty({C}, DType::f32, dev);
  if (C == 0) return db;
  BiasBackwardArgs args;
  args.outer = dy.size(0);
  args.C = C;
  args.inner = 1;
  for (int64_t d = 2; d < dy.dim(); ++d) args.inner *= dy.size(d);
  args.dy = dy.data<float>();
  args.db = db.data<float>();
  bias_backward_op().run(dev, impl, args,
                         cat("outer=", args.outer, ",C=", C, ",inner=", args.inner));
  return db;
}

}  // namespace hg
