// Shared pieces of the handwritten GPU kernels outside GEMM and convolution (activation.hip,
// pool.hip, loss.hip, optim.hip, layers.hip, layers_batch_norm.hip, conv_bias.hip, quant.hip),
// and the handwritten entries the vendor wrappers (vendor/*.cpp) call for what their library
// lacks.
//
// Host side (any compiler): the current device and its hipgrad stream, scratch memory from the
// caching allocator (freed in stream order), grid sizing, and Path, which selects between a
// kernel's fast code and its simple reference (v0) code, registered as a reference kernel
// (HG_REGISTER_REFERENCE) so tests and benches can force it by name and compare.
// Device side (hipcc / nvcc only): the forward activation formulas (fused epilogues use them too),
// warp and block reductions that are correct at 32 and 64 lanes, a multiply-high integer divider,
// and the two-stage per-channel sum used by bias_backward and batch norm.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "../core/ops.h"
#include "activation_device.h"  // act_forward<K>, sigmoid_f: the device activation formulas
#include "platform.h"

namespace hg::gpu {

// ---- host helpers ------------------------------------------------------------------------------
inline int current_device() {
  int d = 0;
  HG_GPU_CHECK(hipGetDevice(&d));
  return d;
}
inline hipStream_t current_stream() { return stream(current_device()); }

// Device memory for intermediate results; released when the Tensor goes, which is safe because all
// hipgrad work is ordered on one stream per device.
inline Tensor scratch(int64_t n, DType dtype = DType::f32) {
  return empty({n}, dtype, Device{Device::Kind::gpu, current_device()});
}

// Which code an entry point with a reference twin runs: the fast kernels, or the simple v0 ones.
enum class Path : int8_t { fast, reference };

constexpr int kThreads = 256;       // every kernel here: a multiple of 64, so warps are whole
constexpr int64_t kMaxGrid = 65535;  // grid-stride loops cover the rest

// Blocks for `work` items at `per_block` each, at most kMaxGrid (grid-stride loops do the rest).
inline unsigned blocks_for(int64_t work, int64_t per_block = kThreads) {
  const int64_t blocks = (work + per_block - 1) / per_block;
  return static_cast<unsigned>(std::clamp<int64_t>(blocks, 1, kMaxGrid));
}
inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// ---- handwritten entries for the vendor wrappers -------------------------------------------------
void activation_handwritten(const ActivationArgs& a);
void activation_backward_handwritten(const ActivationBackwardArgs& a);
void bias_add_handwritten(const BiasAddArgs& a);  // a.x may equal a.y (in place)
// pool.hip: for the geometries the vendor pooling does not express (ceil mode, padding excluded)
void avg_pool2d_gpu(const AvgPoolArgs& a);
void avg_pool2d_backward_gpu(const AvgPoolBackwardArgs& a);
void qgemm_handwritten(const QGemmArgs& a);
// a.y = the qgemm epilogue (dequantize, bias, activation) of acc, the row-major (M, N) int32 GEMM.
void qgemm_epilogue_handwritten(const QGemmArgs& a, const int32_t* acc);
// y viewed as (outer, C, inner): y = act(y + bias[c] + residual) in place (fused.hip), for the
// vendor paths of conv2d_bias_act / linear_bias_act where the library cannot apply the epilogue
// itself. residual: y's shape, disjoint from y, or nullptr.
void fused_epilogue_pass(const FusedEpilogue& e, float* y, int64_t outer, int64_t C,
                         int64_t inner, const float* residual = nullptr);
// conv2d_bias_act's residual for a path that writes the convolution into y before adding it:
// a.residual itself, or, when it is y (out= aliased it), a copy made in `kept` first.
const float* residual_kept_aside(const ConvBiasActArgs& a, Tensor* kept);

}  // namespace hg::gpu

