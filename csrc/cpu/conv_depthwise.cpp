// Direct depthwise convolution (groups == C == K: output channel c sees input channel c only),
// the handwritten CPU kernel's path for that case. im2col + GEMM would multiply a 1 x R*S row
// by an R*S x P*Q matrix per channel and spend most of its time building the matrix.
// Each loop iteration owns one (n, c) plane. The plane is first copied into a per-thread
// zero-padded buffer holding every input element the taps can touch (padding, dilation and
// the rounding of Q up to 8 included), so the loops below test no bounds (depthwise_direct
// leaves to im2col + GEMM the shapes where that buffer would dwarf the planes):
//   correlate_plane (forward; stride-1 backward data as the correlation of dy with the flipped
//                    kernel): out[p, q] = init + sum_{r,s} k[r, s] * xpad[p*sh + r*dh,
//                    q*sw + s*dw]; 16 output columns per step in two 8-float vectors, all
//                    R*S taps accumulated in registers before one store.
//   scatter_plane   (backward data with stride > 1): every tap adds w[r, s] * dy[p, :] into the
//                    strided row of a padded dx buffer it came from; the buffer is cropped to dx.
//   weight_plane    (backward weight): dw[r, s] += sum_{p,q} dy[p, q] * xpad[...], 8 lanes
//                    accumulated over all rows and reduced once per tap.
// conv2d_bias_act's depthwise case passes an activation, applied to each plane as it is finished,
// and its residual, added to the accumulators before the store (it may be y itself: each output
// vector reads its residual just before it is written).
// Backward weight threads take runs of planes, each summing into its own (C, R, S) partial.
// The per-plane routines are compiled for x86-64-v4 (AVX-512), v3 (AVX2+FMA) and the baseline
// and picked by CPU features at load time (GCC >= 12 target_clones); their loops are written on
// 8-float vectors (GCC vector extension).
// Layouts as ops.h: x (N, C, H, W), w (C, 1, R, S), y (N, C, P, Q).
// Test: PYTHONPATH=python python3 -m pytest -q tests/ops/test_conv.py -k "g3 or g7 or g1-"

#include <algorithm>
#include <memory>
#include <vector>

#include "cpu_clones.h"
#include "cpu_kernels.h"
#include "im2col.h"

// The 8-float vector helpers are always inlined, so the ABI note GCC gives about returning
// them without AVX does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace hg::cpu {

