// INT8 dot-product block compiled for avx2 (flags from CMakeLists.txt by file name).
#include "quant_kernel.h"

namespace hg::cpu::avx2 {
#include "quant_kernel.inc"
}  // namespace hg::cpu::avx2
