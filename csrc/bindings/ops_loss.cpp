#include "bind.h"

namespace hg {

void bind_ops_loss(py::module_& ops) { (void)ops; }

}  // namespace hg
