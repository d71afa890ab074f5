#include "bind.h"

namespace hg {

void bind_ops_gemm(py::module_& ops) {
  ops.def(
      "gemm",
      [](const Tensor& a, const Tensor& b, const OptTensor& c, bool trans_a, bool trans_b,
         float alpha, float beta, const std::string& impl, const Tensor* out) {
        return gemm(a, b, opt(c), trans_a, trans_b, alpha, beta, parse_impl(impl), out);
      },
      py::arg("a"), py::arg("b"), py::arg("c"), py::arg("trans_a"), py::arg("trans_b"),
      py::arg("alpha"), py::arg("beta"), py::arg("impl"), py::arg("out") = static_cast<const Tensor*>(nullptr), GilRelease());
}

}  // namespace hg
