#include "bind.h"

namespace hg {

void bind_ops_layers(py::module_& ops) { (void)ops; }

}  // namespace hg