namespace {

using vf8 = float __attribute__((vector_size(32), aligned(4), may_alias));
constexpr int64_t kParallelMin = 1 << 14;  // multiply-adds below which one thread is faster

HG_INLINE vf8 load8(const float* p) { return *reinterpret_cast<const vf8*>(p); }
HG_INLINE vf8 load8(const float* p, int64_t stride) {
  return vf8{p[0], p[stride], p[2 * stride], p[3 * stride],
             p[4 * stride], p[5 * stride], p[6 * stride], p[7 * stride]};
}
HG_INLINE float sum8(vf8 v) {
  return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
}

// One plane's correlation: input H x W read at rows p*sh - ph + r*dh and columns
// q*sw - pw + s*dw for output P x Q and kernel R x S. The padded buffer has `rows` x `cols`
// elements, xpad[i][j] = in[i - ph][j - pw] (0 outside; a negative padding crops).
struct Plane {
  int64_t H, W, P, Q, R, S, sh, sw, ph, pw, dh, dw;
  template <class T = int64_t>
  T rows() const { return T(P - 1) * sh + T(R - 1) * dh + 1; }
  template <class T = int64_t>
  T cols() const { return T(((Q + 7) / 8) * 8 - 1) * sw + T(S - 1) * dw + 1; }
};
Plane forward_plane(const ConvGeometry& g) {
  return {g.H, g.W, g.P, g.Q, g.R, g.S, g.stride_h, g.stride_w, g.pad_h, g.pad_w, g.dil_h, g.dil_w};
}
// Stride-1 backward data as a correlation over dy: dx[h, w] reads dy[h + ph - r*dh, ...], which
// is the flipped kernel with padding (R-1)*dh - ph.
Plane transposed_plane(const ConvGeometry& g) {
  return {g.P, g.Q, g.H, g.W, g.R, g.S, 1, 1, (g.R - 1) * g.dil_h - g.pad_h,
          (g.S - 1) * g.dil_w - g.pad_w, g.dil_h, g.dil_w};
}

// Per-thread scratch: the padded plane, each tap's offset in it, and a flipped kernel.
struct Scratch {
  std::vector<float> pad, flipped;
  std::vector<int64_t> tap;
  explicit Scratch(const Plane& k)
      : pad(k.rows() * k.cols()), flipped(k.R * k.S), tap(k.R * k.S) {
    for (int64_t r = 0; r < k.R; ++r)
      for (int64_t s = 0; s < k.S; ++s) tap[r * k.S + s] = r * k.dh * k.cols() + s * k.dw;
  }
};

void pad_plane(const Plane& k, const float* __restrict in, float* __restrict xp) {
  const int64_t rows = k.rows(), cols = k.cols();
  const int64_t j0 = std::clamp<int64_t>(k.pw, 0, cols);
  const int64_t j1 = std::clamp<int64_t>(k.W + k.pw, j0, cols);
  for (int64_t i = 0; i < rows; ++i) {
    float* __restrict o = xp + i * cols;
    const int64_t h = i - k.ph;
    if (h < 0 || h >= k.H) {
      std::fill(o, o + cols, 0.f);
      continue;
    }
    std::fill(o, o + j0, 0.f);
    std::copy(in + h * k.W + (j0 - k.pw), in + h * k.W + (j1 - k.pw), o + j0);
    std::fill(o + j1, o + cols, 0.f);
  }
}

// Stores the first min(8, n) lanes of v at o.
HG_INLINE void store8(float* o, vf8 v, int64_t n) {
  if (n >= 8) {
    *reinterpret_cast<vf8*>(o) = v;
  } else {
    for (int64_t j = 0; j < n; ++j) o[j] = v[j];
  }
}

// The first min(8, n) lanes of p, the others 0.
HG_INLINE vf8 load8_partial(const float* p, int64_t n) {
  if (n >= 8) return load8(p);
  vf8 v = vf8{};
  for (int64_t j = 0; j < n; ++j) v[j] = p[j];
  return v;
}

// Taps of output columns [q, q + 8) (and [q + 8, q + 16) when two), accumulated from `src`,
// onto `res` (the same columns of a residual plane; nullptr: none; may be `o` itself).
template <int kVectors>
HG_INLINE void correlate_columns(const float* __restrict src, const int64_t* __restrict tap,
                                 const float* __restrict wk, int64_t taps, int64_t sw,
                                 float init, const float* res, float* o, int64_t left) {
  vf8 acc0 = init - vf8{}, acc1 = acc0;
  if (res) {
    acc0 += load8_partial(res, left);
    if (kVectors == 2) acc1 += load8_partial(res + 8, left - 8);
  }
  if (sw == 1) {
    for (int64_t i = 0; i < taps; ++i) {
      acc0 += wk[i] * load8(src + tap[i]);
      if (kVectors == 2) acc1 += wk[i] * load8(src + tap[i] + 8);
    }
  } else {
    for (int64_t i = 0; i < taps; ++i) {
      acc0 += wk[i] * load8(src + tap[i], sw);
      if (kVectors == 2) acc1 += wk[i] * load8(src + tap[i] + 8 * sw, sw);
    }
  }
  store8(o, acc0, left);
  if (kVectors == 2) store8(o + 8, acc1, left - 8);
}

// `res`: a residual plane added to the output (nullptr: none); it may be `out` itself.
HG_CPU_CLONES
void correlate_plane(const Plane& k, const float* in, const float* __restrict wk, float init,
                     const float* res, float* out, Scratch& t) {
  pad_plane(k, in, t.pad.data());
  const int64_t cols = k.cols(), taps = k.R * k.S, Q8 = (k.Q + 7) / 8 * 8;
  for (int64_t p = 0; p < k.P; ++p) {
    const float* row = t.pad.data() + p * k.sh * cols;
    float* o = out + p * k.Q;
    const float* r = res ? res + p * k.Q : nullptr;
    int64_t q = 0;
    for (; q + 16 <= Q8; q += 16) {  // two independent accumulators hide the FMA latency
      correlate_columns<2>(row + q * k.sw, t.tap.data(), wk, taps, k.sw, init, r ? r + q : r,
                           o + q, k.Q - q);
    }
    if (q < k.Q) {
      correlate_columns<1>(row + q * k.sw, t.tap.data(), wk, taps, k.sw, init, r ? r + q : r,
                           o + q, k.Q - q);
    }
  }
}

HG_CPU_CLONES
void scatter_plane(const Plane& k, const float* __restrict dy, const float* __restrict wk,
                   float* __restrict dx, Scratch& t) {
  const int64_t rows = k.rows(), cols = k.cols(), taps = k.R * k.S;
  float* __restrict xp = t.pad.data();
  std::fill(xp, xp + rows * cols, 0.f);
  for (int64_t p = 0; p < k.P; ++p) {
    const float* __restrict d = dy + p * k.Q;
    for (int64_t i = 0; i < taps; ++i) {
      float* __restrict dst = xp + p * k.sh * cols + t.tap[i];
      const float wv = wk[i];
      for (int64_t q = 0; q < k.Q; ++q) dst[q * k.sw] += wv * d[q];
    }
  }
  const int64_t w1 = std::clamp<int64_t>(cols - k.pw, 0, k.W);  // dx columns inside the buffer
  for (int64_t h = 0; h < k.H; ++h) {
    float* __restrict o = dx + h * k.W;
    const int64_t i = h + k.ph;
    if (i >= rows) {
      std::fill(o, o + k.W, 0.f);
      continue;
    }
    std::copy(xp + i * cols + k.pw, xp + i * cols + k.pw + w1, o);
    std::fill(o + w1, o + k.W, 0.f);
  }
}

HG_CPU_CLONES
void weight_plane(const Plane& k, const float* in, const float* __restrict dy,
                  float* __restrict dw, Scratch& t) {
  pad_plane(k, in, t.pad.data());
  const int64_t cols = k.cols(), taps = k.R * k.S;
  for (int64_t i = 0; i < taps; ++i) {
    vf8 acc = vf8{};
    float tail = 0.f;
    for (int64_t p = 0; p < k.P; ++p) {
      const float* __restrict src = t.pad.data() + p * k.sh * cols + t.tap[i];
      const float* __restrict d = dy + p * k.Q;
      int64_t q = 0;
      if (k.sw == 1) {
        for (; q + 8 <= k.Q; q += 8) acc += load8(d + q) * load8(src + q);
      } else {
        for (; q + 8 <= k.Q; q += 8) acc += load8(d + q) * load8(src + q * k.sw, k.sw);
      }
      for (; q < k.Q; ++q) tail += d[q] * src[q * k.sw];
    }
    dw[i] += sum8(acc) + tail;
  }
}

// The padded plane may hold far more than the taps read when the stride or dilation skips most
// of a large padding (a 3x3 input padded by 1e5 with stride 1e5: ~1.4e11 floats for a 3x3
// output); past this bound the lowered path (one col entry per output pixel and tap) serves.
double padded_plane_ratio(const Plane& k) {
  // In double: with a huge stride or dilation the sizes themselves may pass 2^63.
  return k.rows<double>() * k.cols<double>() / double(k.H * k.W + k.P * k.Q + (1 << 14));
}

int threads_for(int64_t macs, int64_t planes) {
  const int64_t want = macs >= kParallelMin ? num_threads() : 1;
  return int(std::max<int64_t>(1, std::min<int64_t>(want, planes)));
}

}  // namespace