#if defined(__HIP__) || defined(__CUDACC__) || defined(HIPGRAD_SIM_DEVICE_CODE)
namespace hg::gpu {

template <class T>
__device__ inline T imin(T a, T b) { return a < b ? a : b; }

// Sum over the warp; the result is valid in lane 0.
template <class T>
__device__ inline T warp_sum(T v) {
  for (int o = warpSize / 2; o > 0; o /= 2) v += HG_SHFL_DOWN(v, o);
  return v;
}
// Max over the warp, valid in every lane.
__device__ inline float warp_max(float v) {
  for (int o = warpSize / 2; o > 0; o /= 2) v = fmaxf(v, HG_SHFL_XOR(v, o));
  return v;
}
// Sum over the warp, valid in every lane.
__device__ inline float warp_allsum(float v) {
  for (int o = warpSize / 2; o > 0; o /= 2) v += HG_SHFL_XOR(v, o);
  return v;
}

// Sum over the block (blockDim.x a multiple of warpSize); valid in thread 0. The order is fixed by
// blockDim and warpSize, so a result is the same on every run. smem: at least 32 elements.
template <class T>
__device__ inline T block_sum(T v, T* smem) {
  const int lane = threadIdx.x % warpSize, warp = threadIdx.x / warpSize;
  const int nwarps = blockDim.x / warpSize;
  v = warp_sum(v);
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  T r = T(0);
  if (warp == 0) r = warp_sum(lane < nwarps ? smem[lane] : T(0));
  __syncthreads();
  return r;
}
// Max over the block, valid in every thread.
__device__ inline float block_max(float v, float* smem) {
  const int lane = threadIdx.x % warpSize, warp = threadIdx.x / warpSize;
  const int nwarps = blockDim.x / warpSize;
  v = warp_max(v);
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  float r = -INFINITY;
  for (int k = 0; k < nwarps; ++k) r = fmaxf(r, smem[k]);
  __syncthreads();
  return r;
}
// Sum over the block, valid in every thread (same fixed order in each).
__device__ inline float block_allsum(float v, float* smem) {
  const int lane = threadIdx.x % warpSize, warp = threadIdx.x / warpSize;
  const int nwarps = blockDim.x / warpSize;
  v = warp_sum(v);
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  float r = 0.f;
  for (int k = 0; k < nwarps; ++k) r += smem[k];
  __syncthreads();
  return r;
}

// Integer division of indices. Div32: n / d for 0 <= n < 2^31 and 1 <= d < 2^31 with one
// multiply-high and a shift (Granlund-Montgomery magic number); Div64: plain division for
// tensors of 2^31 elements or more. Kernels take the divider as a template parameter.
struct Div32 {
  using Index = uint32_t;
  uint32_t d = 1, magic = 1, shift = 0;
  explicit Div32(int64_t divisor) : d(static_cast<uint32_t>(divisor)) {
    while (shift < 31 && (uint64_t(1) << shift) < d) ++shift;
    magic = static_cast<uint32_t>(((uint64_t(1) << 32) * ((uint64_t(1) << shift) - d)) / d + 1);
  }
  __device__ uint32_t div(uint32_t n) const { return (__umulhi(n, magic) + n) >> shift; }
};
struct Div64 {
  using Index = int64_t;
  int64_t d = 1;
  explicit Div64(int64_t divisor) : d(divisor) {}
  __device__ int64_t div(int64_t n) const { return n / d; }
};
// Calls launch(Div32(1)) when every index below `total` fits Div32, else launch(Div64(1)); the
// callee takes the divider type from its argument: [&](auto tag) { using D = decltype(tag); ... }.
template <class Launch>
void with_divider(int64_t total, Launch&& launch) {
  if (total < (int64_t(1) << 31)) {
    launch(Div32(1));
  } else {
    launch(Div64(1));
  }
}

// ---- per-channel sums over a tensor viewed as (outer, C, inner) --------------------------------
// out.p[v][c] = out.scale[v] * sum over (o, i) of the v-th value f adds for element (o, c, i).
// F: a struct with `__device__ void operator()(int64_t offset, int64_t c, float (&acc)[NV]) const`,
// offset = (o*C + c)*inner + i. Two stages, no atomics, so results are deterministic:
//   planar (inner >= kPlanarMin): block (s, c) sums one chunk of channel c's outer*inner elements,
//     consecutive threads on consecutive i (coalesced); partials[v][c][s];
//   rows (small inner, e.g. (N, C) matrices): thread t owns column t of the (outer, C*inner) view
//     and sums a chunk of rows (coalesced across t); partials[v][c][i][s];
//   finalize: one thread per channel adds its partials in a fixed order, in double.
// v0: one thread per channel walks all its elements in order, in double.
template <int NV>
struct ChannelOut {
  float* p[NV];
  float scale[NV];
};
constexpr int64_t kPlanarMin = 32;

template <int NV, class F>
__global__ void channel_partials_planar(F f, int64_t outer, int64_t C, int64_t inner, int64_t chunk,
                                        int64_t splits, float* partials) {
  __shared__ float smem[32];
  const int64_t M = outer * inner, s = blockIdx.x;
  const int64_t step_o = blockDim.x / inner, step_i = blockDim.x - step_o * inner;
  for (int64_t c = blockIdx.y; c < C; c += gridDim.y) {
    const int64_t j1 = imin(s * chunk + chunk, M);
    int64_t j = s * chunk + threadIdx.x;
    int64_t o = j / inner, i = j - o * inner;
    float acc[NV] = {};
    for (; j < j1; j += blockDim.x) {
      f((o * C + c) * inner + i, c, acc);
      o += step_o;
      i += step_i;
      if (i >= inner) { i -= inner; ++o; }
    }
    for (int v = 0; v < NV; ++v) {
      const float total = block_sum(acc[v], smem);
      if (threadIdx.x == 0) partials[(v * C + c) * splits + s] = total;
    }
  }
}

template <int NV, class F>
__global__ void channel_partials_rows(F f, int64_t outer, int64_t C, int64_t inner, int64_t rchunk,
                                      int64_t splits, float* partials) {
  const int64_t L = C * inner, s = blockIdx.y;
  const int64_t o0 = s * rchunk, o1 = imin(o0 + rchunk, outer);
  for (int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; t < L;
       t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = t / inner;
    float acc[NV] = {};
    for (int64_t o = o0; o < o1; ++o) f(o * L + t, c, acc);
    for (int v = 0; v < NV; ++v) partials[(v * L + t) * splits + s] = acc[v];
  }
}

template <int NV>
__global__ void channel_finalize(const float* partials, int64_t C, int64_t per_channel,
                                 ChannelOut<NV> out) {
  for (int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < C;
       c += int64_t(gridDim.x) * blockDim.x) {
    for (int v = 0; v < NV; ++v) {
      const float* p = partials + (v * C + c) * per_channel;
      double sum = 0.0;
      for (int64_t k = 0; k < per_channel; ++k) sum += p[k];
      out.p[v][c] = static_cast<float>(sum * out.scale[v]);
    }
  }
}

template <int NV, class F>
__global__ void channel_sums_v0(F f, int64_t outer, int64_t C, int64_t inner, ChannelOut<NV> out) {
  for (int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < C;
       c += int64_t(gridDim.x) * blockDim.x) {
    double sum[NV] = {};
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t i = 0; i < inner; ++i) {
        float acc[NV] = {};
        f((o * C + c) * inner + i, c, acc);
        for (int v = 0; v < NV; ++v) sum[v] += acc[v];
      }
    }
    for (int v = 0; v < NV; ++v) out.p[v][c] = static_cast<float>(sum[v] * out.scale[v]);
  }
}

