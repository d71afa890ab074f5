#include "bind.h"

namespace hg {

void bind_ops_activation(py::module_& ops) { (void)ops; }

}  // namespace hg
