#include "bind.h"

namespace hg {

HG_BIND_OPS(activation) {
  ops.def("activation", &activation, py::arg("x"), py::arg("kind"), py::arg("alpha"),
          py::arg("impl"), py::arg("out") = kNoOut, GilRelease());
  ops.def("activation_backward", &activation_backward, py::arg("dy"), py::arg("x"), py::arg("y"),
          py::arg("kind"), py::arg("alpha"), py::arg("impl"), GilRelease());
}

}  // namespace hg
