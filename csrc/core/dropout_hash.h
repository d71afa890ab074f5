// The dropout mask, defined once for every backend: element i of a dropout call with seed s is kept
// iff dropout_keep(dropout_key(s), i, dropout_threshold(p)). The CPU and GPU kernels both call
// these functions, so a (seed, p, n) gives the same mask bit for bit on every device, and any
// element can be recomputed alone (counter-based: no generator state is carried between elements).
//
//   key       = mix64(seed)                        (nearby seeds give unrelated streams)
//   bits24(i) = mix64(key + (i + 1) * golden) >> 40 (24 uniform bits per element)
//   keep(i)   = bits24(i) >= ceil(p * 2^24)        (integer compare: no float rounding to differ)
//   scale     = 1 / (1 - p), one IEEE division     (kept values are x * scale; 0 when p == 1)
// mix64 is the SplitMix64 finaliser (Steele, Lea, Flood 2014), which passes BigCrush as a counter
// hash. P(keep) = 1 - ceil(p * 2^24) / 2^24, i.e. 1 - p up to 2^-24.
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
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

HG_HOST_DEVICE inline uint64_t dropout_key(uint64_t seed) { return dropout_mix64(seed); }

// 24 uniform bits for element i.
HG_HOST_DEVICE inline uint32_t dropout_bits24(uint64_t key, uint64_t i) {
  return static_cast<uint32_t>(dropout_mix64(key + (i + 1) * 0x9e3779b97f4a7c15ull) >> 40);
}

// ceil(p * 2^24) for p in [0, 1]; p * 2^24 is exact in float, so every compiler agrees.
HG_HOST_DEVICE inline uint32_t dropout_threshold(float p) {
  const float t = p * 16777216.f;
  const uint32_t floor_t = static_cast<uint32_t>(t);
  return static_cast<float>(floor_t) == t ? floor_t : floor_t + 1u;
}

HG_HOST_DEVICE inline bool dropout_keep(uint64_t key, uint64_t i, uint32_t threshold) {
  return dropout_bits24(key, i) >= threshold;
}

// The factor applied to kept elements; 0 when nothing is kept (p == 1).
HG_HOST_DEVICE inline float dropout_scale(float p) { return p < 1.f ? 1.f / (1.f - p) : 0.f; }

}  // namespace hg
