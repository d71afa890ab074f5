// GPU 2-D pooling, NCHW, contiguous float32 (argmax int64), PyTorch semantics (floor or ceil mode;
// the front end guarantees padding <= kernel/2 and drops a ceil-mode window that would start in
// the padding, so every window holds at least one input element):
//   max_pool2d           y = max over the window, padding is -inf; argmax = h*W + w inside the
//                        (n, c) plane of the first maximum in row-major window order; a NaN wins
//                        (the last NaN in window order, as on the CPU and in PyTorch);
//   max_pool2d_backward  dx[h, w] = sum of dy[p, q] over the outputs whose argmax is h*W + w,
//                        added in row-major (p, q) order: the same order as the CPU's scatter,
//                        so results match it bit for bit. The op is given no window geometry
//                        (only dy, argmax and x's shape), so the kernel follows argmax alone. An
//                        argmax outside [0, H*W) contributes nothing (the CPU kernel rejects
//                        it; here that check would cost a host sync);
//   avg_pool2d           y = window sum (row-major) * 1/divisor, the divisor the window's extent
//                        inside the padded input (count_include_pad: kh*kw unless ceil mode
//                        runs past the padding) or its number of input elements;
//   avg_pool2d_backward  dx[h, w] = sum over the windows that cover (h, w) of dy * 1/divisor.
//
// Kernels (handwritten, the only ones; each is already the simple form, so no separate v0):
//   gpu.max_pool2d_direct, gpu.avg_pool2d_direct: one thread per output element (n, c, p, q),
//     consecutive threads on consecutive q, the window read straight from global memory;
//   gpu.max_pool2d_backward_warp_scatter: one warp per (n, c) plane zeroes it, then walks dy and
//     argmax in row-major chunks of warpSize outputs; within a chunk the last lane aiming at an
//     element adds all the chunk's contributions to it in lane order (shuffles, no atomics), so
//     each run is the same and equals the CPU's sequential scatter. (A gather per input element
//     would need the window geometry, which this op is not given: an earlier gather kernel read
//     an unset geometry and dropped most gradients -- found on the first H100 run, 2026-11-23.)
//   gpu.avg_pool2d_backward_gather: one thread per input element (n, c, h, w) gathers from the
//     ceil(kh/sh) x ceil(kw/sw) windows that can contain it -- no atomics, deterministic.
// Index math is 32-bit with multiply-high division when the tensor has < 2^31 elements.
// The vendor slots are registered in vendor/miopen.cpp and vendor/cudnn.cpp.
//
// Test:  PYTHONPATH=python python3 -m pytest -q tests/ops/test_pool.py -m gpu
// Bench (one command line): PYTHONPATH=python python3 -m timeit -s "import numpy as np, hipgrad as hg"
//          -s "x = hg.tensor(np.random.randn(64, 64, 56, 56).astype('f4'), device='gpu:0')"
//          "hg.ops.max_pool2d(x, 2); hg.synchronize()"
#include "kernels_elementwise.h"

