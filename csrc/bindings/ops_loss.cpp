#include "bind.h"

namespace hg {

HG_BIND_OPS(loss) {
  ops.def("softmax_cross_entropy", &softmax_cross_entropy, py::arg("logits"), py::arg("labels"),
          py::arg("impl"), GilRelease());
  ops.def("softmax_cross_entropy_backward", &softmax_cross_entropy_backward, py::arg("probs"),
          py::arg("labels"), py::arg("impl"), GilRelease());
  ops.def("softmax", &softmax, py::arg("x"), py::arg("impl"), py::arg("out") = kNoOut,
          GilRelease());
  ops.def("mse_loss", &mse_loss, py::arg("pred"), py::arg("target"), py::arg("impl"),
          GilRelease());
  ops.def("mse_loss_backward", &mse_loss_backward, py::arg("pred"), py::arg("target"),
          py::arg("impl"), GilRelease());
}

}  // namespace hg
