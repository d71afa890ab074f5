#include "bind.h"

namespace hg {

HG_BIND_OPS(gemm) {
  ops.def("gemm", &gemm, py::arg("a"), py::arg("b"), py::arg("c"), py::arg("trans_a"),
          py::arg("trans_b"), py::arg("alpha"), py::arg("beta"), py::arg("impl"),
          py::arg("out") = kNoOut, GilRelease());
}

}  // namespace hg
