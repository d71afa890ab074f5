// The INT8 building blocks (quant_kernel.inc) compiled for avx2; this file's -m flags
// come from CMakeLists.txt by its name.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "quant_kernel.h"

namespace hg::cpu {
namespace avx2 {
#include "quant_kernel.inc"
}  // namespace avx2
const QIsaKernels qkernels_avx2 = avx2::kKernels;
}  // namespace hg::cpu
