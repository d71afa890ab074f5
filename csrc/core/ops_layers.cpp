// Front ends of the layer helpers: add / add_ / fill_, batch norm, dropout, embedding.
// Checks, output allocation, dispatch, index-range errors read back from the kernels' flags.
#include "checks.h"

namespace hg {

// ---- add, add_, fill_ ------------------------------------------------------------------------
namespace {
Device check_add(const char* op, const Tensor& a, const Tensor& b) {
  require_f32(op, "a", a);
  require_f32(op, "b", b);
  require_shape(op, "b", b, a.shape());
  return require_same_device(op, {{"a", &a}, {"b", &b}});
}
void run_add(Device dev, const Tensor& a, const Tensor& b, float alpha, float* y, Impl impl) {
  AddArgs args;
  args.n = a.numel();
  args.alpha = alpha;
  args.a = a.data<float>();
  args.b = b.data<float>();
  args.y = y;
  add_op().run(dev, impl, args, cat("n=", args.n));
}
}  // namespace

Tensor add(const Tensor& a, const Tensor& b, float alpha, Impl impl, const Tensor* out) {
  const Device dev = check_add("add", a, b);
  Tensor y = output_tensor("add", out, a.shape(), dev, {{"a", &a}, {"b", &b}});
  if (y.numel() > 0) run_add(dev, a, b, alpha, y.data<float>(), impl);
  return y;
}

void add_(Tensor& a, const Tensor& b, float alpha, Impl impl) {
  const Device dev = check_add("add_", a, b);
  if (a.numel() > 0) run_add(dev, a, b, alpha, a.data<float>(), impl);
}

void fill_(Tensor& y, float value, Impl impl) {
  require_f32("fill_", "t", y);
  if (y.numel() == 0) return;
  FillArgs args;
  args.n = y.numel();
  args.value = value;
  args.y = y.data<float>();
  fill_op().run(y.device(), impl, args, cat("n=", args.n));
}

// ---- batch norm ------------------------------------------------------------------------------
namespace {
struct BnShape { int64_t N, C, HW; };

BnShape check_bn_input(const char* op, const char* name, const Tensor& x) {
  require_f32(op, name, x);
  HG_REQUIRE(x.dim() == 2 || x.dim() == 4, op, ": ", name,
             " must be (N, C) or (N, C, H, W), got shape ", shape_str(x.shape()));
  return {x.size(0), x.size(1), x.dim() == 4 ? x.size(2) * x.size(3) : 1};
}

void require_per_channel(const char* op, const char* name, const Tensor& t, int64_t C) {
  require_f32(op, name, t);
  require_shape(op, name, t, {C});
}
}  // namespace

std::tuple<Tensor, Tensor, Tensor> batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                              Tensor& running_mean, Tensor& running_var,
                                              bool training, float momentum, float eps, Impl impl,
                                              const Tensor* out) {
  const char* op = "batch_norm";
  const BnShape s = check_bn_input(op, "x", x);
  require_per_channel(op, "gamma", gamma, s.C);
  require_per_channel(op, "beta", beta, s.C);
  require_per_channel(op, "running_mean", running_mean, s.C);
  require_per_channel(op, "running_var", running_var, s.C);
  HG_REQUIRE(!training || s.N * s.HW > 1, op,
             ": training needs more than one value per channel (N*H*W > 1), got x of shape ",
             shape_str(x.shape()));
  HG_REQUIRE(momentum >= 0.f && momentum <= 1.f, op, ": momentum must be in [0, 1], got ", momentum);
  HG_REQUIRE(eps >= 0.f, op, ": eps must be >= 0, got ", eps);
  const Device dev = require_same_device(op, {{"x", &x}, {"gamma", &gamma}, {"beta", &beta},
                                              {"running_mean", &running_mean},
                                              {"running_var", &running_var}});
  Tensor y = output_tensor(op, out, x.shape(), dev,
                           {{"x", &x}, {"gamma", &gamma}, {"beta", &beta},
                            {"running_mean", &running_mean}, {"running_var", &running_var}});
  Tensor save_mean = empty({s.C}, DType::f32, dev);
  Tensor save_invstd = empty({s.C}, DType::f32, dev);
  if (s.C == 0) return {y, save_mean, save_invstd};
  BatchNormArgs args;
  args.N = s.N;
  args.C = s.C;
  args.HW = s.HW;
  args.training = training;
  args.momentum = momentum;
  args.eps = eps;
  args.x = x.data<float>();
  args.gamma = gamma.data<float>();
  args.beta = beta.data<float>();
  args.running_mean = running_mean.data<float>();
  args.running_var = running_var.data<float>();
  args.y = y.data<float>();
  args.save_mean = save_mean.data<float>();
  args.save_invstd = save_invstd.data<float>();
  batch_norm_op().run(dev, impl, args,
                      cat("N=", s.N, ",C=", s.C, ",HW=", s.HW, ",training=", training));
  return {y, save_mean, save_invstd};
}