bool depthwise_direct(const ConvGeometry& g) {
  if (!is_depthwise(g)) return false;
  constexpr double kMaxPaddedRatio = 4.0;
  const bool unit_stride = g.stride_h == 1 && g.stride_w == 1;
  return padded_plane_ratio(forward_plane(g)) <= kMaxPaddedRatio &&
         (!unit_stride || padded_plane_ratio(transposed_plane(g)) <= kMaxPaddedRatio);
}

void conv2d_depthwise_forward(const ConvForwardArgs& a, const FusedEpilogue* epi,
                              const float* residual) {
  const ConvGeometry& g = a.g;
  const Plane k = forward_plane(g);
  const int64_t planes = g.N * g.C, HW = g.H * g.W, PQ = g.P * g.Q, RS = g.R * g.S;
  const int T = threads_for(planes * PQ * RS, planes);
  std::vector<Scratch> scratches(T, Scratch(k));  // allocated here: no exception in the region
  GemmEpilogue act_only;  // the activation only: the bias went in as the initial value
  if (epi) act_only.op = FusedEpilogue{nullptr, epi->has_act, epi->act, epi->alpha};
  const GemmEpilogue* act = epi && epi->has_act ? &act_only : nullptr;
  parallel_for(planes, T, [&](int64_t plane) {
    Scratch& scratch = scratches[parallel_slot()];
    const int64_t c = plane % g.C;
    correlate_plane(k, a.x + plane * HW, a.w + c * RS, a.bias ? a.bias[c] : 0.f,
                    residual ? residual + plane * PQ : nullptr, a.y + plane * PQ, scratch);
    if (act) apply_epilogue(*act, 0, 0, 1, PQ, a.y + plane * PQ, PQ);  // the plane is in cache
  });
}

