// CPU 2-D pooling, NCHW, contiguous float32 (argmax int64), PyTorch semantics (floor or ceil
// mode, padding <= kernel/2, so every window holds at least one input element; ceil mode's last
// windows may reach past the padding and are clipped to the input like any edge window):
//   max_pool2d           y = max over the window (padding is -inf); argmax (unless nullptr) =
//                        h*W + w of the first maximum in row-major window order (PyTorch's CPU
//                        choice). A NaN in the window wins; of several, the last (PyTorch's
//                        `val > max || isnan(val)`). y is x[argmax] bit for bit, with or
//                        without argmax (a tie of +0 and -0 keeps the first);
//   max_pool2d_backward  dx = scatter-add of dy at argmax; dx fully written;
//   avg_pool2d           y = window sum / divisor: kh*kw for a window inside the input; for a
//                        window clipped by an edge, its extent inside the padded input
//                        (count_include_pad) or its number of input elements;
//   avg_pool2d_backward  dx[h, w] = sum of dy / divisor over the windows that cover (h, w).
//
// Kernels: cpu.*_planes (handwritten, the only ones; the vendor slots fall back to them, as
// OpenBLAS has no pooling routine). The forwards (max with and without argmax, average) share
// two paths:
//   rows   y's N*C*P output rows, split among threads. Per row, windows clipped by the padding
//          take a runtime-size loop; the interior ones one branch-free loop over q with the
//          window unrolled, which GCC vectorizes across outputs (2x2 and 3x3 stride 2 and 3x3
//          stride 1 are fixed at compile time, strides 1 and 2 with any kernel too).
//   lanes  planes of at most kLanePlaneMax elements whose rows hold fewer than kLaneMinQ
//          outputs (LeNet's 28x28 down to 4x4), where a row would not fill a vector: 8 planes
//          are transposed (8x8 shuffles) into a stack buffer whose element h*W + w is an
//          8-float vector, one plane per lane, pooled there by the same row code, and
//          transposed back. All lanes share the geometry, so padding, argmax and NaN need
//          nothing extra. The N*C % 8 leftover planes take the rows path.
// Max pooling folds with one max instruction (v > m ? v : m, keeping the first) wherever the
// input it reads holds no NaN: the rows path scans each block of about kScanBlock input
// elements first (bringing it into L1), the lanes path tests the vectors it transposes; a block
// with a NaN runs the runtime-size loops with the NaN-aware fold. Index selects are bit masks,
// which vectorize. The per-thread bodies are compiled for x86-64-v4, x86-64-v3 and the baseline
// and picked at load time (GCC target_clones). Threads start above kParallelMin input elements.
// Backward: max scatters dy into its zeroed plane; average, for each output row and kernel
// offset (r, s), runs one branch-free loop over the output columns q whose input column lies
// inside the row (the range computed up front), contiguous in dy and strided in dx. Both give
// one thread whole (n, c) planes.
//
// Test:  PYTHONPATH=python python3 -m pytest -q tests/ops/test_pool.py
// Bench: PYTHONPATH=python python3 -m timeit -s "import numpy as np, hipgrad as hg;
//          x = hg.tensor(np.random.randn(256, 16, 8, 8))"
//          "hg.ops.max_pool2d(x, 2, with_argmax=False)"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/checks.h"
#include "cpu_clones.h"
#include "cpu_kernels.h"

