// Function multi-versioning for CPU kernels written once in portable C++: HG_CPU_CLONES makes
// GCC (12+, x86-64) compile a function for x86-64-v4 (AVX-512), v3 (AVX2) and the baseline and
// pick one when the library loads; elsewhere it expands to nothing. HG_INLINE forces the
// small helpers such a function calls into each clone, so they get its instruction set.
// Used by conv_depthwise.cpp and pool.cpp.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#define HG_CPU_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define HG_CPU_CLONES
#endif
#define HG_INLINE inline __attribute__((always_inline))