std::tuple<Tensor, Tensor, Tensor> batch_norm_backward(const Tensor& dy, const Tensor& x,
                                                       const Tensor& gamma, const Tensor& save_mean,
                                                       const Tensor& save_invstd, bool training,
                                                       Impl impl) {
  const char* op = "batch_norm_backward";
  const BnShape s = check_bn_input(op, "x", x);
  require_f32(op, "dy", dy);
  require_shape(op, "dy", dy, x.shape());
  require_per_channel(op, "gamma", gamma, s.C);
  require_per_channel(op, "save_mean", save_mean, s.C);
  require_per_channel(op, "save_invstd", save_invstd, s.C);
  const Device dev = require_same_device(op, {{"dy", &dy}, {"x", &x}, {"gamma", &gamma},
                                              {"save_mean", &save_mean},
                                              {"save_invstd", &save_invstd}});
  Tensor dx = empty(x.shape(), DType::f32, dev);
  Tensor dgamma = empty({s.C}, DType::f32, dev);
  Tensor dbeta = empty({s.C}, DType::f32, dev);
  if (s.C == 0) return {dx, dgamma, dbeta};
  BatchNormBackwardArgs args;
  args.N = s.N;
  args.C = s.C;
  args.HW = s.HW;
  args.training = training;
  args.dy = dy.data<float>();
  args.x = x.data<float>();
  args.gamma = gamma.data<float>();
  args.save_mean = save_mean.data<float>();
  args.save_invstd = save_invstd.data<float>();
  args.dx = dx.data<float>();
  args.dgamma = dgamma.data<float>();
  args.dbeta = dbeta.data<float>();
  batch_norm_backward_op().run(dev, impl, args,
                               cat("N=", s.N, ",C=", s.C, ",HW=", s.HW, ",training=", training));
  return {dx, dgamma, dbeta};
}

// ---- dropout ---------------------------------------------------------------------------------
namespace {
void require_drop_probability(const char* op, float p) {
  HG_REQUIRE(p >= 0.f && p < 1.f, op, ": p must be in [0, 1) (the probability of dropping), got ", p);
}
}  // namespace

std::tuple<Tensor, Tensor> dropout(const Tensor& x, float p, uint64_t seed, Impl impl) {
  require_f32("dropout", "x", x);
  require_drop_probability("dropout", p);
  Tensor y = empty(x.shape(), DType::f32, x.device());
  Tensor mask = empty(x.shape(), DType::u8, x.device());
  if (x.numel() == 0) return {y, mask};
  DropoutArgs args;
  args.n = x.numel();
  args.p = p;
  args.seed = seed;
  args.x = x.data<float>();
  args.y = y.data<float>();
  args.mask = mask.data<uint8_t>();
  dropout_op().run(x.device(), impl, args, cat("n=", args.n));
  return {y, mask};
}

