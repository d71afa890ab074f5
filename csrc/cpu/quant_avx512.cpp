// The INT8 building blocks (quant_kernel.inc) compiled for avx512; this file's -m flags
// come from CMakeLists.txt by its name.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "quant_kernel.h"

namespace hg::cpu {
namespace avx512 {
#include "quant_kernel.inc"
}  // namespace avx512
const QIsaKernels qkernels_avx512 = avx512::kKernels;
}  // namespace hg::cpu
