#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>

#include "../core/ops.h"

namespace py = pybind11;

// The small enums of the op front ends cross as strings: impl ("auto" | "handwritten" |
// "vendor") and an activation kind ("relu", ...). A string that names none is the front end's
// own ValueError (parse_impl / parse_activation); a value that is not a string is a TypeError.
namespace pybind11::detail {
template <class Enum, Enum (*parse)(const std::string&), const char* (*to_name)(Enum)>
struct hg_enum_caster {
  PYBIND11_TYPE_CASTER(Enum, const_name("str"));
  bool load(handle src, bool convert) {
    make_caster<std::string> text;
    if (!text.load(src, convert)) return false;
    value = parse(cast_op<const std::string&>(text));
    return true;
  }
  static handle cast(Enum v, return_value_policy, handle) { return str(to_name(v)).release(); }
};
template <>
struct type_caster<hg::Impl> : hg_enum_caster<hg::Impl, hg::parse_impl, hg::impl_name> {};
template <>
struct type_caster<hg::ActKind>
    : hg_enum_caster<hg::ActKind, hg::parse_activation, hg::activation_name> {};
}  // namespace pybind11::detail

namespace hg {

inline Shape to_shape(const std::vector<int64_t>& v) { return Shape(v.begin(), v.end()); }
using GilRelease = py::call_guard<py::gil_scoped_release>;
constexpr const Tensor* kNoOut = nullptr;  // the default of every op's out= argument

void bind_errors(py::module_& m);
void bind_tensor(py::module_& m);
void bind_runtime(py::module_& m);

// Each csrc/bindings/ops_<family>.cpp binds its front ends on hipgrad._C.ops inside
//   HG_BIND_OPS(family) { ops.def("name", &front_end, py::arg(...), ..., GilRelease()); }
// which registers the block; the module runs every registered block (bind_all_ops), so a new
// family's binding file needs no other edit.
using OpsBinder = void (*)(py::module_& ops);
bool add_ops_binder(OpsBinder binder);
void bind_all_ops(py::module_& ops);

}  // namespace hg

#define HG_BIND_OPS(family)                                                                \
  static void hg_bind_ops_##family(py::module_& ops);                                      \
  static const bool hg_bind_ops_registered_##family = ::hg::add_ops_binder(&hg_bind_ops_##family); \
  static void hg_bind_ops_##family(py::module_& ops)
