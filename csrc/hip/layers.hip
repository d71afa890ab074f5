// GPU helpers the layers need, float32, flat contiguous arrays unless said otherwise:
//   add                 y = a + alpha b (y may be a: in place);   fill  y = value;
//   dropout             keep_i = dropout_keep(dropout_key(seed), i, dropout_threshold(p)), the
//                       CPU kernel's splitmix64 counter hash (core/dropout_hash.h); mask_i = keep_i,
//                       y_i = x_i * (keep_i ? s : 0), s = dropout_scale(p) = 1 / (1 - p);
//                       backward dx_i = dy_i * (mask_i * s) -- the CPU's exact expressions, so
//                       mask and outputs match it bit for bit;
//   embedding           y[k, :] = weight[idx[k], :]; an idx outside [0, num) sets *bad_index = 1
//                       (else it is set to 0) and gives a zero row;
//   embedding_backward  dw[r, :] = sum of dy[k, :] over the k with idx[k] == r, added in increasing
//                       k (the CPU's serial order, so the same bits); rows nobody picked are zero;
//                       dw fully written; an idx outside [0, num) is skipped and sets *bad_index
//                       (when the args carry that flag: it was added to ops.h on branch lossoptim).
//
// Kernels (handwritten):
//   gpu.add_vec4, gpu.fill_vec4, gpu.dropout_hash, gpu.dropout_backward, gpu.embedding_gather:
//     grid-stride elementwise kernels (float4 where every pointer is 16-byte aligned);
//   gpu.embedding_backward_sorted: keys (row << 32 | k) are bitonic-sorted (2048-key tiles sorted
//     and merged in shared memory, the wider merge steps in global memory), each row finds its
//     segment by binary search, then one thread per (row, column) adds its segment's dy in key
//     order -- deterministic, no atomics, O(count log^2 count + num dim + count dim);
//     gpu.embedding_backward_v0 (reference kernel): one thread per (row, column) scans all of
//     idx; same order, so the same bits.
//
// Test:  PYTHONPATH=python python3 -m pytest -q tests/ops/test_layers.py -m gpu
// Bench (one command line): PYTHONPATH=python python3 -m timeit -s "import numpy as np, hipgrad as hg"
//          -s "w = hg.tensor(np.random.randn(50000, 512).astype('f4'), device='gpu:0')"
//          -s "i = hg.tensor(np.random.randint(0, 50000, 16384), device='gpu:0')"
//          -s "dy = hg.tensor(np.random.randn(16384, 512).astype('f4'), device='gpu:0')"
//          "hg.ops.embedding_backward(dy, i, 50000); hg.synchronize()"
#include "kernels_elementwise.h"

#include "../core/dropout_hash.h"

namespace hg::gpu {
namespace {

// ---- add, fill -----------------------------------------------------------------------------------
__global__ void add_kernel(int64_t n, float alpha, const float* a, const float* __restrict__ b,
                           float* y, bool vec4) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t done = 0;
  if (vec4) {
    const int64_t n4 = n / 4;
    for (int64_t i = tid; i < n4; i += stride) {
      const float4 u = reinterpret_cast<const float4*>(a)[i];
      const float4 v = reinterpret_cast<const float4*>(b)[i];
      reinterpret_cast<float4*>(y)[i] =
          make_float4(u.x + alpha * v.x, u.y + alpha * v.y, u.z + alpha * v.z, u.w + alpha * v.w);
    }
    done = n4 * 4;
  }
  for (int64_t i = done + tid; i < n; i += stride) y[i] = a[i] + alpha * b[i];
}

__global__ void fill_kernel(int64_t n, float value, float* __restrict__ y, bool vec4) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t done = 0;
  if (vec4) {
    const int64_t n4 = n / 4;
    const float4 v = make_float4(value, value, value, value);
    for (int64_t i = tid; i < n4; i += stride) reinterpret_cast<float4*>(y)[i] = v;
    done = n4 * 4;
  }
  for (int64_t i = done + tid; i < n; i += stride) y[i] = value;
}

void add_gpu(const AddArgs& a) {
  if (a.n == 0) return;
  const bool vec4 = aligned16(a.a) && aligned16(a.b) && aligned16(a.y);
  add_kernel<<<blocks_for(vec4 ? (a.n + 3) / 4 : a.n), kThreads, 0, current_stream()>>>(a.n, a.alpha, a.a,
                                                                                       a.b, a.y, vec4);
  HG_LAUNCH_CHECK("add_kernel");
}

