#include "bind.h"

namespace hg {

void bind_ops_layers(py::module_& ops) {
  ops.def(
      "add",
      [](const Tensor& a, const Tensor& b, float alpha, const std::string& impl, const Tensor* out) {
        return add(a, b, alpha, parse_impl(impl), out);
      },
      py::arg("a"), py::arg("b"), py::arg("alpha"), py::arg("impl"), py::arg("out") = static_cast<const Tensor*>(nullptr), GilRelease());
  ops.def(
      "add_",
      [](Tensor& a, const Tensor& b, float alpha, const std::string& impl) {
        add_(a, b, alpha, parse_impl(impl));
      },
      py::arg("a"), py::arg("b"), py::arg("alpha"), py::arg("impl"), GilRelease());
  ops.def(
      "fill_",
      [](Tensor& t, float value, const std::string& impl) { fill_(t, value, parse_impl(impl)); },
      py::arg("t"), py::arg("value"), py::arg("impl"), GilRelease());
  ops.def(
      "batch_norm",
      [](const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& running_mean,
         Tensor& running_var, bool training, float momentum, float eps, const std::string& impl,
         const Tensor* out) {
        return batch_norm(x, gamma, beta, running_mean, running_var, training, momentum, eps,
                          parse_impl(impl), out);
      },
      py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("running_mean"),
      py::arg("running_var"), py::arg("training"), py::arg("momentum"), py::arg("eps"),
      py::arg("impl"), py::arg("out") = static_cast<const Tensor*>(nullptr), GilRelease());
  ops.def(
      "batch_norm_backward",
      [](const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& save_mean,
         const Tensor& save_invstd, bool training, const std::string& impl) {
        return batch_norm_backward(dy, x, gamma, save_mean, save_invstd, training, parse_impl(impl));
      },
      py::arg("dy"), py::arg("x"), py::arg("gamma"), py::arg("save_mean"), py::arg("save_invstd"),
      py::arg("training"), py::arg("impl"), GilRelease());
  ops.def(
      "dropout",
      [](const Tensor& x, float p, uint64_t seed, const std::string& impl) {
        return dropout(x, p, seed, parse_impl(impl));
      },
      py::arg("x"), py::arg("p"), py::arg("seed"), py::arg("impl"), GilRelease());
  ops.def(
      "dropout_backward",
      [](const Tensor& dy, const Tensor& mask, float p, const std::string& impl) {
        return dropout_backward(dy, mask, p, parse_impl(impl));
      },
      py::arg("dy"), py::arg("mask"), py::arg("p"), py::arg("impl"), GilRelease());
  ops.def(
      "embedding",
      [](const Tensor& weight, const Tensor& idx, const std::string& impl, const Tensor* out) {
        return embedding(weight, idx, parse_impl(impl), out);
      },
      py::arg("weight"), py::arg("idx"), py::arg("impl"), py::arg("out") = static_cast<const Tensor*>(nullptr), GilRelease());
  ops.def(
      "embedding_backward",
      [](const Tensor& dy, const Tensor& idx, int64_t num, const std::string& impl) {
        return embedding_backward(dy, idx, num, parse_impl(impl));
      },
      py::arg("dy"), py::arg("idx"), py::arg("num"), py::arg("impl"), GilRelease());
}

}  // namespace hg
