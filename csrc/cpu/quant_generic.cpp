// INT8 dot-product block compiled for generic (flags from CMakeLists.txt by file name).
#include "quant_kernel.h"

namespace hg::cpu::generic {
#include "quant_kernel.inc"
}  // namespace hg::cpu::generic