void fill_gpu(const FillArgs& a) {
  if (a.n == 0) return;
  const bool vec4 = aligned16(a.y);
  fill_kernel<<<blocks_for(vec4 ? (a.n + 3) / 4 : a.n), kThreads, 0, current_stream()>>>(a.n, a.value,
                                                                                       a.y, vec4);
  HG_LAUNCH_CHECK("fill_kernel");
}

// ---- dropout -------------------------------------------------------------------------------------
__global__ void dropout_kernel(int64_t n, uint64_t key, uint64_t threshold, float scale,
                               const float* __restrict__ x, float* __restrict__ y,
                               uint8_t* __restrict__ mask) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const bool keep = dropout_keep(key, uint64_t(i), threshold);
    mask[i] = keep ? 1 : 0;
    y[i] = x[i] * (keep ? scale : 0.f);
  }
}

__global__ void dropout_backward_kernel(int64_t n, float scale, const float* __restrict__ dy,
                                        const uint8_t* __restrict__ mask, float* __restrict__ dx) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    dx[i] = dy[i] * (static_cast<float>(mask[i]) * scale);
  }
}

void dropout_gpu(const DropoutArgs& a) {
  if (a.n == 0) return;
  dropout_kernel<<<blocks_for(a.n), kThreads, 0, current_stream()>>>(
      a.n, dropout_key(a.seed), dropout_threshold(a.p), dropout_scale(a.p), a.x, a.y, a.mask);
  HG_LAUNCH_CHECK("dropout_kernel");
}

void dropout_backward_gpu(const DropoutBackwardArgs& a) {
  if (a.n == 0) return;
  dropout_backward_kernel<<<blocks_for(a.n), kThreads, 0, current_stream()>>>(a.n, dropout_scale(a.p), a.dy,
                                                                            a.mask, a.dx);
  HG_LAUNCH_CHECK("dropout_backward_kernel");
}

// ---- embedding forward ---------------------------------------------------------------------------
template <class D>
__global__ void embedding_gather(typename D::Index total, D dim_d, int64_t num,
                                 const float* __restrict__ weight, const int64_t* __restrict__ idx,
                                 float* __restrict__ y, int32_t* bad_index) {
  using I = typename D::Index;
  for (I j = I(blockIdx.x) * blockDim.x + threadIdx.x; j < total; j += I(gridDim.x) * blockDim.x) {
    const I k = dim_d.div(j);
    const int64_t d = j - k * I(dim_d.d), r = idx[k];
    if (r >= 0 && r < num) {
      y[j] = weight[r * int64_t(dim_d.d) + d];
    } else {
      y[j] = 0.f;
      *bad_index = 1;
    }
  }
}

void embedding_gpu(const EmbeddingArgs& a) {
  const hipStream_t st = current_stream();
  HG_GPU_CHECK(hipMemsetAsync(a.bad_index, 0, sizeof(int32_t), st));
  const int64_t total = a.count * a.dim;
  if (total == 0) return;
  with_divider(total, [&](auto tag) {
    using D = decltype(tag);
    embedding_gather<D><<<blocks_for(total), kThreads, 0, st>>>(typename D::Index(total), D(a.dim), a.num,
                                                              a.weight, a.idx, a.y, a.bad_index);
    HG_LAUNCH_CHECK("embedding_gather");
  });
}

// ---- embedding backward: bitonic sort of (row, k) keys ------------------------------------------
constexpr int kSortTile = 2048;  // keys per shared-memory tile (16 KiB)
constexpr uint64_t kNoRow = 0xffffffffull;  // row field of out-of-range indices: sorts last

__device__ inline void compare_swap(uint64_t& a, uint64_t& b, bool ascending) {
  if ((a > b) == ascending) {
    const uint64_t t = a;
    a = b;
    b = t;
  }
}

// Pair t of a step with distance j: lower index i (bit j clear), partner i + j.
__device__ inline int64_t pair_low(int64_t t, int64_t j) { return 2 * j * (t / j) + (t % j); }

