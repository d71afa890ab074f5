// Channel-vectorized depthwise convolution (groups == C == K), a tuned alternate of
// conv2d_bias_act. The direct kernel of conv_depthwise.cpp vectorizes along each output row,
// which wastes most of its lanes on the small planes of late MobileNet layers (4x4, 2x2) and
// builds strided vectors element by element at stride 2. This one vectorizes across 16
// channels instead, so every lane does useful work whatever the plane size or stride:
//   1. per band of output rows (sized so its input stays in L1), the input rows it reads from
//      the 16 planes of one (image, channel block) are transposed (16 x 16 tiles in registers)
//      into a per-thread zero-padded buffer xpad[i][j][lane] (i, j: padded row and column;
//      lanes past C stay 0);
//   2. out[p][q][lane] = bias + sum_{r,s} w[r, s][lane] * xpad[p*sh + r*dh][q*sw + s*dw][lane],
//      four output columns per step (four independent accumulators), every tap one vector FMA;
//   3. out is transposed back (the same tiles) into the 16 output planes, the residual
//      (optional, may be y itself) and relu / relu6 applied on the way; any other activation
//      over those planes right after, while they are in cache.
// Geometries whose padded buffer would dwarf the planes (see depthwise_direct) and every
// non-depthwise conv run the handwritten kernel's path instead.
// The per-block routine is compiled for x86-64-v4, v3 and the baseline (target_clones).
// Layouts as ops.h: x (N, C, H, W), w (C, 1, R, S), y (N, C, P, Q).
// Test: PYTHONPATH=python python3 -m pytest -q tests/ops/test_depthwise_cvec.py

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu_clones.h"
#include "cpu_kernels.h"
#include "im2col.h"
#include "vec16.h"