// The same for a lambda, written after its parameter list: the vectorized loops must not call.
#define HG_INLINE_LAMBDA __attribute__((always_inline))
// The 8-float vectors live in always-inlined code, so GCC's note about passing them without AVX
// does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace hg::cpu {
namespace {

constexpr int64_t kParallelMin = 1 << 15;

// ---- Forward ---------------------------------------------------------------------------------

enum class Pool { max, max_argmax, avg };

// Eight planes side by side, one per lane (the GCC vector extension: plain arithmetic,
// comparisons give lane masks, `mask ? a : b` selects lane by lane). vf8 and vi8 are aligned
// (the lane buffers); vf8u reads and writes x and y at any float boundary.
using vf8 = float __attribute__((vector_size(32)));
using vi8 = int32_t __attribute__((vector_size(32)));
using vf8u = float __attribute__((vector_size(32), aligned(4), may_alias));
using vl8u = int64_t __attribute__((vector_size(64), aligned(8), may_alias));
// For y elements T: the argmax element, and the window offset the fold tracks.
template <class T> struct IndexOf { using type = int64_t; using offset = int32_t; };
template <> struct IndexOf<vf8> { using type = vi8; using offset = vi8; };

// What a forward reads and writes: planes of T (float, or vf8: 8 planes interleaved), y and,
// for Pool::max_argmax, argmax indexed like y (average pooling's divisors come from g).
template <class T>
struct ForwardJob {
  PoolGeometry g;
  const T* x;
  T* y;
  typename IndexOf<T>::type* argmax;
};

// A comparison as an all-ones / all-zeros mask (vector comparisons already are): the index
// select then is bitwise, which GCC vectorizes (it turns a select on a float comparison into
// a branch, since the comparison may trap).
template <class M>
HG_INLINE auto lane_mask(M m) {
  if constexpr (std::is_arithmetic_v<M>) {
    return -int32_t(m);
  } else {
    return m;
  }
}

// f(0), f(1), ..., f(n - 1) as straight-line code.
template <class F, size_t... I>
HG_INLINE void for_each_index(std::index_sequence<I...>, F&& f) {
  (f(int64_t(I)), ...);
}

// One window: its in-bounds elements c[r*W + s], r < rows, s < cols (KH, KW > 0 fix the counts
// at compile time), c being element `at` of its plane. Max folds in row-major order, taking v
// when v > m, or when v is NaN if NANS (the caller passes NANS = false only for NaN-free
// input): the first maximum, or the last NaN, wins; a window of -inf points at its first
// element. Without NaNs the fold is one max instruction, and branch-free with them.
template <Pool K, bool NANS, int KH, int KW, class T>
HG_INLINE void pool_window(const T* __restrict c, int64_t rows, int64_t cols, int64_t W,
                           int64_t at, float inv, T* __restrict y,
                           typename IndexOf<T>::type* __restrict argmax) {
  using Offset = typename IndexOf<T>::offset;
  T m = c[0];
  Offset k{};
  const auto fold = [&](int64_t off) HG_INLINE_LAMBDA {
    const T v = c[off];
    if constexpr (K == Pool::avg) {
      m += v;
    } else {
      const auto take = lane_mask(NANS ? (v > m) | (v != v) : v > m);
      m = take ? v : m;
      if constexpr (K == Pool::max_argmax) k = (take & int32_t(off)) | (~take & k);
    }
  };
  if constexpr (KH > 0 && KW > 0) {  // straight-line code, so the loop over q can vectorize
    for_each_index(std::make_index_sequence<KH * KW - 1>(),
                   [&](int64_t i) HG_INLINE_LAMBDA { fold((i + 1) / KW * W + (i + 1) % KW); });
  } else {
    const int64_t R = KH > 0 ? KH : rows, S = KW > 0 ? KW : cols;
    for (int64_t s = 1; s < S; ++s) fold(s);
    for (int64_t r = 1; r < R; ++r) {
      for (int64_t s = 0; s < S; ++s) fold(r * W + s);
    }
  }
  if constexpr (K == Pool::avg) m *= inv;
  *y = m;
  if constexpr (K == Pool::max_argmax) *argmax = k + int32_t(at);
}

// Output rows [begin, end) of the N*C*P rows of y. A row's windows split into those clipped
// by the padding (the few left and right edge columns, and whole rows at the top and bottom,
// with runtime extents) and the interior columns, whose fixed-size windows (KH, KW, SW > 0:
// compile-time) are one branch-free loop over q (it vectorizes across outputs for T = float).
template <Pool K, bool NANS, int KH, int KW, int SW, class T>
HG_INLINE void pool_rows(const ForwardJob<T>& j, int64_t begin, int64_t end) {
  const PoolGeometry& g = j.g;
  const int64_t kh = KH > 0 ? KH : g.kh, kw = KW > 0 ? KW : g.kw, sw = SW > 0 ? SW : g.sw;
  const int64_t W = g.W, Q = g.Q, pw = g.pw;
  // Interior columns [q_lo, q_hi): q*sw - pw >= 0 and q*sw - pw + kw <= W.
  const int64_t q_lo = std::min(Q, (pw + sw - 1) / sw);
  const int64_t q_hi = std::max(q_lo, W - kw + pw >= 0 ? std::min(Q, (W - kw + pw) / sw + 1) : 0);
  int64_t nc = begin / g.P, p = begin % g.P;
  for (int64_t row = begin; row < end; ++row) {
    const int64_t h0 = p * g.sh - g.ph;
    const int64_t r0 = std::max<int64_t>(h0, 0), rows = std::min(h0 + kh, g.H) - r0;
    // average pooling's divisor is hext * (the window's width): its extents inside the padded
    // input (count_include_pad; kh and kw unless ceil mode runs past the padding) or the input
    const int64_t hext = g.count_include_pad ? std::min(h0 + kh, g.H + g.ph) - h0 : rows;
    const float inv = K == Pool::avg ? 1.f / float(hext * kw) : 1.f;  // interior windows
    const T* __restrict xr = j.x + nc * g.H * W + r0 * W;  // the windows' first row
    T* __restrict y = j.y + row * Q;
    auto* __restrict am = K == Pool::max_argmax ? j.argmax + row * Q : nullptr;
    const auto at = [=](int64_t q) HG_INLINE_LAMBDA {
      return K == Pool::max_argmax ? am + q : nullptr;
    };
    const auto edge = [=](int64_t q) HG_INLINE_LAMBDA {  // a window clipped by the padding
      const int64_t c0 = std::max<int64_t>(q * sw - pw, 0), c1 = std::min(q * sw - pw + kw, W);
      const int64_t wext = g.count_include_pad ? std::min(q * sw - pw + kw, W + pw) - (q * sw - pw)
                                               : c1 - c0;
      const float edge_inv = K == Pool::avg ? 1.f / float(hext * wext) : 1.f;
      pool_window<K, NANS, 0, 0>(xr + c0, rows, c1 - c0, W, r0 * W + c0, edge_inv, y + q, at(q));
    };
    for (int64_t q = 0; q < q_lo; ++q) edge(q);
    for (int64_t q = q_hi; q < Q; ++q) edge(q);
    if (rows == kh) {
      for (int64_t q = q_lo; q < q_hi; ++q) {
        pool_window<K, NANS, KH, KW>(xr + q * sw - pw, kh, kw, W, r0 * W + q * sw - pw, inv,
                                     y + q, at(q));
      }
    } else {
      for (int64_t q = q_lo; q < q_hi; ++q) {
        pool_window<K, NANS, 0, KW>(xr + q * sw - pw, rows, kw, W, r0 * W + q * sw - pw, inv,
                                    y + q, at(q));
      }
    }
    if (++p == g.P) p = 0, ++nc;
  }
}

// The geometries compiled with fixed sizes: 2x2 stride 2 (LeNet, VGG) and 3x3 stride 2 (ResNet
// stems); for rows of floats (where the loop over q vectorizes) also 3x3 stride 1, and strides
// 1 and 2 with runtime kernel sizes. Any other runs with runtime sizes, as does input holding
// NaN (rare).
template <Pool K, bool NANS, class T>
HG_INLINE void pool_rows_any(const ForwardJob<T>& j, int64_t begin, int64_t end) {
  const PoolGeometry& g = j.g;
  if constexpr (!NANS) {
    if (g.kh == 2 && g.kw == 2 && g.sw == 2) return pool_rows<K, false, 2, 2, 2>(j, begin, end);
    if (g.kh == 3 && g.kw == 3 && g.sw == 2) return pool_rows<K, false, 3, 3, 2>(j, begin, end);
    if constexpr (std::is_same_v<T, float>) {
      if (g.kh == 3 && g.kw == 3 && g.sw == 1) return pool_rows<K, false, 3, 3, 1>(j, begin, end);
      if (g.sw == 1) return pool_rows<K, false, 0, 0, 1>(j, begin, end);
      if (g.sw == 2) return pool_rows<K, false, 0, 0, 2>(j, begin, end);
    }
  }
  pool_rows<K, NANS, 0, 0, 0>(j, begin, end);
}

HG_INLINE bool has_nan(const float* __restrict x, int64_t n) {
  int nan = 0;
  for (int64_t i = 0; i < n; ++i) nan |= x[i] != x[i];
  return nan;
}

// Max pooling with T = float in blocks of output rows that read about kScanBlock input
// elements: each block's input span is scanned for NaN (which also brings it into L1), then
// pooled with the plain max fold if it holds none. Average pooling needs no scan.
constexpr int64_t kScanBlock = 4096;
template <Pool K>
HG_INLINE void pool_rows_scanned(const ForwardJob<float>& j, int64_t begin, int64_t end) {
  const PoolGeometry& g = j.g;
  if constexpr (K == Pool::avg) {
    pool_rows_any<K, false>(j, begin, end);
  } else {
    const int64_t step = std::max<int64_t>(1, kScanBlock / (std::max(g.sh, g.kh) * g.W));
    const auto input_row = [&](int64_t row, int64_t dr) {  // offset in x of a window row
      const int64_t nc = row / g.P, h = (row % g.P) * g.sh - g.ph + dr;
      return nc * g.H * g.W + std::clamp<int64_t>(h, 0, g.H) * g.W;
    };
    for (int64_t b = begin; b < end; b += step) {
      const int64_t e = std::min(end, b + step);
      const int64_t lo = input_row(b, 0), hi = input_row(e - 1, g.kh);
      if (has_nan(j.x + lo, hi - lo)) {
        pool_rows_any<K, true>(j, b, e);
      } else {
        pool_rows_any<K, false>(j, b, e);
      }
    }
  }
}

// 8x8 transpose: out[i][l] = in[l][i].
HG_INLINE void transpose8(const vf8 (&in)[8], vf8 (&out)[8]) {
  const vi8 lo = {0, 8, 1, 9, 4, 12, 5, 13}, hi = {2, 10, 3, 11, 6, 14, 7, 15};
  const vi8 lo2 = {0, 1, 8, 9, 4, 5, 12, 13}, hi2 = {2, 3, 10, 11, 6, 7, 14, 15};
  const vi8 lo4 = {0, 1, 2, 3, 8, 9, 10, 11}, hi4 = {4, 5, 6, 7, 12, 13, 14, 15};
  vf8 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = __builtin_shuffle(in[i], in[i + 1], lo);
    t[i + 1] = __builtin_shuffle(in[i], in[i + 1], hi);
  }
  for (int i = 0; i < 8; i += 4) {
    for (int h = 0; h < 2; ++h) {
      u[i + 2 * h] = __builtin_shuffle(t[i + h], t[i + h + 2], lo2);
      u[i + 2 * h + 1] = __builtin_shuffle(t[i + h], t[i + h + 2], hi2);
    }
  }
  for (int i = 0; i < 4; ++i) {
    out[i] = __builtin_shuffle(u[i], u[i + 4], lo4);
    out[i + 4] = __builtin_shuffle(u[i], u[i + 4], hi4);
  }
}

