// The INT8 building blocks (quant_kernel.inc) compiled for generic; this file's -m flags
// come from CMakeLists.txt by its name.
#include <algorithm>
#include <cmath>
#include <cstring>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "quant_kernel.h"

namespace hg::cpu {
namespace generic {
#include "quant_kernel.inc"
}  // namespace generic
const QIsaKernels qkernels_generic = generic::kKernels;
}  // namespace hg::cpu
