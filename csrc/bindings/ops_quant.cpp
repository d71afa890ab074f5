#include "bind.h"

namespace hg {

void bind_ops_quant(py::module_& ops) {
  ops.def("quantize", [](const Tensor& x, float scale, const std::string& impl, const Tensor* out) {
    return quantize(x, scale, parse_impl(impl), out);
  }, py::arg("x"), py::arg("scale"), py::arg("impl"), py::arg("out") = static_cast<const Tensor*>(nullptr), GilRelease());
  ops.def("qgemm", [](const Tensor& xq, const Tensor& wq, float x_scale, const Tensor& w_scale,
                      const OptTensor& bias, const std::string& activation, float alpha,
                      const std::string& impl, const Tensor* out) {
    return qgemm(xq, wq, x_scale, w_scale, opt(bias), activation, alpha, parse_impl(impl), out);
  }, py::arg("xq"), py::arg("wq"), py::arg("x_scale"), py::arg("w_scale"), py::arg("bias"),
     py::arg("activation"), py::arg("alpha"), py::arg("impl"), py::arg("out") = static_cast<const Tensor*>(nullptr), GilRelease());
  ops.def("qconv2d", [](const Tensor& xq, const Tensor& wq, float x_scale, const Tensor& w_scale,
                        const OptTensor& bias, Pair stride, Pair padding, Pair dilation,
                        int64_t groups, const std::string& activation, float alpha,
                        const std::string& impl, const Tensor* out) {
    return qconv2d(xq, wq, x_scale, w_scale, opt(bias), stride, padding, dilation, groups,
                   activation, alpha, parse_impl(impl), out);
  }, py::arg("xq"), py::arg("wq"), py::arg("x_scale"), py::arg("w_scale"), py::arg("bias"),
     py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"),
     py::arg("activation"), py::arg("alpha"), py::arg("impl"), py::arg("out") = static_cast<const Tensor*>(nullptr), GilRelease());
}

}  // namespace hg
