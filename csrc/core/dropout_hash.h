// The dropout mask and scale, written once for every backend, exactly as the CPU kernel
// (cpu/layers.cpp, "cpu.dropout_splitmix64") computes them, so a GPU kernel that calls these
// gives the same mask and the same output bits for a (seed, p, n):
//
//   key       = mix64(seed)
//   bits(i)   = mix64(key + (i + 1) * golden) >> 32     (counter-based: element i alone)
//   keep(i)   = bits(i) >= floor(p * 2^32)             (integer compare; p * 2^32 exact in double)
//   scale     = float(1 / (1 - p)), divided in double
//   y_i       = x_i * (keep_i ? scale : 0)             dx_i = dy_i * (float(mask_i) * scale)
// The last line is spelled out because its exact form matters for bits: a dropped element is
// x * 0 (so -0 for negative x, NaN for an infinite x), not a literal 0.
// mix64 is the SplitMix64 finaliser (Steele, Lea, Flood 2014).
#pragma once
#include <cstdint>

#ifndef HG_HOST_DEVICE
#if defined(__HIP__) || defined(__CUDACC__)
#define HG_HOST_DEVICE __host__ __device__
#else
#define HG_HOST_DEVICE
#endif
#endif

namespace hg {

HG_HOST_DEVICE inline uint64_t dropout_mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

HG_HOST_DEVICE inline uint64_t dropout_key(uint64_t seed) { return dropout_mix64(seed); }

HG_HOST_DEVICE inline uint64_t dropout_threshold(float p) {
  return static_cast<uint64_t>(static_cast<double>(p) * 4294967296.0);
}

HG_HOST_DEVICE inline bool dropout_keep(uint64_t key, uint64_t i, uint64_t threshold) {
  return (dropout_mix64(key + (i + 1) * 0x9E3779B97F4A7C15ull) >> 32) >= threshold;
}

HG_HOST_DEVICE inline float dropout_scale(float p) {
  return static_cast<float>(1.0 / (1.0 - static_cast<double>(p)));
}

}  // namespace hg
