#include "bind.h"

namespace hg {

void bind_ops_activation(py::module_& ops) {
  ops.def(
      "activation",
      [](const Tensor& x, const std::string& kind, float alpha, const std::string& impl,
         const Tensor* out) {
        return activation(x, parse_activation(kind), alpha, parse_impl(impl), out);
      },
      py::arg("x"), py::arg("kind"), py::arg("alpha"), py::arg("impl"),
      py::arg("out") = static_cast<const Tensor*>(nullptr), GilRelease());
  ops.def(
      "activation_backward",
      [](const Tensor& dy, const Tensor& x, const Tensor& y, const std::string& kind, float alpha,
         const std::string& impl) {
        return activation_backward(dy, x, y, parse_activation(kind), alpha, parse_impl(impl));
      },
      py::arg("dy"), py::arg("x"), py::arg("y"), py::arg("kind"), py::arg("alpha"),
      py::arg("impl"), GilRelease());
}

}  // namespace hg
