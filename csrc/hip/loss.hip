// GPU losses and softmax, float32, row-major (N, C) logits, int64 or int32 labels:
//   softmax_cross_entropy           probs = softmax(logits) row by row, max-subtracted:
//                                   m = max x, s = sum e^(x - m), probs = e^(x - m) / s;
//                                   row loss = m + log s - x[label]; loss = mean of the row losses;
//                                   bad_label = 1 when some label is outside [0, C), else 0
//                                   (that row's loss is NaN and x is not read out of range);
//   softmax_cross_entropy_backward  dlogits = (probs - onehot(label)) / N; bad_label as above;
//   softmax                         over the last axis, the same row kernels without the loss;
//   mse_loss                        mean((pred - target)^2); backward 2 (pred - target) / n.
// Every reduction is two-stage with fixed orders (no float atomics), so results repeat exactly.
//
// Kernels (handwritten; the v0s are the reference kernels gpu.softmax_xent_v0, gpu.softmax_v0,
// gpu.mse_loss_v0, run only when forced by name):
//   gpu.softmax_xent_rows, gpu.softmax_rows: C <= 1024: one warp per row (lanes stride over the
//     row, shuffle reductions at the native warp width); C > 1024: one block per row (warp
//     shuffles, then the warps' results through shared memory). Row losses go to a scratch array;
//     one block then adds them in double in a fixed order and checks the labels;
//     v0: one thread per row, plain loops.
//   gpu.softmax_xent_backward, gpu.mse_loss_backward: elementwise grid-stride kernels;
//   gpu.mse_loss_two_stage: each block writes one partial sum of d^2, one block adds the partials
//     in double; v0: one thread adds all n in double.
//
// Test:  PYTHONPATH=python python3 -m pytest -q tests/ops/test_loss.py -m gpu
// Bench (one command line): PYTHONPATH=python python3 -m timeit -s "import numpy as np, hipgrad as hg"
//          -s "x = hg.tensor(np.random.randn(4096, 1000).astype('f4'), device='gpu:0')"
//          -s "l = hg.tensor(np.arange(4096) % 1000, device='gpu:0')"
//          "hg.ops.softmax_cross_entropy(x, l); hg.synchronize()"
#include "kernels_elementwise.h"

