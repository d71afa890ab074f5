#include "bind.h"

namespace hg {

void bind_ops_activation(py::module_& ops) {
  ops.def("activation", &activation, py::arg("x"), py::arg("kind"), py::arg("alpha"),
          py::arg("impl"), py::arg("out") = kNoOut, GilRelease());
  ops.def("activation_backward", &activation_backward, py::arg("dy"), py::arg("x"), py::arg("y"),
          py::arg("kind"), py::arg("alpha"), py::arg("impl"), GilRelease());
}

}  // namespace hg
