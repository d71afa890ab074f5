#include "bind.h"

namespace hg {

HG_BIND_OPS(optim) {
  ops.def("sgd_step", &sgd_step, py::arg("param"), py::arg("grad"), py::arg("momentum_buf"),
          py::arg("lr"), py::arg("momentum"), py::arg("weight_decay"), py::arg("nesterov"),
          py::arg("impl"), GilRelease());
  ops.def("adam_step", &adam_step, py::arg("param"), py::arg("grad"), py::arg("m"), py::arg("v"),
          py::arg("step"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"),
          py::arg("weight_decay"), py::arg("decoupled"), py::arg("impl"), GilRelease());
}

}  // namespace hg
