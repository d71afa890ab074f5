#include "bind.h"

namespace hg {

void bind_ops_conv(py::module_& ops) { (void)ops; }

}  // namespace hg