// keys[i] = row << 32 | i for i < count, all ones for the padding up to n (a power of two).
__global__ void make_sort_keys(int64_t n, int64_t count, int64_t num, const int64_t* __restrict__ idx,
                               uint64_t* __restrict__ keys, int32_t* bad_index) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    if (i < count) {
      const int64_t r = idx[i];
      const bool ok = r >= 0 && r < num;
      if (!ok && bad_index) *bad_index = 1;
      keys[i] = ((ok ? uint64_t(r) : kNoRow) << 32) | uint64_t(i);
    } else {
      keys[i] = ~uint64_t(0);
    }
  }
}

// In shared memory, per tile: every stage k <= tile (tile_sort) or the steps j < tile of stage k
// (tile_merge). The direction of a pair follows its global index, as in the whole-array network.
__global__ void __launch_bounds__(kSortTile / 2)
    bitonic_tile(uint64_t* keys, int64_t tiles, int tile, int64_t k_only) {
  extern __shared__ uint64_t s[];
  for (int64_t b = blockIdx.x; b < tiles; b += gridDim.x) {
    const int64_t base = b * tile;
    for (int t = threadIdx.x; t < tile; t += blockDim.x) s[t] = keys[base + t];
    __syncthreads();
    const int64_t k_first = k_only ? k_only : 2, k_last = k_only ? k_only : tile;
    for (int64_t k = k_first; k <= k_last; k <<= 1) {
      for (int64_t j = (k_only ? tile : k) >> 1; j > 0; j >>= 1) {
        for (int t = threadIdx.x; t < tile / 2; t += blockDim.x) {
          const int64_t i = pair_low(t, j);
          compare_swap(s[i], s[i + j], ((base + i) & k) == 0);
        }
        __syncthreads();
      }
    }
    for (int t = threadIdx.x; t < tile; t += blockDim.x) keys[base + t] = s[t];
    __syncthreads();
  }
}

// One step (k, j) with j >= tile over the whole array.
__global__ void bitonic_global_step(uint64_t* keys, int64_t n, int64_t k, int64_t j) {
  for (int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; t < n / 2;
       t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = pair_low(t, j);
    compare_swap(keys[i], keys[i + j], (i & k) == 0);
  }
}

// start[r] = first sorted position whose row is >= r, for r in [0, num].
__global__ void segment_starts(int64_t num, int64_t count, const uint64_t* __restrict__ keys,
                               int64_t* __restrict__ start) {
  for (int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; r <= num;
       r += int64_t(gridDim.x) * blockDim.x) {
    const uint64_t target = uint64_t(r) << 32;
    int64_t lo = 0, hi = count;
    while (lo < hi) {
      const int64_t mid = (lo + hi) / 2;
      if (keys[mid] < target) lo = mid + 1; else hi = mid;
    }
    start[r] = lo;
  }
}

template <class D>
__global__ void embedding_segment_sums(typename D::Index total, D dim_d, const uint64_t* __restrict__ keys,
                                       const int64_t* __restrict__ start, const float* __restrict__ dy,
                                       float* __restrict__ dw) {
  using I = typename D::Index;
  const int64_t dim = dim_d.d;
  for (I j = I(blockIdx.x) * blockDim.x + threadIdx.x; j < total; j += I(gridDim.x) * blockDim.x) {
    const I r = dim_d.div(j);
    const int64_t d = j - r * I(dim_d.d);
    float sum = 0.f;
    for (int64_t s = start[r], e = start[r + 1]; s < e; ++s) {
      sum += dy[int64_t(keys[s] & 0xffffffffull) * dim + d];
    }
    dw[j] = sum;
  }
}

template <class D>
__global__ void embedding_backward_v0(typename D::Index total, D dim_d, int64_t num, int64_t count,
                                      const int64_t* __restrict__ idx, const float* __restrict__ dy,
                                      float* __restrict__ dw, int32_t* bad_index) {
  using I = typename D::Index;
  const int64_t dim = dim_d.d;
  for (I j = I(blockIdx.x) * blockDim.x + threadIdx.x; j < total; j += I(gridDim.x) * blockDim.x) {
    const I r = dim_d.div(j);
    const int64_t d = j - r * I(dim_d.d);
    float sum = 0.f;
    for (int64_t k = 0; k < count; ++k) {
      if (idx[k] == int64_t(r)) sum += dy[k * dim + d];
      if (j == 0 && bad_index && (idx[k] < 0 || idx[k] >= num)) *bad_index = 1;
    }
    dw[j] = sum;
  }
}

