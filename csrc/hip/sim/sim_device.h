// The device half of the simulated HIP device: what a .hip kernel source needs to compile as host
// C++ (csrc/hip/sim/rewrite.py has replaced its launches and __shared__ declarations) and run on
// the fiber scheduler of sim.cpp. Each thread of a block is a fiber; __syncthreads() and the warp
// operations (shuffles, votes) switch fibers and synchronise only the threads they concern: the
// whole block, or the lanes of one wavefront of warp_size() lanes.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

#include "sim_runtime.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
#define __align__(n) alignas(n)

struct uint3 {
  unsigned x, y, z;
};

// The wavefront width of this process (64 or 32); set before the first launch.
extern int warpSize;

namespace hg::sim {

// Where a kernel is launched (file:line and the kernel expression), written by rewrite.py.
struct Site {
  const char* file;
  int line;
  const char* name;
};

struct BlockState;
struct ThreadState {
  uint3 idx;          // threadIdx
  int linear;         // threadIdx flattened, x fastest
  BlockState* block;
};
struct BlockState {
  uint3 idx, dim, grid;  // blockIdx, blockDim, gridDim
};

extern thread_local ThreadState* tls_thread __attribute__((tls_model("initial-exec")));

// Block-wide barrier with a vote: returns the number of live threads whose pred was nonzero.
int barrier_count(int pred);
// Warp exchange: every live lane of the caller's wavefront contributes `value` (up to 8 bytes);
// returns what `mode` reads (see sim.cpp). Lanes that exited read as all-ones bytes (NaN).
enum WarpMode : int { kShfl, kShflXor, kShflDown, kShflUp, kBallot };
uint64_t warp_exchange(uint64_t value, WarpMode mode, int arg, int width);
int lane_id();

void* shared_static(const void* key, size_t bytes, size_t align, const char* name);
void* shared_dynamic(size_t align);

template <class T>
inline T shuffle(T v, WarpMode mode, int arg, int width) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "shuffles move up to 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  bits = warp_exchange(bits, mode, arg, width);
  T r;
  std::memcpy(&r, &bits, sizeof(T));
  return r;
}

// ---- launches: kernel | Launch(grid, block, shmem, stream, site)(args...) ----------------------
struct LaunchConfig {
  dim3 grid, block;
  size_t shmem = 0;
  hipStream_t stream = nullptr;
  const Site* site = nullptr;
};
// Runs body(closure) for every thread of every block; any fault or misuse is recorded as the
// launch's error (hipGetLastError) naming the kernel.
void launch(const LaunchConfig& cfg, void (*body)(void*), void* closure);

template <class F>
struct KernelLaunch {
  LaunchConfig cfg;
  F call;  // calls the kernel with lvalues of the launch's arguments
  template <class... A>
  void operator()(A&&... a) const {
    struct Closure {
      const F* call;
      std::tuple<std::decay_t<A>...> args;
    };
    Closure c{&call, std::tuple<std::decay_t<A>...>(std::forward<A>(a)...)};
    launch(cfg, [](void* p) {
      auto* cl = static_cast<Closure*>(p);
      std::apply(*cl->call, cl->args);  // the kernel takes its own copy of each argument
    }, &c);
  }
};

struct Launch {
  LaunchConfig cfg;
  Launch(dim3 g, dim3 b, const Site& s) : cfg{g, b, 0, nullptr, &s} {}
  Launch(dim3 g, dim3 b, size_t shmem, const Site& s) : cfg{g, b, shmem, nullptr, &s} {}
  Launch(dim3 g, dim3 b, size_t shmem, hipStream_t st, const Site& s) : cfg{g, b, shmem, st, &s} {}
  template <class F>
  KernelLaunch<F> kernel(F f) const { return {cfg, f}; }
};

inline int8_t sbyte(int v, int i) { return int8_t(uint32_t(v) >> (8 * i)); }

}  // namespace hg::sim

#define threadIdx (static_cast<const uint3&>(::hg::sim::tls_thread->idx))
#define blockIdx (static_cast<const uint3&>(::hg::sim::tls_thread->block->idx))
#define blockDim (static_cast<const uint3&>(::hg::sim::tls_thread->block->dim))
#define gridDim (static_cast<const uint3&>(::hg::sim::tls_thread->block->grid))

// ---- synchronisation and votes ------------------------------------------------------------------
inline void __syncthreads() { (void)::hg::sim::barrier_count(0); }
inline int __syncthreads_count(int p) { return ::hg::sim::barrier_count(p); }
inline int __syncthreads_or(int p) { return ::hg::sim::barrier_count(p) > 0; }
inline int __syncthreads_and(int p) {
  return ::hg::sim::barrier_count(!p) == 0;
}
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

inline unsigned __lane_id() { return unsigned(::hg::sim::lane_id()); }
template <class T>
inline T __shfl(T v, int src, int width = warpSize) { return ::hg::sim::shuffle(v, ::hg::sim::kShfl, src, width); }
template <class T>
inline T __shfl_xor(T v, int mask, int width = warpSize) { return ::hg::sim::shuffle(v, ::hg::sim::kShflXor, mask, width); }
template <class T>
inline T __shfl_down(T v, unsigned d, int width = warpSize) { return ::hg::sim::shuffle(v, ::hg::sim::kShflDown, int(d), width); }
template <class T>
inline T __shfl_up(T v, unsigned d, int width = warpSize) { return ::hg::sim::shuffle(v, ::hg::sim::kShflUp, int(d), width); }
inline unsigned long long __ballot(int p) {
  return ::hg::sim::warp_exchange(p != 0, ::hg::sim::kBallot, 0, warpSize);
}
inline int __any(int p) { return __ballot(p) != 0; }
inline int __all(int p) {
  return __ballot(!p) == 0;
}
inline unsigned long long __activemask() { return __ballot(1); }

