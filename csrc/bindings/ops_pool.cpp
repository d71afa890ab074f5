#include "bind.h"

namespace hg {

HG_BIND_OPS(pool) {
  ops.def("max_pool2d", &max_pool2d, py::arg("x"), py::arg("kernel"), py::arg("stride"),
          py::arg("padding"), py::arg("impl"), py::arg("out") = kNoOut,
          py::arg("with_argmax") = true, GilRelease());
  ops.def("max_pool2d_backward", &max_pool2d_backward, py::arg("dy"), py::arg("argmax"),
          py::arg("x_shape"), py::arg("impl"), GilRelease());
  ops.def("avg_pool2d", &avg_pool2d, py::arg("x"), py::arg("kernel"), py::arg("stride"),
          py::arg("padding"), py::arg("impl"), py::arg("out") = kNoOut, GilRelease());
  ops.def("avg_pool2d_backward", &avg_pool2d_backward, py::arg("dy"), py::arg("x_shape"),
          py::arg("kernel"), py::arg("stride"), py::arg("padding"), py::arg("impl"),
          GilRelease());
}

}  // namespace hg