// EmbeddingBackwardArgs::bad_index where the struct has it (added on branch lossoptim), else none.
template <class A>
auto bad_index_of(const A& a, int) -> decltype(a.bad_index) { return a.bad_index; }
template <class A>
int32_t* bad_index_of(const A&, long) { return nullptr; }

void sort_keys(uint64_t* keys, int64_t n, hipStream_t st) {
  if (n < 2) return;
  const int tile = static_cast<int>(std::min<int64_t>(n, kSortTile));
  const int64_t tiles = n / tile;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(tiles, kMaxGrid));
  const size_t smem = size_t(tile) * sizeof(uint64_t);
  bitonic_tile<<<blocks, tile / 2, smem, st>>>(keys, tiles, tile, 0);
  HG_LAUNCH_CHECK("bitonic_tile");
  for (int64_t k = 2 * int64_t(tile); k <= n; k <<= 1) {
    for (int64_t j = k / 2; j >= tile; j /= 2) {
      bitonic_global_step<<<blocks_for(n / 2), kThreads, 0, st>>>(keys, n, k, j);
      HG_LAUNCH_CHECK("bitonic_global_step");
    }
    bitonic_tile<<<blocks, tile / 2, smem, st>>>(keys, tiles, tile, k);
    HG_LAUNCH_CHECK("bitonic_tile");
  }
}

template <Path P>
void embedding_backward_gpu(const EmbeddingBackwardArgs& a) {
  const hipStream_t st = current_stream();
  const int64_t total = a.num * a.dim;
  if (total == 0) return;
  HG_REQUIRE(a.count < (int64_t(1) << 32), "embedding_backward: idx has ", a.count,
             " entries; the GPU kernel handles fewer than 2^32");
  int32_t* bad_index = bad_index_of(a, 0);
  with_divider(total, [&](auto tag) {
    using D = decltype(tag);
    using I = typename D::Index;
    if (P == Path::reference) {
      embedding_backward_v0<D><<<blocks_for(total), kThreads, 0, st>>>(I(total), D(a.dim), a.num, a.count,
                                                                     a.idx, a.dy, a.dw, bad_index);
      HG_LAUNCH_CHECK("embedding_backward_v0");
      return;
    }
    int64_t n = 1;
    while (n < a.count) n *= 2;
    Tensor keys = scratch(n, DType::i64);
    Tensor start = scratch(a.num + 1, DType::i64);
    uint64_t* k = static_cast<uint64_t*>(keys.raw());
    make_sort_keys<<<blocks_for(n), kThreads, 0, st>>>(n, a.count, a.num, a.idx, k, bad_index);
    HG_LAUNCH_CHECK("make_sort_keys");
    sort_keys(k, n, st);
    segment_starts<<<blocks_for(a.num + 1), kThreads, 0, st>>>(a.num, a.count, k, start.data<int64_t>());
    HG_LAUNCH_CHECK("segment_starts");
    embedding_segment_sums<D><<<blocks_for(total), kThreads, 0, st>>>(I(total), D(a.dim), k,
                                                                    start.data<int64_t>(), a.dy, a.dw);
    HG_LAUNCH_CHECK("embedding_segment_sums");
  });
}

}  // namespace
}  // namespace hg::gpu

HG_REGISTER_KERNEL(add_op, gpu, handwritten, "gpu.add_vec4", &hg::gpu::add_gpu);
HG_REGISTER_KERNEL(fill_op, gpu, handwritten, "gpu.fill_vec4", &hg::gpu::fill_gpu);
HG_REGISTER_KERNEL(dropout_op, gpu, handwritten, "gpu.dropout_hash", &hg::gpu::dropout_gpu);
HG_REGISTER_KERNEL(dropout_backward_op, gpu, handwritten, "gpu.dropout_backward",
                   &hg::gpu::dropout_backward_gpu);
HG_REGISTER_KERNEL(embedding_op, gpu, handwritten, "gpu.embedding_gather", &hg::gpu::embedding_gpu);
HG_REGISTER_KERNEL(embedding_backward_op, gpu, handwritten, "gpu.embedding_backward_sorted",
                   &hg::gpu::embedding_backward_gpu<hg::gpu::Path::fast>);
HG_REGISTER_REFERENCE(embedding_backward_op, gpu, "gpu.embedding_backward_v0",
                      &hg::gpu::embedding_backward_gpu<hg::gpu::Path::reference>);
