// The INT8 building blocks (quant_kernel.inc) compiled for avx512_vnni; this file's -m flags
// come from CMakeLists.txt by its name.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "quant_kernel.h"

namespace hg::cpu {
namespace avx512vnni {
#include "quant_kernel.inc"
}  // namespace avx512vnni
const QIsaKernels qkernels_avx512_vnni = avx512vnni::kKernels;
}  // namespace hg::cpu