void conv2d_depthwise_backward_data(const ConvBackwardDataArgs& a) {
  const ConvGeometry& g = a.g;
  const bool unit_stride = g.stride_h == 1 && g.stride_w == 1;
  const Plane k = unit_stride ? transposed_plane(g) : forward_plane(g);
  const int64_t planes = g.N * g.C, HW = g.H * g.W, PQ = g.P * g.Q, RS = g.R * g.S;
  const int T = threads_for(planes * PQ * RS, planes);
  std::vector<Scratch> scratches(T, Scratch(k));  // allocated here: no exception in the region
  parallel_for(planes, T, [&](int64_t plane) {
    Scratch& scratch = scratches[parallel_slot()];
    const float* w = a.w + (plane % g.C) * RS;
    if (unit_stride) {
      std::reverse_copy(w, w + RS, scratch.flipped.begin());
      correlate_plane(k, a.dy + plane * PQ, scratch.flipped.data(), 0.f, nullptr,
                      a.dx + plane * HW, scratch);
    } else {
      scatter_plane(k, a.dy + plane * PQ, w, a.dx + plane * HW, scratch);
    }
  });
}

void conv2d_depthwise_backward_weight(const ConvBackwardWeightArgs& a) {
  const ConvGeometry& g = a.g;
  const Plane k = forward_plane(g);
  const int64_t planes = g.N * g.C, HW = g.H * g.W, PQ = g.P * g.Q, RS = g.R * g.S;
  const int64_t dw_size = g.C * RS;
  const int T = threads_for(planes * PQ * RS, planes);
  std::unique_ptr<float[]> partial(new float[dw_size * T]);
  std::vector<Scratch> scratches(T, Scratch(k));
  // T fixed runs of planes (claimed by whichever thread is free), one partial dw each, added in
  // run order: the result depends on T only.
  parallel_tasks(T, T, [&](int64_t t) {
    Scratch& scratch = scratches[parallel_slot()];
    float* acc = partial.get() + t * dw_size;
    std::fill(acc, acc + dw_size, 0.f);
    for (int64_t plane = planes * t / T; plane < planes * (t + 1) / T; ++plane)
      weight_plane(k, a.x + plane * HW, a.dy + plane * PQ, acc + (plane % g.C) * RS, scratch);
  });
  for (int64_t i = 0; i < dw_size; ++i) {
    float sum = 0.f;
    for (int t = 0; t < T; ++t) sum += partial[t * dw_size + i];
    a.dw[i] = sum;
  }
}

}  // namespace hg::cpu
