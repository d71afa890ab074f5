#include "bind.h"

namespace hg {

void bind_ops_fused(py::module_& ops) {
  ops.def(
      "conv2d_bias_act",
      [](const Tensor& x, const Tensor& w, const OptTensor& bias, Pair stride, Pair padding,
         Pair dilation, int64_t groups, const std::string& activation, float alpha,
         const std::string& impl, const Tensor* out) {
        return conv2d_bias_act(x, w, opt(bias), stride, padding, dilation, groups, activation,
                               alpha, parse_impl(impl), out);
      },
      py::arg("x"), py::arg("w"), py::arg("bias"), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("groups"), py::arg("activation"), py::arg("alpha"),
      py::arg("impl"), py::arg("out") = static_cast<const Tensor*>(nullptr), GilRelease());
  ops.def(
      "linear_bias_act",
      [](const Tensor& x, const Tensor& w, const OptTensor& bias, const std::string& activation,
         float alpha, const std::string& impl, const Tensor* out) {
        return linear_bias_act(x, w, opt(bias), activation, alpha, parse_impl(impl), out);
      },
      py::arg("x"), py::arg("w"), py::arg("bias"), py::arg("activation"), py::arg("alpha"),
      py::arg("impl"), py::arg("out") = static_cast<const Tensor*>(nullptr), GilRelease());
  ops.def(
      "pack_linear_weight",
      [](const Tensor& w, const std::string& impl) { return pack_linear_weight(w, parse_impl(impl)); },
      py::arg("w"), py::arg("impl"), GilRelease());
  ops.def(
      "linear_bias_act_packed",
      [](const Tensor& x, const Tensor& packed, const OptTensor& bias, int64_t n,
         const std::string& activation, float alpha, const std::string& impl, const Tensor* out) {
        return linear_bias_act_packed(x, packed, opt(bias), n, activation, alpha, parse_impl(impl),
                                      out);
      },
      py::arg("x"), py::arg("packed"), py::arg("bias"), py::arg("n"), py::arg("activation"),
      py::arg("alpha"), py::arg("impl"), py::arg("out") = static_cast<const Tensor*>(nullptr),
      GilRelease());
  ops.def("cpu_gemm_panel_width", &cpu_gemm_panel_width);
}

}  // namespace hg