// Small planes, 8 at a time (planes [8*group_begin, 8*group_end)): the 8 planes are transposed
// into xt (element h*W + w holds the 8 planes' values), pooled on vf8 by the same row code,
// and yt (and kt) transposed back. The buffers hold kLanePlaneMax vectors (32 KiB) each, on the
// stack; a 32x32 group and its 2x2-pooled output take 40 KiB, about L1.
constexpr int64_t kLanePlaneMax = 1024;
template <Pool K>
HG_INLINE void pool_planes_in_lanes(const ForwardJob<float>& j, int64_t group_begin,
                                    int64_t group_end) {
  const PoolGeometry& g = j.g;
  const int64_t HW = g.H * g.W, PQ = g.P * g.Q;
  vf8 xt[kLanePlaneMax], yt[kLanePlaneMax];
  vi8 kt[K == Pool::max_argmax ? kLanePlaneMax : 1];
  PoolGeometry lanes = g;
  lanes.N = lanes.C = 1;
  const ForwardJob<vf8> jt{lanes, xt, yt, kt};
  for (int64_t group = group_begin; group < group_end; ++group) {
    const float* __restrict x = j.x + group * 8 * HW;
    vi8 nan{};  // lanes that met a NaN (max pooling only)
    int64_t i = 0;
    for (; i + 8 <= HW; i += 8) {
      vf8 in[8], out[8];
      for (int l = 0; l < 8; ++l) {
        in[l] = *reinterpret_cast<const vf8u*>(x + l * HW + i);
        if constexpr (K != Pool::avg) nan |= in[l] != in[l];
      }
      transpose8(in, out);
      for (int e = 0; e < 8; ++e) xt[i + e] = out[e];
    }
    for (; i < HW; ++i) {
      for (int l = 0; l < 8; ++l) xt[i][l] = x[l * HW + i];
      if constexpr (K != Pool::avg) nan |= xt[i] != xt[i];
    }
    bool any_nan = false;
    for (int l = 0; l < 8; ++l) any_nan |= nan[l] != 0;
    if (any_nan) {
      pool_rows_any<K, true>(jt, 0, g.P);
    } else {
      pool_rows_any<K, false>(jt, 0, g.P);
    }
    float* __restrict y = j.y + group * 8 * PQ;
    int64_t* __restrict am = K == Pool::max_argmax ? j.argmax + group * 8 * PQ : nullptr;
    for (i = 0; i + 8 <= PQ; i += 8) {
      vf8 out[8];
      transpose8(*reinterpret_cast<const vf8(*)[8]>(yt + i), out);
      for (int l = 0; l < 8; ++l) *reinterpret_cast<vf8u*>(y + l * PQ + i) = out[l];
    }
    for (; i < PQ; ++i) {
      for (int l = 0; l < 8; ++l) y[l * PQ + i] = yt[i][l];
    }
    if constexpr (K == Pool::max_argmax) {  // the same transpose on the bits, then widened
      for (i = 0; i + 8 <= PQ; i += 8) {
        vf8 out[8];
        transpose8(*reinterpret_cast<const vf8(*)[8]>(kt + i), out);
        for (int l = 0; l < 8; ++l) {
          *reinterpret_cast<vl8u*>(am + l * PQ + i) = __builtin_convertvector((vi8)out[l], vl8u);
        }
      }
      for (; i < PQ; ++i) {
        for (int l = 0; l < 8; ++l) am[l * PQ + i] = kt[i][l];
      }
    }
  }
}

