#include "bind.h"

namespace hg {

HG_BIND_OPS(layers) {
  ops.def("add", &add, py::arg("a"), py::arg("b"), py::arg("alpha"), py::arg("impl"),
          py::arg("out") = kNoOut, GilRelease());
  ops.def("add_", &add_, py::arg("a"), py::arg("b"), py::arg("alpha"), py::arg("impl"),
          GilRelease());
  ops.def("fill_", &fill_, py::arg("t"), py::arg("value"), py::arg("impl"), GilRelease());
  ops.def("batch_norm", &batch_norm, py::arg("x"), py::arg("gamma"), py::arg("beta"),
          py::arg("running_mean"), py::arg("running_var"), py::arg("training"),
          py::arg("momentum"), py::arg("eps"), py::arg("impl"), py::arg("out") = kNoOut,
          GilRelease());
  ops.def("batch_norm_backward", &batch_norm_backward, py::arg("dy"), py::arg("x"),
          py::arg("gamma"), py::arg("save_mean"), py::arg("save_invstd"), py::arg("training"),
          py::arg("impl"), GilRelease());
  ops.def("dropout", &dropout, py::arg("x"), py::arg("p"), py::arg("seed"), py::arg("impl"),
          GilRelease());
  ops.def("dropout_backward", &dropout_backward, py::arg("dy"), py::arg("mask"), py::arg("p"),
          py::arg("impl"), GilRelease());
  ops.def("embedding", &embedding, py::arg("weight"), py::arg("idx"), py::arg("impl"),
          py::arg("out") = kNoOut, GilRelease());
  ops.def("embedding_backward", &embedding_backward, py::arg("dy"), py::arg("idx"),
          py::arg("num"), py::arg("impl"), GilRelease());
}

}  // namespace hg
