// Front end of GEMM: checks, output allocation, dispatch.
#include "checks.h"

namespace hg {

Tensor gemm(const Tensor& a, const Tensor& b, const OptionalTensor& c_arg, bool trans_a, bool trans_b,
            float alpha, float beta, Impl impl, const Tensor* out) {
  const Tensor& c = or_undefined(c_arg);
  require_f32("gemm", "a", a, 2);
  require_f32("gemm", "b", b, 2);
  const Device dev = require_same_device("gemm", {{"a", &a}, {"b", &b}, {"c", &c}});
  const int64_t M = trans_a ? a.size(1) : a.size(0);
  const int64_t K = trans_a ? a.size(0) : a.size(1);
  const int64_t Kb = trans_b ? b.size(1) : b.size(0);
  const int64_t N = trans_b ? b.size(0) : b.size(1);
  HG_REQUIRE(K == Kb, "gemm: op(a) is (", M, ", ", K, ") but op(b) is (", Kb, ", ", N,
             "); their inner sizes must match (trans_a=", trans_a, ", trans_b=", trans_b, ")");
  if (c.defined()) {
    require_f32("gemm", "c", c, 2);
    require_shape("gemm", "c", c, {M, N});
  }
  Tensor y = output_tensor("gemm", out, {M, N}, dev, {{"a", &a}, {"b", &b}, {"c", &c}});
  if (y.numel() == 0) return y;
  GemmArgs args;
  args.trans_a = trans_a;
  args.trans_b = trans_b;
  args.M = M;
  args.N = N;
  args.K = K;
  args.alpha = alpha;
  args.beta = c.defined() ? beta : 0.f;
  args.a = a.data<float>();
  args.lda = a.size(1);
  args.b = b.data<float>();
  args.ldb = b.size(1);
  args.c = c.defined() ? c.data<float>() : nullptr;
  args.y = y.data<float>();
  args.ldy = N;
  gemm_op().run(dev, impl, args,
                cat("M=", M, ",N=", N, ",K=", K, ",ta=", trans_a, ",tb=", trans_b));
  return y;
}

}  // namespace hg