namespace hg::gpu {
namespace {

constexpr int64_t kWarpRowMaxC = 1024;

// One row: writes its softmax to out_row, returns the row loss through *loss when kLoss.
// Lanes `lane` of `width` cooperate; max_all/sum_all reduce over them with every lane receiving
// the result.
template <bool kLoss, class L, class MaxAll, class SumAll>
__device__ inline void softmax_row(const float* __restrict__ x, float* __restrict__ out, int64_t C,
                                   int lane, int width, const L* labels, int64_t r,
                                   float* row_loss, MaxAll max_all, SumAll sum_all) {
  float m = -INFINITY;
  for (int64_t j = lane; j < C; j += width) m = fmaxf(m, x[j]);
  m = max_all(m);
  float s = 0.f;
  for (int64_t j = lane; j < C; j += width) s += expf(x[j] - m);
  s = sum_all(s);
  for (int64_t j = lane; j < C; j += width) out[j] = expf(x[j] - m) / s;
  if constexpr (kLoss) {
    if (lane == 0) {
      const int64_t label = static_cast<int64_t>(labels[r]);
      row_loss[r] = (label >= 0 && label < C) ? (m + logf(s)) - x[label] : NAN;
    }
  }
}

struct WarpMax {
  __device__ float operator()(float v) const { return warp_max(v); }
};
struct WarpSum {
  __device__ float operator()(float v) const { return warp_allsum(v); }
};
struct BlockMax {
  float* smem;
  __device__ float operator()(float v) const { return block_max(v, smem); }
};
struct BlockSum {
  float* smem;
  __device__ float operator()(float v) const { return block_allsum(v, smem); }
};
struct Serial {
  __device__ float operator()(float v) const { return v; }
};

// Warp w of the grid takes rows w, w + total_warps, ... (the row is uniform across the warp).
template <bool kLoss, class L>
__global__ void softmax_warp_rows(int64_t N, int64_t C, const float* __restrict__ x,
                                  float* __restrict__ y, const L* labels, float* row_loss) {
  const int lane = threadIdx.x % warpSize;
  const int64_t warp = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / warpSize;
  const int64_t warps = int64_t(gridDim.x) * blockDim.x / warpSize;
  for (int64_t r = warp; r < N; r += warps) {
    softmax_row<kLoss>(x + r * C, y + r * C, C, lane, warpSize, labels, r, row_loss, WarpMax{},
                       WarpSum{});
  }
}

// Block b takes rows b, b + gridDim.x, ...
template <bool kLoss, class L>
__global__ void softmax_block_rows(int64_t N, int64_t C, const float* __restrict__ x,
                                   float* __restrict__ y, const L* labels, float* row_loss) {
  __shared__ float smem[32];
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    softmax_row<kLoss>(x + r * C, y + r * C, C, threadIdx.x, blockDim.x, labels, r, row_loss,
                       BlockMax{smem}, BlockSum{smem});
  }
}

template <bool kLoss, class L>
__global__ void softmax_rows_v0(int64_t N, int64_t C, const float* __restrict__ x,
                                float* __restrict__ y, const L* labels, float* row_loss) {
  for (int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; r < N;
       r += int64_t(gridDim.x) * blockDim.x) {
    softmax_row<kLoss>(x + r * C, y + r * C, C, 0, 1, labels, r, row_loss, Serial{}, Serial{});
  }
}

// One block: loss = mean of the row losses (double, fixed order), bad_label = any label outside
// [0, C).
constexpr int kFinishThreads = 1024;

template <class L>
__global__ void __launch_bounds__(kFinishThreads)
    xent_finish(int64_t N, int64_t C, const float* __restrict__ row_loss,
                            const L* __restrict__ labels, float* loss, int32_t* bad_label) {
  __shared__ double smem[32];
  __shared__ int any_bad;  // not __syncthreads_or: at -O0 hip-clang cannot lower its device-lib code
  if (threadIdx.x == 0) any_bad = 0;
  double sum = 0.0;
  bool bad = false;
  for (int64_t r = threadIdx.x; r < N; r += blockDim.x) {
    sum += row_loss[r];
    const int64_t label = static_cast<int64_t>(labels[r]);
    bad = bad || label < 0 || label >= C;
  }
  sum = block_sum(sum, smem);  // its barriers also order the any_bad reset before the writes
  if (bad) any_bad = 1;
  __syncthreads();
  if (threadIdx.x == 0) {
    *loss = static_cast<float>(sum / double(N));
    *bad_label = any_bad;
  }
}

template <bool kLoss, class L>
void launch_softmax_rows(Path path, int64_t N, int64_t C, const float* x, float* y,
                         const L* labels, float* row_loss) {
  const hipStream_t st = current_stream();
  if (path == Path::reference) {
    softmax_rows_v0<kLoss, L><<<blocks_for(N), kThreads, 0, st>>>(N, C, x, y, labels, row_loss);
    HG_LAUNCH_CHECK("softmax_rows_v0");
  } else if (C <= kWarpRowMaxC) {
    // kThreads / 32 rows per block covers every warp width (a 64-wide warp loops twice).
    softmax_warp_rows<kLoss, L><<<blocks_for(N, kThreads / 32), kThreads, 0, st>>>(N, C, x, y, labels,
                                                                                  row_loss);
    HG_LAUNCH_CHECK("softmax_warp_rows");
  } else {
    softmax_block_rows<kLoss, L><<<blocks_for(N, 1), kThreads, 0, st>>>(N, C, x, y, labels, row_loss);
    HG_LAUNCH_CHECK("softmax_block_rows");
  }
}

template <Path P, class L>
void softmax_xent_typed(const SoftmaxXentArgs& a, const L* labels) {
  Tensor row_loss = scratch(a.N);
  launch_softmax_rows<true>(P, a.N, a.C, a.logits, a.probs, labels, row_loss.data<float>());
  xent_finish<L><<<1, kFinishThreads, 0, current_stream()>>>(a.N, a.C, row_loss.data<float>(), labels,
                                                   a.loss, a.bad_label);
  HG_LAUNCH_CHECK("xent_finish");
}

template <Path P>
void softmax_cross_entropy_gpu(const SoftmaxXentArgs& a) {
  if (a.N == 0) return;
  if (a.label_dtype == DType::i32) {
    softmax_xent_typed<P>(a, static_cast<const int32_t*>(a.labels));
  } else {
    softmax_xent_typed<P>(a, static_cast<const int64_t*>(a.labels));
  }
}

// Thread per element (r, j) of the (N, C) matrix.
template <class D, class L>
__global__ void xent_backward_kernel(typename D::Index total, D Cd, float inv_n,
                                     const float* __restrict__ probs, const L* __restrict__ labels,
                                     float* __restrict__ dlogits, int32_t* bad_label) {
  using I = typename D::Index;
  for (I k = I(blockIdx.x) * blockDim.x + threadIdx.x; k < total; k += I(gridDim.x) * blockDim.x) {
    const I r = Cd.div(k);
    const int64_t j = k - r * I(Cd.d), label = static_cast<int64_t>(labels[r]);
    if (label < 0 || label >= int64_t(Cd.d)) *bad_label = 1;
    dlogits[k] = (probs[k] - (j == label ? 1.f : 0.f)) * inv_n;
  }
}

template <class L>
void xent_backward_typed(const SoftmaxXentBackwardArgs& a, const L* labels) {
  const hipStream_t st = current_stream();
  HG_GPU_CHECK(hipMemsetAsync(a.bad_label, 0, sizeof(int32_t), st));
  const int64_t total = a.N * a.C;
  const float inv_n = static_cast<float>(1.0 / double(a.N));
  with_divider(total, [&](auto tag) {
    using D = decltype(tag);
    xent_backward_kernel<D, L><<<blocks_for(total), kThreads, 0, st>>>(
        typename D::Index(total), D(a.C), inv_n, a.probs, labels, a.dlogits, a.bad_label);
    HG_LAUNCH_CHECK("xent_backward_kernel");
  });
}

void softmax_cross_entropy_backward_gpu(const SoftmaxXentBackwardArgs& a) {
  if (a.N == 0 || a.C == 0) return;
  if (a.label_dtype == DType::i32) {
    xent_backward_typed(a, static_cast<const int32_t*>(a.labels));
  } else {
    xent_backward_typed(a, static_cast<const int64_t*>(a.labels));
  }
}

template <Path P>
void softmax_gpu(const SoftmaxArgs& a) {
  if (a.rows == 0 || a.cols == 0) return;
  launch_softmax_rows<false, int64_t>(P, a.rows, a.cols, a.x, a.y, nullptr, nullptr);
}

// ---- MSE ---------------------------------------------------------------------------------------
constexpr int64_t kMsePerThread = 8;   // elements each thread adds at least
constexpr int64_t kMseMaxBlocks = 1024;

__global__ void mse_partials(int64_t n, const float* __restrict__ pred,
                             const float* __restrict__ target, float* __restrict__ partials) {
  __shared__ float smem[32];
  float acc = 0.f;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float d = pred[i] - target[i];
    acc += d * d;
  }
  acc = block_sum(acc, smem);
  if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

__global__ void mse_finish(int64_t count, const float* __restrict__ partials, int64_t n, float* loss) {
  __shared__ double smem[32];
  double sum = 0.0;
  for (int64_t k = threadIdx.x; k < count; k += blockDim.x) sum += partials[k];
  sum = block_sum(sum, smem);
  if (threadIdx.x == 0) *loss = static_cast<float>(sum / double(n));
}

__global__ void mse_v0(int64_t n, const float* __restrict__ pred, const float* __restrict__ target,
                       float* loss) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = double(pred[i]) - double(target[i]);
    sum += d * d;
  }
  *loss = static_cast<float>(sum / double(n));
}