// path reference: one thread per channel (channel_sums_v0).
template <int NV, class F>
void channel_sums(Path path, const F& f, int64_t outer, int64_t C, int64_t inner,
                  ChannelOut<NV> out) {
  const hipStream_t st = current_stream();
  if (path == Path::reference) {
    channel_sums_v0<NV, F><<<blocks_for(C), kThreads, 0, st>>>(f, outer, C, inner, out);
    HG_LAUNCH_CHECK("channel_sums_v0");
    return;
  }
  if (inner >= kPlanarMin) {
    // About 4096 elements per block at least, and about 1024 blocks in all when that is enough.
    const int64_t M = outer * inner;
    const int64_t splits = std::clamp<int64_t>((M + 4095) / 4096, 1, std::max<int64_t>(1, 1024 / C));
    const int64_t chunk = (M + splits - 1) / splits;
    Tensor part = scratch(NV * C * splits);
    const dim3 grid(static_cast<unsigned>(splits), static_cast<unsigned>(std::min(C, kMaxGrid)));
    channel_partials_planar<NV, F><<<grid, kThreads, 0, st>>>(f, outer, C, inner, chunk, splits,
                                                           part.data<float>());
    HG_LAUNCH_CHECK("channel_partials_planar");
    channel_finalize<NV><<<blocks_for(C), kThreads, 0, st>>>(part.data<float>(), C, splits, out);
    HG_LAUNCH_CHECK("channel_finalize");
  } else {
    // At least 16 rows per thread, about 2048 blocks in all when that is enough, and at most 4096
    // partials per channel for the finalize thread.
    const int64_t L = C * inner;
    const unsigned bx = blocks_for(L);
    const int64_t max_splits = std::max<int64_t>(1, std::min<int64_t>(2048 / bx, 4096 / std::max<int64_t>(inner, 1)));
    const int64_t splits = std::clamp<int64_t>((outer + 15) / 16, 1, max_splits);
    const int64_t rchunk = (outer + splits - 1) / splits;
    Tensor part = scratch(NV * L * splits);
    const dim3 grid(bx, static_cast<unsigned>(splits));
    channel_partials_rows<NV, F><<<grid, kThreads, 0, st>>>(f, outer, C, inner, rchunk, splits,
                                                         part.data<float>());
    HG_LAUNCH_CHECK("channel_partials_rows");
    channel_finalize<NV><<<blocks_for(C), kThreads, 0, st>>>(part.data<float>(), C, inner * splits, out);
    HG_LAUNCH_CHECK("channel_finalize");
  }
}

}  // namespace hg::gpu
#endif  // device compilers
