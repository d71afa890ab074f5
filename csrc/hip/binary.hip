// GPU broadcasting binary ops: y = a (add | sub | mul | div) b over y's collapsed axes
// (ops_graph.h, BinaryArgs), float32, IEEE division.
//
// Kernel gpu.binary_broadcast (handwritten, the only one; the vendor slot falls back to it) picks
// one of three launches, each a grid-stride loop with one thread per output element (consecutive
// threads on consecutive elements, so every read of a full operand is coalesced):
//   flat     one axis: a[i * sa], b[i * sb] (same shape, or one side a single element); with both
//            full and every pointer 16-byte aligned, a float4 per thread and step;
//   channel  one operand full (contiguous over y) and the other varying along one axis only:
//            its element (i / inner) % C (NCHW * NC11, NCHW * C11, rows * row vector);
//   general  any broadcast: y's multi-index from i by division, axis by axis.
// The element path of flat is the simple form, so there is no separate v0. y may be a or b
// itself (each thread reads its element before writing it).
//
// Test:  PYTHONPATH=python python3 -m pytest -q tests/ops/test_binary.py -m gpu
#include "kernels_elementwise.h"

namespace hg::gpu {
namespace {

template <BinaryKind K>
__device__ inline float apply(float a, float b) {
  if constexpr (K == BinaryKind::add) return a + b;
  if constexpr (K == BinaryKind::sub) return a - b;
  if constexpr (K == BinaryKind::mul) return a * b;
  return a / b;
}

template <BinaryKind K>
__global__ void binary_flat(int64_t n, int64_t sa, int64_t sb, const float* a, const float* b,
                            float* y, bool vec4) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t done = 0;
  if (vec4) {  // sa == sb == 1
    const int64_t n4 = n / 4;
    for (int64_t i = tid; i < n4; i += stride) {
      const float4 u = reinterpret_cast<const float4*>(a)[i];
      const float4 v = reinterpret_cast<const float4*>(b)[i];
      float4 r;
      r.x = apply<K>(u.x, v.x);
      r.y = apply<K>(u.y, v.y);
      r.z = apply<K>(u.z, v.z);
      r.w = apply<K>(u.w, v.w);
      reinterpret_cast<float4*>(y)[i] = r;
    }
    done = n4 * 4;
  }
  for (int64_t i = done + tid; i < n; i += stride) y[i] = apply<K>(a[i * sa], b[i * sb]);
}

// FullA: a is the full operand and b the one indexed by (i / inner) % C; else the reverse.
template <BinaryKind K, bool FullA>
__global__ void binary_channel(int64_t n, int64_t inner, int64_t C, const float* a,
                               const float* b, float* y) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = (i / inner) % C;
    y[i] = FullA ? apply<K>(a[i], b[c]) : apply<K>(a[c], b[i]);
  }
}

template <BinaryKind K>
__global__ void binary_general(BinaryArgs g) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < g.n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t rest = i, oa = 0, ob = 0;
    for (int d = g.ndim - 1; d >= 0; --d) {
      const int64_t q = rest / g.shape[d], r = rest - q * g.shape[d];
      oa += r * g.a_stride[d];
      ob += r * g.b_stride[d];
      rest = q;
    }
    g.y[i] = apply<K>(g.a[oa], g.b[ob]);
  }
}

// Whether strides s are y's contiguous strides (the operand is full).
bool full(const BinaryArgs& g, const int64_t* s) {
  int64_t p = 1;
  for (int d = g.ndim - 1; d >= 0; --d) {
    if (s[d] != p) return false;
    p *= g.shape[d];
  }
  return true;
}

// The one axis along which strides s vary, with stride 1 there (C = its extent, inner = the
// elements after it); false when s is anything else.
bool one_axis(const BinaryArgs& g, const int64_t* s, int64_t* C, int64_t* inner) {
  int axis = -1;
  for (int d = 0; d < g.ndim; ++d) {
    if (s[d] == 0) continue;
    if (axis >= 0 || s[d] != 1) return false;
    axis = d;
  }
  if (axis < 0) return false;
  *C = g.shape[axis];
  *inner = 1;
  for (int d = axis + 1; d < g.ndim; ++d) *inner *= g.shape[d];
  return true;
}

template <BinaryKind K>
void launch(const BinaryArgs& g) {
  const unsigned grid = blocks_for(g.n);
  hipStream_t s = current_stream();
  int64_t C = 0, inner = 0;
  if (g.ndim == 1) {
    const bool vec4 = g.a_stride[0] == 1 && g.b_stride[0] == 1 && aligned16(g.a) &&
                      aligned16(g.b) && aligned16(g.y);
    binary_flat<K><<<vec4 ? blocks_for((g.n + 3) / 4) : grid, kThreads, 0, s>>>(
        g.n, g.a_stride[0], g.b_stride[0], g.a, g.b, g.y, vec4);
    HG_LAUNCH_CHECK("binary_flat");
  } else if (full(g, g.a_stride) && one_axis(g, g.b_stride, &C, &inner)) {
    binary_channel<K, true><<<grid, kThreads, 0, s>>>(g.n, inner, C, g.a, g.b, g.y);
    HG_LAUNCH_CHECK("binary_channel");
  } else if (full(g, g.b_stride) && one_axis(g, g.a_stride, &C, &inner)) {
    binary_channel<K, false><<<grid, kThreads, 0, s>>>(g.n, inner, C, g.a, g.b, g.y);
    HG_LAUNCH_CHECK("binary_channel");
  } else {
    binary_general<K><<<grid, kThreads, 0, s>>>(g);
    HG_LAUNCH_CHECK("binary_general");
  }
}

void binary_gpu(const BinaryArgs& g) {
  if (g.n == 0) return;
  switch (g.kind) {
    case BinaryKind::add: return launch<BinaryKind::add>(g);
    case BinaryKind::sub: return launch<BinaryKind::sub>(g);
    case BinaryKind::mul: return launch<BinaryKind::mul>(g);
    case BinaryKind::div: return launch<BinaryKind::div>(g);
  }
}

}  // namespace
}  // namespace hg::gpu

HG_REGISTER_KERNEL(binary_op, gpu, handwritten, "gpu.binary_broadcast", &hg::gpu::binary_gpu);
