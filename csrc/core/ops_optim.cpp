// Front ends of the optimizer steps (in place, PyTorch's torch.optim.SGD / Adam / AdamW):
// hyperparameter ranges, float32 buffers shaped like grad on one device, dispatch.
#include "checks.h"

namespace hg {

namespace {
// A float32 buffer updated in place must have grad's shape.
void require_state(const char* op, const char* name, const Tensor& t, const Tensor& grad) {
  require_f32(op, name, t);
  HG_REQUIRE(t.shape() == grad.shape(), op, ": ", name, " must have grad's shape ",
             shape_str(grad.shape()), ", got ", shape_str(t.shape()));
}
}  // namespace

void sgd_step(Tensor& param, const Tensor& grad, const OptionalTensor& momentum_buf_arg, float lr, float momentum,
              float weight_decay, bool nesterov, Impl impl) {
  const Tensor& momentum_buf = or_undefined(momentum_buf_arg);
  const char* op = "sgd_step";
  require_f32(op, "grad", grad);
  require_state(op, "param", param, grad);
  HG_REQUIRE(lr >= 0.f, op, ": lr must be >= 0, got ", lr);
  HG_REQUIRE(momentum >= 0.f, op, ": momentum must be >= 0, got ", momentum);
  HG_REQUIRE(weight_decay >= 0.f, op, ": weight_decay must be >= 0, got ", weight_decay);
  HG_REQUIRE(!nesterov || momentum > 0.f, op, ": nesterov=True requires momentum > 0, got momentum=",
             momentum);
  if (momentum != 0.f) {
    HG_REQUIRE(momentum_buf.defined(), op, ": momentum_buf is required when momentum != 0 (got None)");
    require_state(op, "momentum_buf", momentum_buf, grad);
  }
  const Device dev = require_same_device(
      op, {{"param", &param}, {"grad", &grad}, {"momentum_buf", momentum != 0.f ? &momentum_buf : nullptr}});
  if (param.numel() == 0) return;
  SgdArgs args;
  args.n = param.numel();
  args.param = param.data<float>();
  args.grad = grad.data<float>();
  args.momentum_buf = momentum != 0.f ? momentum_buf.data<float>() : nullptr;
  args.lr = lr;
  args.momentum = momentum;
  args.weight_decay = weight_decay;
  args.nesterov = nesterov;
  sgd_step_op().run(dev, impl, args, cat("n=", args.n));
}

void adam_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, int64_t step, float lr,
               float beta1, float beta2, float eps, float weight_decay, bool decoupled, Impl impl) {
  const char* op = "adam_step";
  require_f32(op, "grad", grad);
  require_state(op, "param", param, grad);
  require_state(op, "m", m, grad);
  require_state(op, "v", v, grad);
  HG_REQUIRE(step >= 1, op, ": step must be >= 1 (the count of steps taken, this one included), got ",
             step);
  HG_REQUIRE(lr >= 0.f, op, ": lr must be >= 0, got ", lr);
  HG_REQUIRE(beta1 >= 0.f && beta1 < 1.f, op, ": beta1 must be in [0, 1), got ", beta1);
  HG_REQUIRE(beta2 >= 0.f && beta2 < 1.f, op, ": beta2 must be in [0, 1), got ", beta2);
  HG_REQUIRE(eps > 0.f, op, ": eps must be > 0, got ", eps);
  HG_REQUIRE(weight_decay >= 0.f, op, ": weight_decay must be >= 0, got ", weight_decay);
  const Device dev =
      require_same_device(op, {{"param", &param}, {"grad", &grad}, {"m", &m}, {"v", &v}});
  if (param.numel() == 0) return;
  AdamArgs args;
  args.n = param.numel();
  args.param = param.data<float>();
  args.grad = grad.data<float>();
  args.m = m.data<float>();
  args.v = v.data<float>();
  args.step = step;
  args.lr = lr;
  args.beta1 = beta1;
  args.beta2 = beta2;
  args.eps = eps;
  args.weight_decay = weight_decay;
  args.decoupled = decoupled;
  adam_step_op().run(dev, impl, args, cat("n=", args.n));
}

}  // namespace hg