// A thread's share: the planes of groups [group_begin, group_end) in lanes, then output rows
// [row_begin, row_end) by the rows path.
struct Share {
  int64_t group_begin, group_end, row_begin, row_end;
};
template <Pool K>
HG_INLINE void pool_share(const ForwardJob<float>& j, Share s) {
  pool_planes_in_lanes<K>(j, s.group_begin, s.group_end);
  pool_rows_scanned<K>(j, s.row_begin, s.row_end);
}
HG_CPU_CLONES void max_share(const ForwardJob<float>& j, Share s) { pool_share<Pool::max>(j, s); }
HG_CPU_CLONES void max_argmax_share(const ForwardJob<float>& j, Share s) {
  pool_share<Pool::max_argmax>(j, s);
}
HG_CPU_CLONES void avg_share(const ForwardJob<float>& j, Share s) { pool_share<Pool::avg>(j, s); }

// Planes go 8 to a vector when they fit the buffers and their rows are short (up to 32x32
// planes pooled 2x2 the lanes path measured faster, argmax 2-3x). Threads split the groups of 8
// planes (the last thread also takes the rows of the leftover planes), else y's N*C*P rows; one
// thread below kParallelMin input elements.
constexpr int64_t kLaneMinQ = 32;
void run_forward(void (*share)(const ForwardJob<float>&, Share), const ForwardJob<float>& j) {
  const PoolGeometry& g = j.g;
  const int64_t planes = g.N * g.C;
  const bool lanes = g.Q < kLaneMinQ && g.H * g.W <= kLanePlaneMax && g.P * g.Q <= kLanePlaneMax;
  const int64_t groups = lanes ? planes / 8 : 0, rows = planes * g.P, first_row = groups * 8 * g.P;
  const int threads = planes * g.H * g.W > kParallelMin ? num_threads() : 1;
  if (threads <= 1) return share(j, {0, groups, first_row, rows});
  // 4 shares per thread, claimed as they come; the last share also takes the leftover rows.
  const int64_t n = 4 * int64_t(threads);
  parallel_tasks(n, threads, [&](int64_t t) {
    if (groups > 0) {
      const int64_t tail = t == n - 1 ? rows : first_row;
      share(j, {groups * t / n, groups * (t + 1) / n, first_row, tail});
    } else {
      share(j, {0, 0, rows * t / n, rows * (t + 1) / n});
    }
  });
}

