#include "bind.h"

namespace hg {

HG_BIND_OPS(attention) {
  ops.def("layer_norm", &layer_norm, py::arg("x"), py::arg("weight"), py::arg("bias"),
          py::arg("eps"), py::arg("impl"), GilRelease());
  ops.def("layer_norm_backward", &layer_norm_backward, py::arg("dy"), py::arg("x"),
          py::arg("weight"), py::arg("mean"), py::arg("rstd"), py::arg("impl"), GilRelease());
  ops.def("attention", &attention, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("causal"),
          py::arg("scale"), py::arg("kv_len"), py::arg("kv_layout"), py::arg("impl"),
          py::arg("out") = kNoOut, GilRelease());
  ops.def("attention_backward", &attention_backward, py::arg("dout"), py::arg("q"), py::arg("k"),
          py::arg("v"), py::arg("out"), py::arg("lse"), py::arg("causal"), py::arg("scale"),
          py::arg("impl"), GilRelease());
  ops.def("bmm", &bmm, py::arg("a"), py::arg("b"), py::arg("trans_a"), py::arg("trans_b"),
          py::arg("alpha"), py::arg("impl"), py::arg("out") = kNoOut, GilRelease());
  ops.def("sum_squares", &sum_squares, py::arg("tensors"), py::arg("impl"), GilRelease());
  ops.def("scale_", &scale_, py::arg("x"), py::arg("alpha"), py::arg("impl"), GilRelease());
}

}  // namespace hg
