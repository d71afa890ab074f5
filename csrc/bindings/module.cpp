// pybind11 module hipgrad._C: the Tensor, the device functions and the op table, nothing else.
#include <vector>

#include "bind.h"

namespace hg {

namespace {
std::vector<OpsBinder>& binders() {
  static std::vector<OpsBinder> list;
  return list;
}
}  // namespace

bool add_ops_binder(OpsBinder binder) {
  binders().push_back(binder);
  return true;
}

void bind_all_ops(py::module_& ops) {
  for (OpsBinder binder : binders()) binder(ops);
}

}  // namespace hg

PYBIND11_MODULE(_C, m) {
  m.doc() = "hipgrad native core";
  hg::bind_errors(m);
  hg::bind_tensor(m);
  hg::bind_runtime(m);
  py::module_ ops = m.def_submodule("ops", "the op table");
  hg::bind_all_ops(ops);
}
