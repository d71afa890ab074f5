#include "bind.h"

namespace hg {

void bind_ops_attention(py::module_& ops) {
  ops.def(
      "layer_norm",
      [](const Tensor& x, const OptTensor& weight, const OptTensor& bias, float eps,
         const std::string& impl) { return layer_norm(x, opt(weight), opt(bias), eps, parse_impl(impl)); },
      py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("eps"), py::arg("impl"), GilRelease());
  ops.def(
      "layer_norm_backward",
      [](const Tensor& dy, const Tensor& x, const OptTensor& weight, const Tensor& mean,
         const Tensor& rstd, const std::string& impl) {
        return layer_norm_backward(dy, x, opt(weight), mean, rstd, parse_impl(impl));
      },
      py::arg("dy"), py::arg("x"), py::arg("weight"), py::arg("mean"), py::arg("rstd"),
      py::arg("impl"), GilRelease());
  ops.def(
      "attention",
      [](const Tensor& q, const Tensor& k, const Tensor& v, bool causal, float scale,
         const std::string& impl) { return attention(q, k, v, causal, scale, parse_impl(impl)); },
      py::arg("q"), py::arg("k"), py::arg("v"), py::arg("causal"), py::arg("scale"),
      py::arg("impl"), GilRelease());
  ops.def(
      "attention_backward",
      [](const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
         const Tensor& lse, bool causal, float scale, const std::string& impl) {
        return attention_backward(dout, q, k, v, out, lse, causal, scale, parse_impl(impl));
      },
      py::arg("dout"), py::arg("q"), py::arg("k"), py::arg("v"), py::arg("out"), py::arg("lse"),
      py::arg("causal"), py::arg("scale"), py::arg("impl"), GilRelease());
  ops.def(
      "bmm",
      [](const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, float alpha,
         const std::string& impl, const Tensor* out) {
        return bmm(a, b, trans_a, trans_b, alpha, parse_impl(impl), out);
      },
      py::arg("a"), py::arg("b"), py::arg("trans_a"), py::arg("trans_b"), py::arg("alpha"),
      py::arg("impl"), py::arg("out") = static_cast<const Tensor*>(nullptr), GilRelease());
  ops.def(
      "sum_squares",
      [](const std::vector<Tensor>& tensors, const std::string& impl) {
        return sum_squares(tensors, parse_impl(impl));
      },
      py::arg("tensors"), py::arg("impl"), GilRelease());
  ops.def(
      "scale_",
      [](Tensor& x, float alpha, const std::string& impl) { scale_(x, alpha, parse_impl(impl)); },
      py::arg("x"), py::arg("alpha"), py::arg("impl"), GilRelease());
}

}  // namespace hg
