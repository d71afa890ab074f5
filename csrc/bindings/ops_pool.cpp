#include "bind.h"

namespace hg {

HG_BIND_OPS(pool) {
  ops.def("max_pool2d", &max_pool2d, py::arg("x"), py::arg("kernel"), py::arg("stride"),
          py::arg("padding"), py::arg("impl"), py::arg("out") = kNoOut,
          py::arg("with_argmax") = true, py::arg("ceil_mode") = false, GilRelease());
  ops.def("max_pool2d_backward", &max_pool2d_backward, py::arg("dy"), py::arg("argmax"),
          py::arg("x_shape"), py::arg("impl"), GilRelease());
  ops.def("avg_pool2d", &avg_pool2d, py::arg("x"), py::arg("kernel"), py::arg("stride"),
          py::arg("padding"), py::arg("impl"), py::arg("out") = kNoOut,
          py::arg("ceil_mode") = false, py::arg("count_include_pad") = true, GilRelease());
  ops.def("avg_pool2d_backward", &avg_pool2d_backward, py::arg("dy"), py::arg("x_shape"),
          py::arg("kernel"), py::arg("stride"), py::arg("padding"), py::arg("impl"),
          py::arg("ceil_mode") = false, py::arg("count_include_pad") = true, GilRelease());
}

}  // namespace hg
