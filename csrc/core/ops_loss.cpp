// Front ends of the losses and softmax: checks, output allocation, dispatch, label-range errors.
#include "checks.h"

namespace hg {

namespace {

// (..., C) float32 scores (at least 2 dimensions, every size >= 1) and labels (...) int64/int32
// on the same device; the leading axes are the positions, flattened to N rows.
Device check_scores_and_labels(const char* op, const char* scores_name, const Tensor& scores,
                               const Tensor& labels) {
  require_f32(op, scores_name, scores);
  bool sizes_ok = scores.dim() >= 2;
  for (int64_t i = 0; sizes_ok && i < scores.dim(); ++i) sizes_ok = scores.size(i) >= 1;
  HG_REQUIRE(sizes_ok, op, ": ", scores_name,
             " must be (N, C) or (..., C) with every size >= 1 (class axis last), got shape ",
             shape_str(scores.shape()));
  HG_REQUIRE(labels.defined(), op, ": labels is missing");
  HG_REQUIRE_TYPE(labels.dtype() == DType::i64 || labels.dtype() == DType::i32, op,
                  ": labels must be int64 or int32, got ", dtype_name(labels.dtype()));
  require_shape(op, "labels", labels, Shape(scores.shape().begin(), scores.shape().end() - 1));
  return require_same_device(op, {{scores_name, &scores}, {"labels", &labels}});
}

void raise_if_bad_labels(const char* op, const Tensor& flag, int64_t C) {
  HG_REQUIRE(read_flag(flag) == 0, op, ": labels must lie in [0, C) = [0, ", C,
             "); found a label outside that range");
}

}  // namespace

std::tuple<Tensor, Tensor> softmax_cross_entropy(const Tensor& logits, const Tensor& labels,
                                                 Impl impl) {
  const char* op = "softmax_cross_entropy";
  const Device dev = check_scores_and_labels(op, "logits", logits, labels);
  const int64_t C = logits.size(-1), N = logits.numel() / C;
  Tensor probs = empty(logits.shape(), DType::f32, dev);
  Tensor loss = empty({}, DType::f32, dev);
  Tensor flag = zeros({1}, DType::i32, dev);
  SoftmaxXentArgs args;
  args.N = N;
  args.C = C;
  args.logits = logits.data<float>();
  args.labels = labels.raw();
  args.label_dtype = labels.dtype();
  args.probs = probs.data<float>();
  args.loss = loss.data<float>();
  args.bad_label = flag.data<int32_t>();
  softmax_cross_entropy_op().run(dev, impl, args, cat("N=", N, ",C=", C));
  raise_if_bad_labels(op, flag, C);
  return {loss, probs};
}

Tensor softmax_cross_entropy_backward(const Tensor& probs, const Tensor& labels, Impl impl) {
  const char* op = "softmax_cross_entropy_backward";
  const Device dev = check_scores_and_labels(op, "probs", probs, labels);
  const int64_t C = probs.size(-1), N = probs.numel() / C;
  Tensor dlogits = empty(probs.shape(), DType::f32, dev);
  Tensor flag = zeros({1}, DType::i32, dev);
  SoftmaxXentBackwardArgs args;
  args.N = N;
  args.C = C;
  args.probs = probs.data<float>();
  args.labels = labels.raw();
  args.label_dtype = labels.dtype();
  args.dlogits = dlogits.data<float>();
  args.bad_label = flag.data<int32_t>();
  softmax_cross_entropy_backward_op().run(dev, impl, args, cat("N=", N, ",C=", C));
  raise_if_bad_labels(op, flag, C);
  return dlogits;
}

Tensor softmax(const Tensor& x, Impl impl, const Tensor* out) {
  require_f32("softmax", "x", x);
  HG_REQUIRE(x.dim() >= 1, "softmax: x must have at least 1 dimension, got a 0-d tensor");
  Tensor y = output_tensor("softmax", out, x.shape(), x.device(), {{"x", &x}});
  if (y.numel() == 0) return y;
  SoftmaxArgs args;
  args.cols = x.size(-1);
  args.rows = x.numel() / args.cols;
  args.x = x.data<float>();
  args.y = y.data<float>();
  softmax_op().run(x.device(), impl, args, cat("rows=", args.rows, ",cols=", args.cols));
  return y;
}

namespace {
Device check_pred_target(const char* op, const Tensor& pred, const Tensor& target) {
  require_f32(op, "pred", pred);
  require_f32(op, "target", target);
  require_shape(op, "target", target, pred.shape());
  HG_REQUIRE(pred.numel() >= 1, op, ": pred must hold at least one element, got shape ",
             shape_str(pred.shape()));
  return require_same_device(op, {{"pred", &pred}, {"target", &target}});
}
}  // namespace

Tensor mse_loss(const Tensor& pred, const Tensor& target, Impl impl) {
  const Device dev = check_pred_target("mse_loss", pred, target);
  Tensor loss = empty({}, DType::f32, dev);
  MseArgs args;
  args.n = pred.numel();
  args.pred = pred.data<float>();
  args.target = target.data<float>();
  args.loss = loss.data<float>();
  mse_loss_op().run(dev, impl, args, cat("n=", args.n));
  return loss;
}

Tensor mse_loss_backward(const Tensor& pred, const Tensor& target, Impl impl) {
  const Device dev = check_pred_target("mse_loss_backward", pred, target);
  Tensor dpred = empty(pred.shape(), DType::f32, dev);
  MseBackwardArgs args;
  args.n = pred.numel();
  args.pred = pred.data<float>();
  args.target = target.data<float>();
  args.dpred = dpred.data<float>();
  mse_loss_backward_op().run(dev, impl, args, cat("n=", args.n));
  return dpred;
}

}  // namespace hg
