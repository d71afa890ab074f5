#include "bind.h"

namespace hg {

void bind_ops_conv(py::module_& ops) {
  ops.def(
      "conv2d",
      [](const Tensor& x, const Tensor& w, const OptTensor& bias, Pair stride, Pair padding,
         Pair dilation, int64_t groups, const std::string& impl, const Tensor* out) {
        return conv2d(x, w, opt(bias), stride, padding, dilation, groups, parse_impl(impl), out);
      },
      py::arg("x"), py::arg("w"), py::arg("bias"), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("groups"), py::arg("impl"), py::arg("out") = static_cast<const Tensor*>(nullptr), GilRelease());
  ops.def(
      "conv2d_backward_data",
      [](const Tensor& dy, const Tensor& w, const std::vector<int64_t>& x_shape, Pair stride,
         Pair padding, Pair dilation, int64_t groups, const std::string& impl) {
        return conv2d_backward_data(dy, w, to_shape(x_shape), stride, padding, dilation, groups,
                                    parse_impl(impl));
      },
      py::arg("dy"), py::arg("w"), py::arg("x_shape"), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("groups"), py::arg("impl"), GilRelease());
  ops.def(
      "conv2d_backward_weight",
      [](const Tensor& dy, const Tensor& x, const std::vector<int64_t>& w_shape, Pair stride,
         Pair padding, Pair dilation, int64_t groups, const std::string& impl) {
        return conv2d_backward_weight(dy, x, to_shape(w_shape), stride, padding, dilation, groups,
                                      parse_impl(impl));
      },
      py::arg("dy"), py::arg("x"), py::arg("w_shape"), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("groups"), py::arg("impl"), GilRelease());
  ops.def(
      "bias_add",
      [](const Tensor& x, const Tensor& bias, const std::string& impl, const Tensor* out) {
        return bias_add(x, bias, parse_impl(impl), out);
      },
      py::arg("x"), py::arg("bias"), py::arg("impl"), py::arg("out") = static_cast<const Tensor*>(nullptr), GilRelease());
  ops.def(
      "bias_backward",
      [](const Tensor& dy, const std::string& impl) { return bias_backward(dy, parse_impl(impl)); },
      py::arg("dy"), py::arg("impl"), GilRelease());
}

}  // namespace hg
