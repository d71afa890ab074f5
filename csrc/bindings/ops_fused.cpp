#include "bind.h"

namespace hg {

HG_BIND_OPS(fused) {
  ops.def("conv2d_bias_act", &conv2d_bias_act, py::arg("x"), py::arg("w"), py::arg("bias"),
          py::arg("residual"), py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"),
          py::arg("activation"), py::arg("alpha"), py::arg("impl"), py::arg("out") = kNoOut,
          GilRelease());
  ops.def("linear_bias_act", &linear_bias_act, py::arg("x"), py::arg("w"), py::arg("bias"),
          py::arg("activation"), py::arg("alpha"), py::arg("impl"), py::arg("out") = kNoOut,
          GilRelease());
  ops.def("pack_linear_weight", &pack_linear_weight, py::arg("w"), py::arg("impl"), GilRelease());
  ops.def("linear_bias_act_packed", &linear_bias_act_packed, py::arg("x"), py::arg("packed"),
          py::arg("bias"), py::arg("n"), py::arg("activation"), py::arg("alpha"), py::arg("impl"),
          py::arg("out") = kNoOut, GilRelease());
  ops.def("conv2d_bias_act_packed", &conv2d_bias_act_packed, py::arg("x"), py::arg("packed"),
          py::arg("w_shape"), py::arg("bias"), py::arg("residual"), py::arg("stride"),
          py::arg("padding"), py::arg("dilation"), py::arg("activation"), py::arg("alpha"),
          py::arg("impl"), py::arg("out") = kNoOut, GilRelease());
  ops.def("cpu_gemm_panel_width", &cpu_gemm_panel_width);
}

}  // namespace hg