namespace hg::cpu {
namespace {

constexpr int64_t kLanes = 16;
constexpr int64_t kParallelMin = 1 << 14;  // multiply-adds below which one thread is faster

using vi16 = int32_t __attribute__((vector_size(64)));

// The first n (< kLanes) floats of p, the others 0: no read past a plane's end.
HG_INLINE vf16 ld_partial(const float* p, int64_t n) {
  vf16 v = vf16{};
  for (int64_t j = 0; j < n; ++j) v[j] = p[j];
  return v;
}

// One stage of a 16 x 16 transpose: rows a and b = a's row + D swap their off-diagonal D-wide
// blocks (a[j] <-> b[j - D] for the columns j with bit D set). The four stages D = 8, 4, 2, 1
// over every such row pair transpose the 16 rows; each step is one two-source shuffle.
template <int D>
HG_INLINE void swap_blocks(vf16& a, vf16& b) {
  vi16 lo, hi;
  for (int j = 0; j < 16; ++j) {
    lo[j] = (j & D) ? 16 + j - D : j;
    hi[j] = (j & D) ? 16 + j : j + D;
  }
  const vf16 na = __builtin_shuffle(a, b, lo), nb = __builtin_shuffle(a, b, hi);
  a = na;
  b = nb;
}
template <int D>
HG_INLINE void transpose_stage(vf16* r) {
  for (int i = 0; i < 16; ++i)
    if (!(i & D)) swap_blocks<D>(r[i], r[i + D]);
}
HG_INLINE void transpose16(vf16* r) {
  transpose_stage<8>(r);
  transpose_stage<4>(r);
  transpose_stage<2>(r);
  transpose_stage<1>(r);
}

// Floats of padded input that one band of output rows aims to stay within (L1-sized).
constexpr int64_t kBandFloats = 4096;

// The output rows are computed in bands of `band` rows; the padded buffer holds every input
// position one band's taps read: `rows` x `cols` pixel vectors.
struct Extent {
  int64_t band, rows, cols;
};
Extent extent(const ConvGeometry& g) {
  const int64_t cols = (g.Q - 1) * g.stride_w + (g.S - 1) * g.dil_w + 1;
  const int64_t reach = (g.R - 1) * g.dil_h + 1;  // padded rows one output row reads
  const int64_t fit = kBandFloats / (cols * kLanes);
  const int64_t band = std::clamp<int64_t>(fit > reach ? (fit - reach) / g.stride_h + 1 : 1, 1,
                                           std::max<int64_t>(g.P, 1));
  return {band, (band - 1) * g.stride_h + reach, cols};
}

struct Scratch {
  std::vector<float> pad, xt, out;
  std::vector<int64_t> tap;
  Scratch(const ConvGeometry& g, const Extent& e)
      : pad(e.rows * e.cols * kLanes), xt(g.H * g.W * kLanes), out(g.P * g.Q * kLanes),
        tap(g.R * g.S) {
    for (int64_t r = 0; r < g.R; ++r)
      for (int64_t s = 0; s < g.S; ++s)
        tap[r * g.S + s] = (r * g.dil_h * e.cols + s * g.dil_w) * kLanes;
  }
};

// One (image, channel block): x and y point at its first plane, w at its first kernel, bias at
// its first bias (or nullptr), res at its first residual plane (or nullptr); nc <= kLanes planes.
// Activations applied to the vectors before they are stored; the others by apply_epilogue.
enum class Inline { none, relu, relu6, other };

// Reads the 16 floats at p where they lie before `end` (a full load: lanes past the plane come
// from the next plane and are never stored), else only the n floats of the plane.
HG_INLINE vf16 ld_plane(const float* p, int64_t n, const float* end) {
  return p + kLanes <= end ? load16(p) : ld_partial(p, n);
}

// Output rows [p0, p1) into out[p][q][lane]; pad holds the band's padded rows from p0 * sh on.
HG_INLINE void compute_rows(const ConvGeometry& g, int64_t p0, int64_t p1, const float* pad,
                            int64_t cols, const int64_t* __restrict tap,
                            const float* __restrict wv, vf16 b, int64_t step, float* out) {
  const int64_t Q = g.Q, RS = g.R * g.S;
  for (int64_t p = p0; p < p1; ++p) {
    const float* row = pad + (p - p0) * g.stride_h * cols * kLanes;
    float* o = out + p * Q * kLanes;
    int64_t q = 0;
    for (; q + 4 <= Q; q += 4) {
      vf16 a0 = b, a1 = b, a2 = b, a3 = b;
      const float* src = row + q * step;
      for (int64_t i = 0; i < RS; ++i) {
        const vf16 k = load16(wv + i * kLanes);
        const float* s = src + tap[i];
        a0 += k * load16(s);
        a1 += k * load16(s + step);
        a2 += k * load16(s + 2 * step);
        a3 += k * load16(s + 3 * step);
      }
      store16(o + q * kLanes, a0);
      store16(o + (q + 1) * kLanes, a1);
      store16(o + (q + 2) * kLanes, a2);
      store16(o + (q + 3) * kLanes, a3);
    }
    for (; q < Q; ++q) {
      vf16 a0 = b;
      const float* src = row + q * step;
      for (int64_t i = 0; i < RS; ++i) a0 += load16(wv + i * kLanes) * load16(src + tap[i]);
      store16(o + q * kLanes, a0);
    }
  }
}

HG_CPU_CLONES
void block_forward(const ConvGeometry& g, const Extent& e, int64_t nc, const float* x,
                   const float* x_end, const float* __restrict wv, const float* res, Inline act,
                   float* y, Scratch& t) {
  const int64_t H = g.H, W = g.W, P = g.P, Q = g.Q, RS = g.R * g.S, HW = H * W, PQ = P * Q;
  const int64_t cols = e.cols;
  float* __restrict pad = t.pad.data();
  float* __restrict out = t.out.data();
  // Input columns w land at padded column w + pw; a negative padding crops.
  const int64_t w0 = std::max<int64_t>(0, -g.pad_w), w1 = std::min(W, cols - g.pad_w);
  const int64_t* __restrict tap = t.tap.data();
  const vf16 b = load16(wv + RS * kLanes);
  const int64_t step = g.stride_w * kLanes;
  float* __restrict xt = t.xt.data();
  for (int64_t p0 = 0; p0 < P; p0 += e.band) {
    const int64_t p1 = std::min(P, p0 + e.band);
    // Padded rows [i_lo, i_lo + e.rows) hold input rows h = i - ph; those in [0, H) are copied.
    const int64_t i_lo = p0 * g.stride_h;
    const int64_t h0 = std::clamp<int64_t>(i_lo - g.pad_h, 0, H);
    const int64_t h1 = std::clamp<int64_t>(i_lo + e.rows - g.pad_h, h0, H);
    // The band's input rows, 16 pixels at a time, transposed into xt[pixel][lane] (lanes past
    // nc 0), then each pixel's vector copied to its padded place.
    const int64_t base = h0 * W, count = (h1 - h0) * W;
    for (int64_t i0 = 0; i0 < count; i0 += kLanes) {
      const int64_t n = std::min(kLanes, count - i0);
      vf16 r[16];
      for (int64_t l = 0; l < 16; ++l)
        r[l] = l >= nc ? vf16{} : ld_plane(x + l * HW + base + i0, n, x_end);
      transpose16(r);
      for (int64_t j = 0; j < n; ++j) store16(xt + (i0 + j) * kLanes, r[j]);
    }
    std::fill(pad, pad + e.rows * cols * kLanes, 0.f);
    for (int64_t h = h0; h < h1; ++h) {
      float* __restrict o = pad + ((h + g.pad_h - i_lo) * cols + g.pad_w) * kLanes;
      for (int64_t c = w0; c < w1; ++c) store16(o + c * kLanes, load16(xt + ((h - h0) * W + c) * kLanes));
    }
    compute_rows(g, p0, p1, pad, cols, tap, wv, b, step, out);
  }
  // Back to planes, 16 pixels at a time; the residual (may be y itself: each element is read
  // before it is written) added on the way.
  for (int64_t i0 = 0; i0 < PQ; i0 += kLanes) {
    const int64_t n = std::min(kLanes, PQ - i0);
    vf16 r[16];
    for (int64_t j = 0; j < 16; ++j) r[j] = j < n ? load16(out + (i0 + j) * kLanes) : vf16{};
    transpose16(r);
    for (int64_t l = 0; l < nc; ++l) {
      float* yp = y + l * PQ + i0;
      vf16 v = r[l];
      // (not ld_plane: with out= residual, the next planes may be another thread's output)
      if (res) v += n == kLanes ? load16(res + l * PQ + i0) : ld_partial(res + l * PQ + i0, n);
      if (act == Inline::relu || act == Inline::relu6) v = v > 0.f ? v : 0.f;
      if (act == Inline::relu6) v = v < 6.f ? v : 6.f;
      if (n == kLanes) {
        store16(yp, v);
      } else {
        for (int64_t j = 0; j < n; ++j) yp[j] = v[j];
      }
    }
  }
}

void conv2d_bias_act_depthwise_cvec(const ConvBiasActArgs& a) {
  const ConvGeometry& g = a.g;
  if (!depthwise_direct(g)) return conv2d_bias_act_handwritten(a);
  const Extent e = extent(g);
  const int64_t blocks = (g.C + kLanes - 1) / kLanes, tasks = g.N * blocks;
  const int64_t HW = g.H * g.W, PQ = g.P * g.Q;
  const int64_t macs = g.N * g.C * PQ * g.R * g.S;
  const int T =
      int(std::max<int64_t>(1, std::min<int64_t>(macs >= kParallelMin ? num_threads() : 1, tasks)));
  std::vector<Scratch> scratches(T, Scratch(g, e));  // allocated here: no exception in the region
  GemmEpilogue act;  // the activation only: the bias went in as the accumulators' start
  act.op = FusedEpilogue{nullptr, a.epi.has_act, a.epi.act, a.epi.alpha};
  const Inline mode = !a.epi.has_act               ? Inline::none
                      : a.epi.act == ActKind::relu  ? Inline::relu
                      : a.epi.act == ActKind::relu6 ? Inline::relu6
                                                    : Inline::other;
  const float* x_end = a.x + g.N * g.C * HW;
  // Per channel block: its RS weight vectors, then its bias vector (lanes past C: 0), packed
  // once for every image.
  const int64_t RS = g.R * g.S, wsize = (RS + 1) * kLanes;
  std::vector<float> wpack(blocks * wsize, 0.f);
  for (int64_t c = 0; c < g.C; ++c) {
    float* wb = wpack.data() + (c / kLanes) * wsize + c % kLanes;
    for (int64_t i = 0; i < RS; ++i) wb[i * kLanes] = a.w[c * RS + i];
    if (a.epi.bias) wb[RS * kLanes] = a.epi.bias[c];
  }
  parallel_for(tasks, T, [&](int64_t task) {
    Scratch& scratch = scratches[parallel_slot()];
    const int64_t n = task / blocks, c0 = (task % blocks) * kLanes;
    const int64_t nc = std::min(kLanes, g.C - c0);
    const int64_t plane = n * g.C + c0;
    float* y = a.y + plane * PQ;
    block_forward(g, e, nc, a.x + plane * HW, x_end, wpack.data() + (c0 / kLanes) * wsize,
                  a.residual ? a.residual + plane * PQ : nullptr, mode, y, scratch);
    if (mode == Inline::other) apply_epilogue(act, 0, 0, nc, PQ, y, PQ);  // planes in cache
  });
}

}  // namespace
}  // namespace hg::cpu

HG_REGISTER_ALTERNATE(conv2d_bias_act_op, cpu, "cpu.conv2d_depthwise_cvec16|im2col_gemm",
                      &hg::cpu::conv2d_bias_act_depthwise_cvec);