void max_pool2d_planes(const MaxPoolArgs& a) {
  const PoolGeometry& g = a.g;
  HG_REQUIRE(g.H * g.W <= std::numeric_limits<int32_t>::max(), "max_pool2d: x's planes hold ",
             g.H * g.W, " elements; the CPU kernel supports up to 2^31-1 per (n, c) plane");
  run_forward(a.argmax ? &max_argmax_share : &max_share, {g, a.x, a.y, a.argmax});
}

void avg_pool2d_planes(const AvgPoolArgs& a) {
  run_forward(&avg_share, {a.g, a.x, a.y, nullptr});
}

// ---- Backward --------------------------------------------------------------------------------

// Output columns q whose input column q*sw + off lies in [0, W): [lo, hi), possibly empty.
struct ColumnRange {
  int64_t lo, hi;
};
inline ColumnRange valid_columns(int64_t off, int64_t sw, int64_t W, int64_t Q) {
  const int64_t lo = off >= 0 ? 0 : (-off + sw - 1) / sw;
  const int64_t hi = off > W - 1 ? 0 : std::min(Q, (W - 1 - off) / sw + 1);
  return {lo, std::max(lo, hi)};
}

// Average backward's row update: dx[base + q*SW] += scale * dy[q] * col_scale[q].
template <int SW>
void add_from_row(ColumnRange cols, int64_t sw_any, int64_t base, float scale,
                  const float* __restrict dy, const float* __restrict col_scale,
                  float* __restrict dx) {
  const int64_t sw = SW > 0 ? SW : sw_any;
  for (int64_t q = cols.lo; q < cols.hi; ++q) dx[base + q * sw] += scale * dy[q] * col_scale[q];
}

