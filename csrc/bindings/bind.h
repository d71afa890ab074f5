#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>

#include "../core/ops.h"

namespace py = pybind11;

namespace hg {

using OptTensor = std::optional<Tensor>;
inline Tensor opt(const OptTensor& t) { return t ? *t : Tensor(); }
inline Shape to_shape(const std::vector<int64_t>& v) { return Shape(v.begin(), v.end()); }
using GilRelease = py::call_guard<py::gil_scoped_release>;

void bind_errors(py::module_& m);
void bind_tensor(py::module_& m);
void bind_runtime(py::module_& m);
void bind_ops_gemm(py::module_& ops);
void bind_ops_conv(py::module_& ops);
void bind_ops_activation(py::module_& ops);
void bind_ops_pool(py::module_& ops);
void bind_ops_loss(py::module_& ops);
void bind_ops_optim(py::module_& ops);
void bind_ops_layers(py::module_& ops);
void bind_ops_quant(py::module_& ops);
void bind_ops_fused(py::module_& ops);
void bind_ops_attention(py::module_& ops);

}  // namespace hg
