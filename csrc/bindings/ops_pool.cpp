#include "bind.h"

namespace hg {

void bind_ops_pool(py::module_& ops) { (void)ops; }

}  // namespace hg
