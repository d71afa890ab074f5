// GPU layer norm over the last axis and the gradient-clipping helpers, float32, row-major:
//   layer_norm           one warp per row (lanes stride over C, warp_allsum at the native warp
//                        width, 32 or 64): mean, then the two-pass biased variance,
//                        rstd = rsqrt(var + eps), y = (x - mean) * rstd * weight + bias
//   layer_norm_backward  dx: one warp per row, dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
//                        with g = dy * weight; dweight / dbias: two stages without atomics,
//                        per-chunk column partials (one thread per column, kChunkRows rows),
//                        then each column's partials added in chunk order in double
//   sum_squares          each block sums x^2 of a grid-stride share (block_sum), one block adds
//                        the block partials in double into the output element
//   scale_               x *= alpha, grid-stride
// Every result is the same on every run (fixed reduction orders).
// Vendor: MIOpen's miopenLayerNormForward (vendor/miopen.cpp, ROCm >= 6.0) where it is built;
// cuDNN's legacy API has no layer norm (named fallback in vendor/cudnn.cpp).
// Test: PYTHONPATH=python python3 -m pytest -q tests/ops/test_layer_norm.py tests/ops/test_bmm.py -m gpu
#include "kernels_elementwise.h"

namespace hg::gpu {
namespace {

constexpr int64_t kChunkRows = 64;

__global__ void layer_norm_rows(int64_t rows, int64_t C, float eps, const float* __restrict__ x,
                                const float* __restrict__ w, const float* __restrict__ b,
                                float* __restrict__ y, float* __restrict__ mean,
                                float* __restrict__ rstd) {
  const int lane = threadIdx.x % warpSize;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / warpSize);
  for (int64_t r = int64_t(blockIdx.x) * (blockDim.x / warpSize) + threadIdx.x / warpSize; r < rows;
       r += warps) {
    const float* xr = x + r * C;
    float s = 0.f;
    for (int64_t c = lane; c < C; c += warpSize) s += xr[c];
    const float m = warp_allsum(s) / float(C);
    float sq = 0.f;
    for (int64_t c = lane; c < C; c += warpSize) {
      const float d = xr[c] - m;
      sq += d * d;
    }
    const float rs = rsqrtf(warp_allsum(sq) / float(C) + eps);
    float* yr = y + r * C;
    for (int64_t c = lane; c < C; c += warpSize)
      yr[c] = (xr[c] - m) * rs * (w ? w[c] : 1.f) + (b ? b[c] : 0.f);
    if (lane == 0) {
      mean[r] = m;
      rstd[r] = rs;
    }
  }
}

__global__ void layer_norm_backward_rows(int64_t rows, int64_t C, const float* __restrict__ dy,
                                         const float* __restrict__ x, const float* __restrict__ w,
                                         const float* __restrict__ mean,
                                         const float* __restrict__ rstd, float* __restrict__ dx) {
  const int lane = threadIdx.x % warpSize;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / warpSize);
  for (int64_t r = int64_t(blockIdx.x) * (blockDim.x / warpSize) + threadIdx.x / warpSize; r < rows;
       r += warps) {
    const float* xr = x + r * C;
    const float* dyr = dy + r * C;
    const float m = mean[r], rs = rstd[r];
    float sg = 0.f, sgx = 0.f;
    for (int64_t c = lane; c < C; c += warpSize) {
      const float g = dyr[c] * (w ? w[c] : 1.f);
      sg += g;
      sgx += g * (xr[c] - m) * rs;
    }
    const float mg = warp_allsum(sg) / float(C), mgx = warp_allsum(sgx) / float(C);
    float* dxr = dx + r * C;
    for (int64_t c = lane; c < C; c += warpSize) {
      const float xhat = (xr[c] - m) * rs;
      dxr[c] = rs * (dyr[c] * (w ? w[c] : 1.f) - mg - xhat * mgx);
    }
  }
}

// part_w / part_b (chunks, C): sums over rows [chunk * kChunkRows, +kChunkRows) of dy * xhat, dy.
__global__ void layer_norm_column_partials(int64_t rows, int64_t C, const float* __restrict__ dy,
                                           const float* __restrict__ x,
                                           const float* __restrict__ mean,
                                           const float* __restrict__ rstd,
                                           float* __restrict__ part_w, float* __restrict__ part_b) {
  const int64_t chunk = blockIdx.y;
  const int64_t r0 = chunk * kChunkRows, r1 = imin(rows, r0 + kChunkRows);
  for (int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < C;
       c += int64_t(gridDim.x) * blockDim.x) {
    float sw = 0.f, sb = 0.f;
    for (int64_t r = r0; r < r1; ++r) {
      const float g = dy[r * C + c];
      sw += g * (x[r * C + c] - mean[r]) * rstd[r];
      sb += g;
    }
    part_w[chunk * C + c] = sw;
    part_b[chunk * C + c] = sb;
  }
}