Tensor dropout_backward(const Tensor& dy, const Tensor& mask, float p, Impl impl) {
  require_f32("dropout_backward", "dy", dy);
  require_dtype("dropout_backward", "mask", mask, DType::u8);
  require_shape("dropout_backward", "mask", mask, dy.shape());
  require_drop_probability("dropout_backward", p);
  const Device dev = require_same_device("dropout_backward", {{"dy", &dy}, {"mask", &mask}});
  Tensor dx = empty(dy.shape(), DType::f32, dev);
  if (dy.numel() == 0) return dx;
  DropoutBackwardArgs args;
  args.n = dy.numel();
  args.p = p;
  args.dy = dy.data<float>();
  args.mask = mask.data<uint8_t>();
  args.dx = dx.data<float>();
  dropout_backward_op().run(dev, impl, args, cat("n=", args.n));
  return dx;
}

// ---- embedding -------------------------------------------------------------------------------
namespace {
void raise_if_bad_index(const char* op, const Tensor& flag, int64_t num) {
  HG_REQUIRE(read_flag(flag) == 0, op, ": idx must lie in [0, num) = [0, ", num,
             "); found an index outside that range");
}
}  // namespace

Tensor embedding(const Tensor& weight, const Tensor& idx, Impl impl, const Tensor* out) {
  const char* op = "embedding";
  require_f32(op, "weight", weight, 2);
  require_dtype(op, "idx", idx, DType::i64);
  const Device dev = require_same_device(op, {{"weight", &weight}, {"idx", &idx}});
  const int64_t num = weight.size(0), dim = weight.size(1);
  Shape out_shape = idx.shape();
  out_shape.push_back(dim);
  Tensor y = output_tensor(op, out, out_shape, dev, {{"weight", &weight}, {"idx", &idx}});
  if (idx.numel() == 0) return y;
  Tensor flag = zeros({1}, DType::i32, dev);
  EmbeddingArgs args;
  args.num = num;
  args.dim = dim;
  args.count = idx.numel();
  args.weight = weight.data<float>();
  args.idx = idx.data<int64_t>();
  args.y = y.data<float>();
  args.bad_index = flag.data<int32_t>();
  embedding_op().run(dev, impl, args, cat("num=", num, ",dim=", dim, ",count=", args.count));
  raise_if_bad_index(op, flag, num);
  return y;
}

Tensor embedding_backward(const Tensor& dy, const Tensor& idx, int64_t num, Impl impl) {
  const char* op = "embedding_backward";
  require_f32(op, "dy", dy);
  require_dtype(op, "idx", idx, DType::i64);
  HG_REQUIRE(num >= 0, op, ": num must be >= 0, got ", num);
  HG_REQUIRE(dy.dim() == idx.dim() + 1 &&
                 Shape(dy.shape().begin(), dy.shape().end() - 1) == idx.shape(),
             op, ": dy must have shape idx.shape + (dim,) with idx of shape ", shape_str(idx.shape()),
             ", got ", shape_str(dy.shape()));
  const Device dev = require_same_device(op, {{"dy", &dy}, {"idx", &idx}});
  const int64_t dim = dy.size(-1);
  Tensor dw = empty({num, dim}, DType::f32, dev);
  if (dw.numel() == 0) {
    HG_REQUIRE(idx.numel() == 0 || dim == 0 || num > 0, op, ": idx must lie in [0, num) = [0, 0)");
    return dw;
  }
  Tensor flag = zeros({1}, DType::i32, dev);
  EmbeddingBackwardArgs args;
  args.num = num;
  args.dim = dim;
  args.count = idx.numel();
  args.dy = dy.data<float>();
  args.idx = idx.data<int64_t>();
  args.dw = dw.data<float>();
  args.bad_index = flag.data<int32_t>();
  embedding_backward_op().run(dev, impl, args, cat("num=", num, ",dim=", dim, ",count=", args.count));
  raise_if_bad_index(op, flag, num);
  return dw;
}

}  // namespace hg