namespace hg::gpu {
namespace {

// Splits a flat index over (planes, rows, cols) into (plane, row, col).
template <class D>
struct Split3 {
  using I = typename D::Index;
  I plane, row, col;
  __device__ Split3(I j, const D& cols_d, const D& rows_d) {
    const I t = cols_d.div(j);
    col = j - t * I(cols_d.d);
    plane = rows_d.div(t);
    row = t - plane * I(rows_d.d);
  }
};

// The windows (p range, q range) that contain input (h, w): p*sh - ph <= h <= p*sh - ph + kh - 1.
__device__ inline void covering(int64_t h, int64_t k, int64_t s, int64_t pad, int64_t P,
                                int64_t* lo, int64_t* hi) {
  const int64_t a = h + pad - k + 1;
  *lo = a <= 0 ? 0 : (a + s - 1) / s;
  *hi = imin((h + pad) / s, P - 1);
}

template <class D>
__global__ void max_pool2d_direct(PoolGeometry g, typename D::Index total, D Qd, D Pd,
                                  const float* __restrict__ x, float* __restrict__ y,
                                  int64_t* __restrict__ argmax) {
  using I = typename D::Index;
  for (I j = I(blockIdx.x) * blockDim.x + threadIdx.x; j < total; j += I(gridDim.x) * blockDim.x) {
    const Split3<D> o(j, Qd, Pd);
    const int64_t h0 = int64_t(o.row) * g.sh - g.ph, w0 = int64_t(o.col) * g.sw - g.pw;
    const float* xp = x + int64_t(o.plane) * g.H * g.W;
    float best = -INFINITY;
    int64_t arg = (h0 > 0 ? h0 : 0) * g.W + (w0 > 0 ? w0 : 0);  // first real element
    for (int64_t r = 0; r < g.kh; ++r) {
      const int64_t h = h0 + r;
      if (h < 0 || h >= g.H) continue;
      for (int64_t s = 0; s < g.kw; ++s) {
        const int64_t w = w0 + s;
        if (w < 0 || w >= g.W) continue;
        const float v = xp[h * g.W + w];
        if (v > best || v != v) {
          best = v;
          arg = h * g.W + w;
        }
      }
    }
    y[j] = best;
    if (argmax) argmax[j] = arg;  // nullptr: inference, no backward follows
  }
}

// Blocks of kScatterThreads (whole warps at 32 and 64 lanes); the plane loop is uniform over the
// block so __syncthreads is reached by every thread.
constexpr int kScatterThreads = 128;

__global__ void max_pool2d_backward_warp_scatter(int64_t planes, int64_t HW, int64_t PQ,
                                                 const float* __restrict__ dy,
                                                 const int64_t* __restrict__ argmax,
                                                 float* __restrict__ dx) {
  const int lane = int(threadIdx.x) % warpSize;
  const int64_t warps = blockDim.x / warpSize;
  for (int64_t first = int64_t(blockIdx.x) * warps; first < planes; first += int64_t(gridDim.x) * warps) {
    const int64_t plane = first + threadIdx.x / warpSize;
    const bool active = plane < planes;
    float* d = dx + plane * HW;
    const float* g = dy + plane * PQ;
    const int64_t* am = argmax + plane * PQ;
    if (active) {
      for (int64_t i = lane; i < HW; i += warpSize) d[i] = 0.f;
    }
    __syncthreads();
    for (int64_t base = 0; base < PQ; base += warpSize) {
      const int64_t i = base + lane;
      long long t = -1;
      float v = 0.f;
      if (active && i < PQ) {
        t = am[i];
        v = g[i];
        if (t < 0 || t >= HW) t = -1;
      }
      float acc = t >= 0 ? d[t] : 0.f;
      bool last = t >= 0;
      for (int j = 0; j < warpSize; ++j) {  // every lane takes part in every shuffle
        const long long tj = HG_SHFL(t, j);
        const float vj = HG_SHFL(v, j);
        if (tj == t) {
          if (j <= lane) acc += vj;
          else last = false;
        }
      }
      if (last) d[t] = acc;
      __syncthreads();  // the next chunk reads what this one wrote
    }
  }
}

// 1/divisor of the average window starting at (h0, w0) (PoolGeometry, ops.h).
__device__ inline float avg_inv(const PoolGeometry& g, int64_t h0, int64_t w0) {
  const int64_t h1 = h0 + g.kh, w1 = w0 + g.kw;
  const int64_t hext = g.count_include_pad ? imin(h1, g.H + g.ph) - h0
                                           : imin(h1, g.H) - (h0 > 0 ? h0 : 0);
  const int64_t wext = g.count_include_pad ? imin(w1, g.W + g.pw) - w0
                                           : imin(w1, g.W) - (w0 > 0 ? w0 : 0);
  return 1.f / float(hext * wext);
}

template <class D>
__global__ void avg_pool2d_direct(PoolGeometry g, typename D::Index total, D Qd, D Pd,
                                  const float* __restrict__ x, float* __restrict__ y) {
  using I = typename D::Index;
  for (I j = I(blockIdx.x) * blockDim.x + threadIdx.x; j < total; j += I(gridDim.x) * blockDim.x) {
    const Split3<D> o(j, Qd, Pd);
    const int64_t h0 = int64_t(o.row) * g.sh - g.ph, w0 = int64_t(o.col) * g.sw - g.pw;
    const float* xp = x + int64_t(o.plane) * g.H * g.W;
    float sum = 0.f;
    for (int64_t r = 0; r < g.kh; ++r) {
      const int64_t h = h0 + r;
      if (h < 0 || h >= g.H) continue;
      for (int64_t s = 0; s < g.kw; ++s) {
        const int64_t w = w0 + s;
        if (w >= 0 && w < g.W) sum += xp[h * g.W + w];
      }
    }
    y[j] = sum * avg_inv(g, h0, w0);
  }
}

template <class D>
__global__ void avg_pool2d_backward_gather(PoolGeometry g, typename D::Index total, D Wd, D Hd,
                                           const float* __restrict__ dy, float* __restrict__ dx) {
  using I = typename D::Index;
  for (I j = I(blockIdx.x) * blockDim.x + threadIdx.x; j < total; j += I(gridDim.x) * blockDim.x) {
    const Split3<D> in(j, Wd, Hd);
    const int64_t base = int64_t(in.plane) * g.P * g.Q;
    int64_t p0, p1, q0, q1;
    covering(in.row, g.kh, g.sh, g.ph, g.P, &p0, &p1);
    covering(in.col, g.kw, g.sw, g.pw, g.Q, &q0, &q1);
    float sum = 0.f;
    for (int64_t p = p0; p <= p1; ++p) {
      for (int64_t q = q0; q <= q1; ++q) {
        sum += dy[base + p * g.Q + q] * avg_inv(g, p * g.sh - g.ph, q * g.sw - g.pw);
      }
    }
    dx[j] = sum;
  }
}

void max_pool2d_gpu(const MaxPoolArgs& a) {
  const PoolGeometry& g = a.g;
  const int64_t total = g.N * g.C * g.P * g.Q;
  if (total == 0) return;
  with_divider(total, [&](auto tag) {
    using D = decltype(tag);
    max_pool2d_direct<D><<<blocks_for(total), kThreads, 0, current_stream()>>>(
        g, typename D::Index(total), D(g.Q), D(g.P), a.x, a.y, a.argmax);
    HG_LAUNCH_CHECK("max_pool2d_direct");
  });
}

void max_pool2d_backward_gpu(const MaxPoolBackwardArgs& a) {
  const PoolGeometry& g = a.g;
  const int64_t planes = g.N * g.C;
  if (planes == 0 || g.H * g.W == 0) return;
  const int64_t per_block = kScatterThreads / 32;  // planes per block at 32 lanes (fewer at 64)
  const int64_t blocks = std::min<int64_t>((planes + per_block - 1) / per_block, int64_t(1) << 16);
  max_pool2d_backward_warp_scatter<<<unsigned(blocks), kScatterThreads, 0, current_stream()>>>(
      planes, g.H * g.W, g.P * g.Q, a.dy, a.argmax, a.dx);
  HG_LAUNCH_CHECK("max_pool2d_backward_warp_scatter");
}

}  // namespace

void avg_pool2d_gpu(const AvgPoolArgs& a) {
  const PoolGeometry& g = a.g;
  const int64_t total = g.N * g.C * g.P * g.Q;
  if (total == 0) return;
  with_divider(total, [&](auto tag) {
    using D = decltype(tag);
    avg_pool2d_direct<D><<<blocks_for(total), kThreads, 0, current_stream()>>>(
        g, typename D::Index(total), D(g.Q), D(g.P), a.x, a.y);
    HG_LAUNCH_CHECK("avg_pool2d_direct");
  });
}

void avg_pool2d_backward_gpu(const AvgPoolBackwardArgs& a) {
  const PoolGeometry& g = a.g;
  const int64_t total = g.N * g.C * g.H * g.W;
  if (total == 0) return;
  with_divider(total, [&](auto tag) {
    using D = decltype(tag);
    avg_pool2d_backward_gather<D><<<blocks_for(total), kThreads, 0, current_stream()>>>(
        g, typename D::Index(total), D(g.W), D(g.H), a.dy, a.dx);
    HG_LAUNCH_CHECK("avg_pool2d_backward_gather");
  });
}

}  // namespace hg::gpu

HG_REGISTER_KERNEL(max_pool2d_op, gpu, handwritten, "gpu.max_pool2d_direct", &hg::gpu::max_pool2d_gpu);
HG_REGISTER_KERNEL(max_pool2d_backward_op, gpu, handwritten, "gpu.max_pool2d_backward_warp_scatter",
                   &hg::gpu::max_pool2d_backward_gpu);
HG_REGISTER_KERNEL(avg_pool2d_op, gpu, handwritten, "gpu.avg_pool2d_direct", &hg::gpu::avg_pool2d_gpu);
HG_REGISTER_KERNEL(avg_pool2d_backward_op, gpu, handwritten, "gpu.avg_pool2d_backward_gather",
                   &hg::gpu::avg_pool2d_backward_gpu);