template <Path P>
void mse_loss_gpu(const MseArgs& a) {
  const hipStream_t st = current_stream();
  if (P == Path::reference) {
    mse_v0<<<1, 1, 0, st>>>(a.n, a.pred, a.target, a.loss);
    HG_LAUNCH_CHECK("mse_v0");
    return;
  }
  // The block count depends on n only, so the summation order does too.
  const int64_t per_block = kThreads * kMsePerThread;
  const int64_t blocks = std::clamp<int64_t>((a.n + per_block - 1) / per_block, 1, kMseMaxBlocks);
  Tensor partials = scratch(blocks);
  mse_partials<<<unsigned(blocks), kThreads, 0, st>>>(a.n, a.pred, a.target, partials.data<float>());
  HG_LAUNCH_CHECK("mse_partials");
  mse_finish<<<1, kThreads, 0, st>>>(blocks, partials.data<float>(), a.n, a.loss);
  HG_LAUNCH_CHECK("mse_finish");
}

__global__ void mse_backward_kernel(int64_t n, float scale, const float* __restrict__ pred,
                                    const float* __restrict__ target, float* __restrict__ dpred) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    dpred[i] = scale * (pred[i] - target[i]);
  }
}

void mse_loss_backward_gpu(const MseBackwardArgs& a) {
  if (a.n == 0) return;
  const float scale = static_cast<float>(2.0 / double(a.n));
  mse_backward_kernel<<<blocks_for(a.n), kThreads, 0, current_stream()>>>(a.n, scale, a.pred, a.target,
                                                                        a.dpred);
  HG_LAUNCH_CHECK("mse_backward_kernel");
}

}  // namespace
}  // namespace hg::gpu

HG_REGISTER_KERNEL(softmax_cross_entropy_op, gpu, handwritten, "gpu.softmax_xent_rows",
                   &hg::gpu::softmax_cross_entropy_gpu<hg::gpu::Path::fast>);
HG_REGISTER_REFERENCE(softmax_cross_entropy_op, gpu, "gpu.softmax_xent_v0",
                      &hg::gpu::softmax_cross_entropy_gpu<hg::gpu::Path::reference>);
HG_REGISTER_KERNEL(softmax_cross_entropy_backward_op, gpu, handwritten, "gpu.softmax_xent_backward",
                   &hg::gpu::softmax_cross_entropy_backward_gpu);
HG_REGISTER_KERNEL(softmax_op, gpu, handwritten, "gpu.softmax_rows",
                   &hg::gpu::softmax_gpu<hg::gpu::Path::fast>);
HG_REGISTER_REFERENCE(softmax_op, gpu, "gpu.softmax_v0", &hg::gpu::softmax_gpu<hg::gpu::Path::reference>);
HG_REGISTER_KERNEL(mse_loss_op, gpu, handwritten, "gpu.mse_loss_two_stage",
                   &hg::gpu::mse_loss_gpu<hg::gpu::Path::fast>);
HG_REGISTER_REFERENCE(mse_loss_op, gpu, "gpu.mse_loss_v0", &hg::gpu::mse_loss_gpu<hg::gpu::Path::reference>);
HG_REGISTER_KERNEL(mse_loss_backward_op, gpu, handwritten, "gpu.mse_loss_backward",
                   &hg::gpu::mse_loss_backward_gpu);