void max_pool2d_backward_planes(const MaxPoolBackwardArgs& a) {
  const PoolGeometry g = a.g;
  const int64_t planes = g.N * g.C, HW = g.H * g.W, PQ = g.P * g.Q;
  std::atomic<bool> bad{false};
  parallel_for(planes, planes * HW > kParallelMin ? num_threads() : 1, [&](int64_t nc) {
    float* __restrict dx = a.dx + nc * HW;
    const float* __restrict dy = a.dy + nc * PQ;
    const int64_t* __restrict am = a.argmax + nc * PQ;
    std::fill(dx, dx + HW, 0.f);
    for (int64_t i = 0; i < PQ; ++i) {
      const int64_t k = am[i];
      if (k < 0 || k >= HW) {
        bad = true;
        continue;
      }
      dx[k] += dy[i];
    }
  });
  HG_REQUIRE(!bad, "max_pool2d_backward: argmax holds indices outside [0, H*W) = [0, ", HW,
             ") for x_shape (", g.N, ", ", g.C, ", ", g.H, ", ", g.W,
             "); pass the argmax that max_pool2d returned for x");
}

void avg_pool2d_backward_planes(const AvgPoolBackwardArgs& a) {
  const PoolGeometry g = a.g;
  const int64_t planes = g.N * g.C, HW = g.H * g.W;
  // The divisor of window (p, q) is a row factor times a column factor (PoolGeometry): 1/factor
  // per column here, per row below.
  std::vector<float> col_scale(g.Q);
  for (int64_t q = 0; q < g.Q; ++q) {
    const int64_t w0 = q * g.sw - g.pw;
    const int64_t wext = g.count_include_pad
                             ? std::min(w0 + g.kw, g.W + g.pw) - w0
                             : std::min(w0 + g.kw, g.W) - std::max<int64_t>(w0, 0);
    col_scale[q] = 1.f / float(wext);
  }
  // Strided read-modify-write leaves gaps no SSE store can skip: only stride 1 vectorizes.
  const auto spread = g.sw == 1 ? &add_from_row<1> : &add_from_row<0>;
  parallel_for(planes, (planes * HW > kParallelMin) ? num_threads() : 1, [&](int64_t nc) {
    float* dx = a.dx + nc * HW;
    std::fill(dx, dx + HW, 0.f);
    for (int64_t p = 0; p < g.P; ++p) {
      const float* dy = a.dy + (nc * g.P + p) * g.Q;
      const int64_t h0 = p * g.sh - g.ph;
      const int64_t r0 = std::max<int64_t>(h0, 0), r1 = std::min(h0 + g.kh, g.H);
      const int64_t hext = g.count_include_pad ? std::min(h0 + g.kh, g.H + g.ph) - h0 : r1 - r0;
      const float inv = 1.f / float(hext);
      for (int64_t h = r0; h < r1; ++h) {
        for (int64_t s = 0; s < g.kw; ++s) {
          const int64_t off = s - g.pw;
          spread(valid_columns(off, g.sw, g.W, g.Q), g.sw, h * g.W + off, inv, dy,
                 col_scale.data(), dx);
        }
      }
    }
  });
}

}  // namespace
}  // namespace hg::cpu

HG_REGISTER_KERNEL(max_pool2d_op, cpu, handwritten, "cpu.max_pool2d_planes", &hg::cpu::max_pool2d_planes);
HG_REGISTER_KERNEL(max_pool2d_backward_op, cpu, handwritten, "cpu.max_pool2d_backward_planes",
                   &hg::cpu::max_pool2d_backward_planes);
HG_REGISTER_KERNEL(avg_pool2d_op, cpu, handwritten, "cpu.avg_pool2d_planes", &hg::cpu::avg_pool2d_planes);
HG_REGISTER_KERNEL(avg_pool2d_backward_op, cpu, handwritten, "cpu.avg_pool2d_backward_planes",
                   &hg::cpu::avg_pool2d_backward_planes);
