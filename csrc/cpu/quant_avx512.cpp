// INT8 dot-product block compiled for avx512 (flags from CMakeLists.txt by file name).
#include "quant_kernel.h"

namespace hg::cpu::avx512 {
#include "quant_kernel.inc"
}  // namespace hg::cpu::avx512
