// Front end of the activations: kind parsing, checks, output allocation, dispatch.
#include "checks.h"

namespace hg {

namespace {
constexpr ActKind kAllKinds[] = {ActKind::relu, ActKind::leaky_relu, ActKind::sigmoid, ActKind::tanh,
                                 ActKind::gelu, ActKind::gelu_tanh, ActKind::elu, ActKind::relu6,
                                 ActKind::hardsigmoid, ActKind::hardswish};
}  // namespace

const char* activation_name(ActKind k) {
  switch (k) {
    case ActKind::relu: return "relu";
    case ActKind::leaky_relu: return "leaky_relu";
    case ActKind::sigmoid: return "sigmoid";
    case ActKind::tanh: return "tanh";
    case ActKind::gelu: return "gelu";
    case ActKind::gelu_tanh: return "gelu_tanh";
    case ActKind::elu: return "elu";
    case ActKind::relu6: return "relu6";
    case ActKind::hardsigmoid: return "hardsigmoid";
    case ActKind::hardswish: return "hardswish";
  }
  return "?";
}

ActKind parse_activation(const std::string& kind) {
  std::string known;
  for (ActKind k : kAllKinds) {
    if (kind == activation_name(k)) return k;
    known += std::string(known.empty() ? "'" : ", '") + activation_name(k) + "'";
  }
  fail(ErrorKind::value, "activation: kind must be one of ", known, "; got '", kind, "'");
}

Tensor activation(const Tensor& x, ActKind kind, float alpha, Impl impl, const Tensor* out) {
  require_f32("activation", "x", x);
  const Device dev = x.device();
  Tensor y = output_tensor("activation", out, x.shape(), dev, {{"x", &x}});
  if (y.numel() == 0) return y;
  ActivationArgs args;
  args.kind = kind;
  args.alpha = alpha;
  args.n = x.numel();
  args.x = x.data<float>();
  args.y = y.data<float>();
  activation_op().run(dev, impl, args, cat("kind=", activation_name(kind), ",n=", args.n));
  return y;
}

Tensor activation_backward(const Tensor& dy, const Tensor& x, const Tensor& y, ActKind kind,
                           float alpha, Impl impl) {
  const char* op = "activation_backward";
  require_f32(op, "dy", dy);
  require_f32(op, "x", x);
  require_f32(op, "y", y);
  const Device dev = require_same_device(op, {{"dy", &dy}, {"x", &x}, {"y", &y}});
  require_shape(op, "x", x, dy.shape());
  require_shape(op, "y", y, dy.shape());
  Tensor dx = empty(dy.shape(), DType::f32, dev);
  if (dx.numel() == 0) return dx;
  ActivationBackwardArgs args;
  args.kind = kind;
  args.alpha = alpha;
  args.n = dy.numel();
  args.dy = dy.data<float>();
  args.x = x.data<float>();
  args.y = y.data<float>();
  args.dx = dx.data<float>();
  activation_backward_op().run(dev, impl, args, cat("kind=", activation_name(kind), ",n=", args.n));
  return dx;
}

}  // namespace hg
