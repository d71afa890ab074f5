#include "bind.h"

namespace hg {

void bind_ops_optim(py::module_& ops) {
  ops.def(
      "sgd_step",
      [](Tensor& param, const Tensor& grad, const OptTensor& momentum_buf, float lr, float momentum,
         float weight_decay, bool nesterov, const std::string& impl) {
        Tensor buf = opt(momentum_buf);
        sgd_step(param, grad, buf, lr, momentum, weight_decay, nesterov, parse_impl(impl));
      },
      py::arg("param"), py::arg("grad"), py::arg("momentum_buf"), py::arg("lr"),
      py::arg("momentum"), py::arg("weight_decay"), py::arg("nesterov"), py::arg("impl"),
      GilRelease());
  ops.def(
      "adam_step",
      [](Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, int64_t step, float lr,
         float beta1, float beta2, float eps, float weight_decay, bool decoupled,
         const std::string& impl) {
        adam_step(param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled,
                  parse_impl(impl));
      },
      py::arg("param"), py::arg("grad"), py::arg("m"), py::arg("v"), py::arg("step"), py::arg("lr"),
      py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"),
      py::arg("decoupled"), py::arg("impl"), GilRelease());
}

}  // namespace hg
