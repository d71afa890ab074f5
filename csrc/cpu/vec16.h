// 16 floats as one GCC vector (one AVX-512 register; two or four narrower ones elsewhere) and its
// unaligned load and store: the register type of the direct convolution kernels.
#pragma once
#include "cpu_clones.h"

// A vector argument's ABI changed in GCC 4.x for these types; everything here stays inside the
// library, so the note about it says nothing that applies.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace hg::cpu {

using vf16 = float __attribute__((vector_size(64), aligned(4), may_alias));
HG_INLINE vf16 load16(const float* p) { return *reinterpret_cast<const vf16*>(p); }
HG_INLINE void store16(float* p, vf16 v) { *reinterpret_cast<vf16*>(p) = v; }

}  // namespace hg::cpu