// ---- atomics (device-scope; blocks may run on several host threads) -----------------------------
template <class T>
inline T hg_sim_atomic_cas_op(T* p, T v, int op) {
  using U = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  U* q = reinterpret_cast<U*>(p);
  U old = __atomic_load_n(q, __ATOMIC_RELAXED);
  for (;;) {
    T o;
    std::memcpy(&o, &old, sizeof(T));
    T n = op == 0 ? T(o + v) : op == 1 ? (v > o ? v : o) : (v < o ? v : o);
    U nb;
    std::memcpy(&nb, &n, sizeof(T));
    if (__atomic_compare_exchange_n(q, &old, nb, true, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) return o;
  }
}
inline float atomicAdd(float* p, float v) { return hg_sim_atomic_cas_op(p, v, 0); }
inline double atomicAdd(double* p, double v) { return hg_sim_atomic_cas_op(p, v, 0); }
template <class T, std::enable_if_t<std::is_integral_v<T>, int> = 0>
inline T atomicAdd(T* p, T v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
template <class T, std::enable_if_t<std::is_integral_v<T>, int> = 0>
inline T atomicSub(T* p, T v) { return __atomic_fetch_sub(p, v, __ATOMIC_SEQ_CST); }
template <class T>
inline T atomicMax(T* p, T v) { return hg_sim_atomic_cas_op(p, v, 1); }
template <class T>
inline T atomicMin(T* p, T v) { return hg_sim_atomic_cas_op(p, v, 2); }
template <class T, std::enable_if_t<std::is_integral_v<T>, int> = 0>
inline T atomicOr(T* p, T v) { return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST); }
template <class T, std::enable_if_t<std::is_integral_v<T>, int> = 0>
inline T atomicAnd(T* p, T v) { return __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST); }
template <class T>
inline T atomicExch(T* p, T v) {
  T r;
  __atomic_exchange(p, &v, &r, __ATOMIC_SEQ_CST);
  return r;
}
template <class T>
inline T atomicCAS(T* p, T expected, T desired) {
  __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  return expected;  // the old value either way
}

// ---- intrinsics ---------------------------------------------------------------------------------
inline unsigned __umulhi(unsigned a, unsigned b) { return unsigned((uint64_t(a) * b) >> 32); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return (unsigned long long)((unsigned __int128)a * b >> 64);
}
inline int __mulhi(int a, int b) { return int((int64_t(a) * b) >> 32); }
inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __popcll(unsigned long long v) { return __builtin_popcountll(v); }
inline int __ffs(unsigned v) { return __builtin_ffs(int(v)); }
inline int __ffsll(unsigned long long v) { return __builtin_ffsll((long long)v); }
inline int __clz(unsigned v) { return v ? __builtin_clz(v) : 32; }
inline int __clzll(unsigned long long v) { return v ? __builtin_clzll(v) : 64; }
inline int __float_as_int(float f) { int i; std::memcpy(&i, &f, 4); return i; }
inline unsigned __float_as_uint(float f) { unsigned i; std::memcpy(&i, &f, 4); return i; }
inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline float __uint_as_float(unsigned i) { float f; std::memcpy(&f, &i, 4); return f; }
// c + the dot product of the four signed bytes of a and b, in 32-bit wrap-around arithmetic
// (NVIDIA's __dp4a; AMD's v_dot4_i32_i8 / __builtin_amdgcn_sdot4 without clamp). With clamp the
// sum saturates to int32, as v_dot4_i32_i8 with clamp does.
inline int __dp4a(int a, int b, int c) {
  uint32_t acc = uint32_t(c);
  for (int i = 0; i < 4; ++i)
    acc += uint32_t(int32_t(::hg::sim::sbyte(a, i)) * int32_t(::hg::sim::sbyte(b, i)));
  return int32_t(acc);
}
inline int hg_sim_sdot4(int a, int b, int c, bool clamp) {
  if (!clamp) return __dp4a(a, b, c);
  int64_t acc = c;
  for (int i = 0; i < 4; ++i) acc += int64_t(::hg::sim::sbyte(a, i)) * ::hg::sim::sbyte(b, i);
  return acc > INT32_MAX ? INT32_MAX : acc < INT32_MIN ? INT32_MIN : int(acc);
}
#define __builtin_amdgcn_sdot4(a, b, c, clamp) hg_sim_sdot4((a), (b), (c), (clamp))
template <class T>
inline T __ldg(const T* p) { return *p; }
// Fast-math variants: the host's accurate functions (the device's are at most as accurate).
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __sinf(float x) { return std::sin(x); }
inline float __cosf(float x) { return std::cos(x); }
inline float __powf(float x, float y) { return std::pow(x, y); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __frcp_rn(float x) { return 1.f / x; }
inline float __fsqrt_rn(float x) { return std::sqrt(x); }
inline float rsqrtf(float x) { return 1.f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __saturatef(float x) { return x < 0.f ? 0.f : x > 1.f ? 1.f : x; }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }

// ---- vector types -------------------------------------------------------------------------------
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) int2 { int x, y; };
struct alignas(4) char4 { signed char x, y, z, w; };
struct alignas(4) uchar4 { unsigned char x, y, z, w; };
inline char4 make_char4(signed char x, signed char y, signed char z, signed char w) { return {x, y, z, w}; }
struct alignas(16) int4 { int x, y, z, w; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline int2 make_int2(int x, int y) { return {x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
inline uint3 make_uint3(unsigned x, unsigned y, unsigned z) { return {x, y, z}; }
