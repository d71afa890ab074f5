#include "bind.h"

namespace hg {

namespace {
// The kind crosses as a string; an unknown one is parse_binary's ValueError.
Tensor binary_by_name(const Tensor& a, const Tensor& b, const std::string& kind, Impl impl,
                      const Tensor* out) {
  return binary(a, b, parse_binary(kind), impl, out);
}
}  // namespace

HG_BIND_OPS(graph) {
  ops.def("binary", &binary_by_name, py::arg("a"), py::arg("b"), py::arg("kind"), py::arg("impl"),
          py::arg("out") = kNoOut, GilRelease());
  ops.def("concat", &concat, py::arg("tensors"), py::arg("axis"), py::arg("impl"),
          py::arg("out") = kNoOut, GilRelease());
  ops.def("split", &split, py::arg("x"), py::arg("axis"), py::arg("sizes"), py::arg("impl"),
          GilRelease());
  ops.def("transpose", &transpose, py::arg("x"), py::arg("perm"), py::arg("impl"),
          py::arg("out") = kNoOut, GilRelease());
  ops.def("reduce_mean", &reduce_mean, py::arg("x"), py::arg("axes"), py::arg("keepdims"),
          py::arg("impl"), py::arg("out") = kNoOut, GilRelease());
  ops.def("pad2d", &pad2d, py::arg("x"), py::arg("pads"), py::arg("value"), py::arg("impl"),
          py::arg("out") = kNoOut, GilRelease());
}

}  // namespace hg
