#include "bind.h"

namespace hg {

void bind_ops_loss(py::module_& ops) {
  ops.def(
      "softmax_cross_entropy",
      [](const Tensor& logits, const Tensor& labels, const std::string& impl) {
        return softmax_cross_entropy(logits, labels, parse_impl(impl));
      },
      py::arg("logits"), py::arg("labels"), py::arg("impl"), GilRelease());
  ops.def(
      "softmax_cross_entropy_backward",
      [](const Tensor& probs, const Tensor& labels, const std::string& impl) {
        return softmax_cross_entropy_backward(probs, labels, parse_impl(impl));
      },
      py::arg("probs"), py::arg("labels"), py::arg("impl"), GilRelease());
  ops.def(
      "softmax",
      [](const Tensor& x, const std::string& impl, const Tensor* out) {
        return softmax(x, parse_impl(impl), out);
      },
      py::arg("x"), py::arg("impl"), py::arg("out") = static_cast<const Tensor*>(nullptr), GilRelease());
  ops.def(
      "mse_loss",
      [](const Tensor& pred, const Tensor& target, const std::string& impl) {
        return mse_loss(pred, target, parse_impl(impl));
      },
      py::arg("pred"), py::arg("target"), py::arg("impl"), GilRelease());
  ops.def(
      "mse_loss_backward",
      [](const Tensor& pred, const Tensor& target, const std::string& impl) {
        return mse_loss_backward(pred, target, parse_impl(impl));
      },
      py::arg("pred"), py::arg("target"), py::arg("impl"), GilRelease());
}

}  // namespace hg
