// Front end of 2-D max and average pooling (NCHW): geometry checks once, allocation, dispatch.
// Semantics follow PyTorch (and ONNX): floor or ceil mode, padding at most half the kernel, max
// pooling pads with -inf, average pooling counts the padding in the divisor or not
// (count_include_pad; PoolGeometry in ops.h says how).
#include <algorithm>

#include "checks.h"

namespace hg {

namespace {

// x_shape is (N, C, H, W); checks kernel, stride and padding and resolves the output size.
PoolGeometry pool_geometry(const char* op, const Shape& x_shape, Pair kernel, Pair stride,
                           Pair padding, bool ceil_mode, bool count_include_pad) {
  require_pair(op, "kernel", kernel, 1);
  require_pair(op, "stride", stride, 1);
  require_pair(op, "padding", padding, 0);
  HG_REQUIRE(padding[0] <= kernel[0] / 2 && padding[1] <= kernel[1] / 2, op,
             ": padding must be at most half the kernel size (kernel=(", kernel[0], ", ", kernel[1],
             ")), got (", padding[0], ", ", padding[1], ")");
  PoolGeometry g;
  g.N = x_shape[0], g.C = x_shape[1], g.H = x_shape[2], g.W = x_shape[3];
  HG_REQUIRE(g.H >= 1 && g.W >= 1, op, ": the input's height and width must be >= 1, got shape ",
             shape_str(x_shape));
  g.kh = kernel[0], g.kw = kernel[1], g.sh = stride[0], g.sw = stride[1];
  g.ph = padding[0], g.pw = padding[1];
  // 2 * padding <= kernel cannot overflow; the padded extent can.
  const int64_t padded_h = checked_add(op, "padding[0] + the input's height", g.H, 2 * g.ph);
  const int64_t padded_w = checked_add(op, "padding[1] + the input's width", g.W, 2 * g.pw);
  HG_REQUIRE(padded_h >= g.kh && padded_w >= g.kw, op, ": kernel (", g.kh, ", ", g.kw,
             ") is larger than the padded input (", padded_h, ", ", padded_w,
             "); the output would be empty");
  // The kernels index within one padded plane (and divide by kh * kw <= its size).
  checked_count(op, "the padded input plane (kernel and padding)", {padded_h, padded_w});
  g.ceil_mode = ceil_mode;
  g.count_include_pad = count_include_pad;
  g.P = (padded_h - g.kh + (ceil_mode ? g.sh - 1 : 0)) / g.sh + 1;
  g.Q = (padded_w - g.kw + (ceil_mode ? g.sw - 1 : 0)) / g.sw + 1;
  // ceil mode: the last window must start inside the input or its top/left padding
  if (ceil_mode && (g.P - 1) * g.sh >= g.H + g.ph) --g.P;
  if (ceil_mode && (g.Q - 1) * g.sw >= g.W + g.pw) --g.Q;
  // With one window the stride changes nothing: the kernels see the smallest equal stride, so
  // no product of theirs involves a stride beyond the input.
  if (g.P == 1) g.sh = std::min(g.sh, padded_h - g.kh + 1);
  if (g.Q == 1) g.sw = std::min(g.sw, padded_w - g.kw + 1);
  checked_count(op, "the output (N, C, P, Q)", {g.N, g.C, g.P, g.Q});
  return g;
}

// x_shape handed to a backward: 4 non-negative entries whose (N, C) agree with dy's.
void require_x_shape(const char* op, const Shape& x_shape, const Tensor& dy) {
  HG_REQUIRE(x_shape.size() == 4, op, ": x_shape must have 4 entries (N, C, H, W), got ",
             shape_str(x_shape));
  for (int64_t s : x_shape) {
    HG_REQUIRE(s >= 0, op, ": x_shape must hold non-negative sizes, got ", shape_str(x_shape));
  }
  HG_REQUIRE(x_shape[0] == dy.size(0) && x_shape[1] == dy.size(1), op, ": x_shape ",
             shape_str(x_shape), " and dy ", shape_str(dy.shape()),
             " must agree in batch and channels (N, C)");
}

std::string pool_key(const PoolGeometry& g) {
  return cat("N=", g.N, ",C=", g.C, ",H=", g.H, ",W=", g.W, ",k=", g.kh, "x", g.kw, ",s=", g.sh,
             "x", g.sw, ",p=", g.ph, "x", g.pw, g.ceil_mode ? ",ceil" : "",
             g.count_include_pad ? "" : ",exclude_pad");
}

}  // namespace

std::tuple<Tensor, OptionalTensor> max_pool2d(const Tensor& x, Pair kernel, Pair stride,
                                              Pair padding, Impl impl, const Tensor* out, bool with_argmax,
                                              bool ceil_mode) {
  require_f32("max_pool2d", "x", x, 4);
  const PoolGeometry g =
      pool_geometry("max_pool2d", x.shape(), kernel, stride, padding, ceil_mode, true);
  const Device dev = x.device();
  Tensor y = output_tensor("max_pool2d", out, {g.N, g.C, g.P, g.Q}, dev, {{"x", &x}});
  Tensor argmax = with_argmax ? empty({g.N, g.C, g.P, g.Q}, DType::i64, dev) : Tensor();
  const OptionalTensor maybe_argmax = with_argmax ? OptionalTensor(argmax) : std::nullopt;
  if (y.numel() == 0) return {y, maybe_argmax};
  MaxPoolArgs args;
  args.g = g;
  args.x = x.data<float>();
  args.y = y.data<float>();
  args.argmax = with_argmax ? argmax.data<int64_t>() : nullptr;
  max_pool2d_op().run(dev, impl, args, pool_key(g));
  return {y, maybe_argmax};
}

Tensor max_pool2d_backward(const Tensor& dy, const Tensor& argmax, const Shape& x_shape, Impl impl) {
  const char* op = "max_pool2d_backward";
  require_f32(op, "dy", dy, 4);
  require_dtype(op, "argmax", argmax, DType::i64);
  require_shape(op, "argmax", argmax, dy.shape());
  const Device dev = require_same_device(op, {{"dy", &dy}, {"argmax", &argmax}});
  require_x_shape(op, x_shape, dy);
  HG_REQUIRE(x_shape[2] >= 1 && x_shape[3] >= 1, op,
             ": x_shape's height and width must be >= 1, got ", shape_str(x_shape));
  Tensor dx = empty(x_shape, DType::f32, dev);
  if (dx.numel() == 0) return dx;
  MaxPoolBackwardArgs args;
  args.g.N = x_shape[0], args.g.C = x_shape[1], args.g.H = x_shape[2], args.g.W = x_shape[3];
  args.g.P = dy.size(2), args.g.Q = dy.size(3);
  args.dy = dy.data<float>();
  args.argmax = argmax.data<int64_t>();
  args.dx = dx.data<float>();
  max_pool2d_backward_op().run(dev, impl, args,
                               cat("N=", args.g.N, ",C=", args.g.C, ",H=", args.g.H, ",W=",
                                   args.g.W, ",P=", args.g.P, ",Q=", args.g.Q));
  return dx;
}

Tensor avg_pool2d(const Tensor& x, Pair kernel, Pair stride, Pair padding, Impl impl,
                  const Tensor* out, bool ceil_mode, bool count_include_pad) {
  require_f32("avg_pool2d", "x", x, 4);
  const PoolGeometry g = pool_geometry("avg_pool2d", x.shape(), kernel, stride, padding, ceil_mode,
                                       count_include_pad);
  const Device dev = x.device();
  Tensor y = output_tensor("avg_pool2d", out, {g.N, g.C, g.P, g.Q}, dev, {{"x", &x}});
  if (y.numel() == 0) return y;
  AvgPoolArgs args;
  args.g = g;
  args.x = x.data<float>();
  args.y = y.data<float>();
  avg_pool2d_op().run(dev, impl, args, pool_key(g));
  return y;
}

Tensor avg_pool2d_backward(const Tensor& dy, const Shape& x_shape, Pair kernel, Pair stride,
                           Pair padding, Impl impl, bool ceil_mode, bool count_include_pad) {
  const char* op = "avg_pool2d_backward";
  require_f32(op, "dy", dy, 4);
  require_x_shape(op, x_shape, dy);
  const PoolGeometry g =
      pool_geometry(op, x_shape, kernel, stride, padding, ceil_mode, count_include_pad);
  HG_REQUIRE(dy.size(2) == g.P && dy.size(3) == g.Q, op, ": dy must have shape ",
             shape_str({g.N, g.C, g.P, g.Q}), " for x_shape ", shape_str(x_shape), ", got ",
             shape_str(dy.shape()));
  const Device dev = dy.device();
  Tensor dx = empty(x_shape, DType::f32, dev);
  if (dx.numel() == 0) return dx;
  AvgPoolBackwardArgs args;
  args.g = g;
  args.dy = dy.data<float>();
  args.dx = dx.data<float>();
  avg_pool2d_backward_op().run(dev, impl, args, pool_key(g));
  return dx;
}

}  // namespace hg
