#include "bind.h"

namespace hg {

HG_BIND_OPS(quant) {
  ops.def("quantize", &quantize, py::arg("x"), py::arg("scale"), py::arg("impl"),
          py::arg("out") = kNoOut, GilRelease());
  ops.def("qgemm", &qgemm, py::arg("xq"), py::arg("wq"), py::arg("x_scale"), py::arg("w_scale"),
          py::arg("bias"), py::arg("activation"), py::arg("alpha"), py::arg("impl"),
          py::arg("out") = kNoOut, GilRelease());
  ops.def("qconv2d", &qconv2d, py::arg("xq"), py::arg("wq"), py::arg("x_scale"),
          py::arg("w_scale"), py::arg("bias"), py::arg("stride"), py::arg("padding"),
          py::arg("dilation"), py::arg("groups"), py::arg("activation"), py::arg("alpha"),
          py::arg("impl"), py::arg("out") = kNoOut, py::arg("packed") = py::none(), GilRelease());
  ops.def("qpack_weight", &qpack_weight, py::arg("wq"), py::arg("impl"), GilRelease());
  ops.def("cpu_qpack_tag", &cpu_qpack_tag);
}

}  // namespace hg
