// GPU kernels of the graph plans' data-movement and reduction ops (ops_graph.h), float32. Each is
// the only kernel of its op (the vendor slots fall back to it) and already the simple form, so
// there is no separate v0:
//   concat / split  gpu.block_copy: up to kBatch blocks per launch, blockIdx.y picks the block;
//                   one thread per element of its rows x len (consecutive threads on consecutive
//                   columns, so reads and writes are coalesced), grid-stride;
//   transpose       gpu.transpose_gather: one thread per output element, its input offset from
//                   the output multi-index (writes coalesced, reads strided);
//   reduce_mean     gpu.reduce_mean_block: per output, the block's threads take elements
//                   t, t + blockDim, ... and block_sum adds them in a fixed order (correct at 32
//                   and 64 lanes); outputs of fewer than kBlockMin elements take one thread each
//                   (gpu.reduce_mean_block's thread path, in order);
//   pad2d           gpu.pad2d_direct: one thread per output element, x's element or the value.
//
// Test:  PYTHONPATH=python python3 -m pytest -q tests/ops/test_shape.py -m gpu
#include "kernels_elementwise.h"

namespace hg::gpu {
namespace {

constexpr int kBatch = 8;
struct CopyBatch {
  CopyBlock b[kBatch];
};

__global__ void block_copy_kernel(CopyBatch batch, int64_t rows) {
  const CopyBlock& b = batch.b[blockIdx.y];
  const int64_t total = rows * b.len;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / b.len, c = i - r * b.len;
    b.dst[r * b.dst_ld + c] = b.src[r * b.src_ld + c];
  }
}

void block_copy_gpu(const BlockCopyArgs& a) {
  for (int64_t first = 0; first < a.count; first += kBatch) {
    const int64_t count = std::min<int64_t>(kBatch, a.count - first);
    CopyBatch batch;
    int64_t most = 0;
    for (int64_t k = 0; k < count; ++k) {
      batch.b[k] = a.blocks[first + k];
      most = std::max(most, a.rows * batch.b[k].len);
    }
    const dim3 grid(blocks_for(most), unsigned(count));
    block_copy_kernel<<<grid, kThreads, 0, current_stream()>>>(batch, a.rows);
    HG_LAUNCH_CHECK("block_copy_kernel");
  }
}

__global__ void transpose_gather(TransposeArgs a) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < a.n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t rest = i, off = 0;
    for (int d = a.ndim - 1; d >= 0; --d) {
      const int64_t q = rest / a.shape[d];
      off += (rest - q * a.shape[d]) * a.x_stride[d];
      rest = q;
    }
    a.y[i] = a.x[off];
  }
}

void transpose_gpu(const TransposeArgs& a) {
  transpose_gather<<<blocks_for(a.n), kThreads, 0, current_stream()>>>(a);
  HG_LAUNCH_CHECK("transpose_gather");
}

// Offsets in x of output o's first element and of reduced element r from it.
__device__ inline int64_t kept_offset(const ReduceMeanArgs& a, int64_t o) {
  int64_t off = 0;
  for (int d = a.kept_ndim - 1; d >= 0; --d) {
    const int64_t q = o / a.kept_shape[d];
    off += (o - q * a.kept_shape[d]) * a.kept_stride[d];
    o = q;
  }
  return off;
}
__device__ inline int64_t red_offset(const ReduceMeanArgs& a, int64_t r) {
  int64_t off = 0;
  for (int d = a.red_ndim - 1; d >= 0; --d) {
    const int64_t q = r / a.red_shape[d];
    off += (r - q * a.red_shape[d]) * a.red_stride[d];
    r = q;
  }
  return off;
}

constexpr int64_t kBlockMin = 64;

// per_block: one output per block (grid-stride over outputs); else one per thread.
__global__ void reduce_mean_kernel(ReduceMeanArgs a, bool per_block) {
  __shared__ float partial[32];
  const float inv = 1.f / float(a.count);
  if (per_block) {
    for (int64_t o = blockIdx.x; o < a.n; o += gridDim.x) {
      const float* x = a.x + kept_offset(a, o);
      float sum = 0.f;
      for (int64_t r = threadIdx.x; r < a.count; r += blockDim.x) sum += x[red_offset(a, r)];
      sum = block_sum(sum, partial);
      if (threadIdx.x == 0) a.y[o] = sum * inv;
    }
    return;
  }
  for (int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; o < a.n;
       o += int64_t(gridDim.x) * blockDim.x) {
    const float* x = a.x + kept_offset(a, o);
    float sum = 0.f;
    for (int64_t r = 0; r < a.count; ++r) sum += x[red_offset(a, r)];
    a.y[o] = sum * inv;
  }
}

void reduce_mean_gpu(const ReduceMeanArgs& a) {
  const bool per_block = a.count >= kBlockMin;
  const unsigned grid = per_block ? blocks_for(a.n, 1) : blocks_for(a.n);
  reduce_mean_kernel<<<grid, kThreads, 0, current_stream()>>>(a, per_block);
  HG_LAUNCH_CHECK("reduce_mean_kernel");
}

__global__ void pad2d_direct(Pad2dArgs a, int64_t total) {
  const int64_t Ho = a.top + a.H + a.bottom, Wo = a.left + a.W + a.right;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t w = i % Wo - a.left, t = i / Wo;
    const int64_t h = t % Ho - a.top, plane = t / Ho;
    a.y[i] = (h >= 0 && h < a.H && w >= 0 && w < a.W) ? a.x[(plane * a.H + h) * a.W + w] : a.value;
  }
}

void pad2d_gpu(const Pad2dArgs& a) {
  const int64_t total = a.planes * (a.top + a.H + a.bottom) * (a.left + a.W + a.right);
  pad2d_direct<<<blocks_for(total), kThreads, 0, current_stream()>>>(a, total);
  HG_LAUNCH_CHECK("pad2d_direct");
}

}  // namespace
}  // namespace hg::gpu

HG_REGISTER_KERNEL(concat_op, gpu, handwritten, "gpu.block_copy", &hg::gpu::block_copy_gpu);
HG_REGISTER_KERNEL(split_op, gpu, handwritten, "gpu.block_copy", &hg::gpu::block_copy_gpu);
HG_REGISTER_KERNEL(transpose_op, gpu, handwritten, "gpu.transpose_gather", &hg::gpu::transpose_gpu);
HG_REGISTER_KERNEL(reduce_mean_op, gpu, handwritten, "gpu.reduce_mean_block",
                   &hg::gpu::reduce_mean_gpu);
HG_REGISTER_KERNEL(pad2d_op, gpu, handwritten, "gpu.pad2d_direct", &hg::gpu::pad2d_gpu);