__global__ void layer_norm_column_sums(int64_t chunks, int64_t C, const float* __restrict__ part_w,
                                       const float* __restrict__ part_b, float* __restrict__ dw,
                                       float* __restrict__ db) {
  for (int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < C;
       c += int64_t(gridDim.x) * blockDim.x) {
    double sw = 0.0, sb = 0.0;
    for (int64_t k = 0; k < chunks; ++k) {
      sw += part_w[k * C + c];
      sb += part_b[k * C + c];
    }
    dw[c] = float(sw);
    db[c] = float(sb);
  }
}

__global__ void sum_squares_partials(int64_t n, const float* __restrict__ x, float* __restrict__ part) {
  __shared__ float smem[64];
  float acc = 0.f;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    acc += x[i] * x[i];
  acc = block_sum(acc, smem);
  if (threadIdx.x == 0) part[blockIdx.x] = acc;
}

__global__ void sum_partials_double(int64_t count, const float* __restrict__ part, float* __restrict__ out) {
  __shared__ double smem[64];
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) acc += part[i];
  acc = block_sum(acc, smem);
  if (threadIdx.x == 0) *out = float(acc);
}

__global__ void scale_kernel(int64_t n, float alpha, float* __restrict__ x) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    x[i] *= alpha;
}

unsigned row_blocks(int64_t rows) {
  // kThreads / 32 warps per block at most (64-lane warps: half of them), one row per warp.
  return blocks_for(rows, kThreads / 32);
}

}  // namespace

void layer_norm_gpu(const LayerNormArgs& a) {
  layer_norm_rows<<<row_blocks(a.rows), kThreads, 0, current_stream()>>>(
      a.rows, a.C, a.eps, a.x, a.weight, a.bias, a.y, a.mean, a.rstd);
  HG_LAUNCH_CHECK("layer_norm_rows");
}

void layer_norm_backward_gpu(const LayerNormBackwardArgs& a) {
  const int64_t chunks = (a.rows + kChunkRows - 1) / kChunkRows;
  HG_REQUIRE(chunks <= kMaxGrid, "layer_norm_backward: at most ", kMaxGrid * kChunkRows,
             " rows are supported on the GPU, got ", a.rows);
  const hipStream_t st = current_stream();
  layer_norm_backward_rows<<<row_blocks(a.rows), kThreads, 0, st>>>(a.rows, a.C, a.dy, a.x,
                                                                  a.weight, a.mean, a.rstd, a.dx);
  HG_LAUNCH_CHECK("layer_norm_backward_rows");
  Tensor part = scratch(2 * chunks * a.C);
  float* pw = part.data<float>();
  float* pb = pw + chunks * a.C;
  const dim3 grid(blocks_for(a.C), static_cast<unsigned>(chunks));
  layer_norm_column_partials<<<grid, kThreads, 0, st>>>(a.rows, a.C, a.dy, a.x, a.mean, a.rstd, pw, pb);
  HG_LAUNCH_CHECK("layer_norm_column_partials");
  layer_norm_column_sums<<<blocks_for(a.C), kThreads, 0, st>>>(chunks, a.C, pw, pb, a.dweight, a.dbias);
  HG_LAUNCH_CHECK("layer_norm_column_sums");
}

void sum_squares_gpu(const SumSquaresArgs& a) {
  const hipStream_t st = current_stream();
  const unsigned blocks = std::min<unsigned>(blocks_for(a.n), 1024);
  Tensor part = scratch(blocks);
  sum_squares_partials<<<blocks, kThreads, 0, st>>>(a.n, a.x, part.data<float>());
  HG_LAUNCH_CHECK("sum_squares_partials");
  sum_partials_double<<<1, kThreads, 0, st>>>(blocks, part.data<float>(), a.out);
  HG_LAUNCH_CHECK("sum_partials_double");
}

void scale_gpu(const ScaleArgs& a) {
  scale_kernel<<<blocks_for(a.n), kThreads, 0, current_stream()>>>(a.n, a.alpha, a.x);
  HG_LAUNCH_CHECK("scale_kernel");
}

}  // namespace hg::gpu

HG_REGISTER_KERNEL(layer_norm_op, gpu, handwritten, "gpu.layer_norm_warp_rows", &hg::gpu::layer_norm_gpu);
HG_REGISTER_KERNEL(layer_norm_backward_op, gpu, handwritten, "gpu.layer_norm_backward_two_stage",
                   &hg::gpu::layer_norm_backward_gpu);
HG_REGISTER_KERNEL(sum_squares_op, gpu, handwritten, "gpu.sum_squares_two_stage", &hg::gpu::sum_squares_gpu);
HG_REGISTER_KERNEL(scale_op, gpu, handwritten, "gpu.scale", &hg::gpu::scale_gpu);
