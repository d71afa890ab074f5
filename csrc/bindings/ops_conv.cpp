#include "bind.h"

namespace hg {

HG_BIND_OPS(conv) {
  ops.def("conv2d", &conv2d, py::arg("x"), py::arg("w"), py::arg("bias"), py::arg("stride"),
          py::arg("padding"), py::arg("dilation"), py::arg("groups"), py::arg("impl"),
          py::arg("out") = kNoOut, GilRelease());
  ops.def("conv2d_backward_data", &conv2d_backward_data, py::arg("dy"), py::arg("w"),
          py::arg("x_shape"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
          py::arg("groups"), py::arg("impl"), GilRelease());
  ops.def("conv2d_backward_weight", &conv2d_backward_weight, py::arg("dy"), py::arg("x"),
          py::arg("w_shape"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
          py::arg("groups"), py::arg("impl"), GilRelease());
  ops.def("bias_add", &bias_add, py::arg("x"), py::arg("bias"), py::arg("impl"),
          py::arg("out") = kNoOut, GilRelease());
  ops.def("bias_backward", &bias_backward, py::arg("dy"), py::arg("impl"), GilRelease());
}

}  // namespace hg
