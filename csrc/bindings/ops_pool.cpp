#include "bind.h"

namespace hg {

void bind_ops_pool(py::module_& ops) {
  ops.def(
      "max_pool2d",
      [](const Tensor& x, Pair kernel, Pair stride, Pair padding, const std::string& impl,
         const Tensor* out, bool with_argmax) {
        auto [y, argmax] = max_pool2d(x, kernel, stride, padding, parse_impl(impl), out, with_argmax);
        return std::make_tuple(y, with_argmax ? OptTensor(argmax) : OptTensor());
      },
      py::arg("x"), py::arg("kernel"), py::arg("stride"), py::arg("padding"), py::arg("impl"),
      py::arg("out") = static_cast<const Tensor*>(nullptr), py::arg("with_argmax") = true, GilRelease());
  ops.def(
      "max_pool2d_backward",
      [](const Tensor& dy, const Tensor& argmax, const std::vector<int64_t>& x_shape,
         const std::string& impl) {
        return max_pool2d_backward(dy, argmax, to_shape(x_shape), parse_impl(impl));
      },
      py::arg("dy"), py::arg("argmax"), py::arg("x_shape"), py::arg("impl"), GilRelease());
  ops.def(
      "avg_pool2d",
      [](const Tensor& x, Pair kernel, Pair stride, Pair padding, const std::string& impl,
         const Tensor* out) {
        return avg_pool2d(x, kernel, stride, padding, parse_impl(impl), out);
      },
      py::arg("x"), py::arg("kernel"), py::arg("stride"), py::arg("padding"), py::arg("impl"),
      py::arg("out") = static_cast<const Tensor*>(nullptr), GilRelease());
  ops.def(
      "avg_pool2d_backward",
      [](const Tensor& dy, const std::vector<int64_t>& x_shape, Pair kernel, Pair stride,
         Pair padding, const std::string& impl) {
        return avg_pool2d_backward(dy, to_shape(x_shape), kernel, stride, padding,
                                   parse_impl(impl));
      },
      py::arg("dy"), py::arg("x_shape"), py::arg("kernel"), py::arg("stride"), py::arg("padding"),
      py::arg("impl"), GilRelease());
}

}  // namespace hg
