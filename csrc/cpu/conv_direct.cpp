// Direct convolution on the CPU for layers with few channels (LeNet's 1 -> 6 and 6 -> 16 5x5, a
// ResNet stem's 3 -> 64), where im2col + GEMM spends its time building and packing a col matrix
// for GEMMs of a few rows: dilation 1, groups 1, padding up to the kernel size; stride 1 for the
// flat kernels, any stride for the 16-channel-vector (kvec) ones.
// Each image is copied once into a zero-bordered buffer xp (C planes of Hp x Wp, Wp = W + 2 pw,
// Hp = H + 2 ph). Output pixel (p, q) is then read at the flat position o = p * Wp + q: for tap
// (r, s) its input sits at xp_c[o + r * Wp + s], so every tap is one contiguous 16-float load per
// 16 consecutive o, for any kernel size (the columns q >= Q of each row are computed and dropped).
// Flat kernels (4 output channels per register block; small K such as LeNet's 6):
//   forward:          acc[k][o] += w[k, c, r, s] * xp_c[o + r Wp + s], 4 output channels x 32
//                     positions in 8 vector registers per (c, r, s) step (2 loads, 8 FMAs); the
//                     rows of the flat output are then cropped into y with the bias.
//   backward weight:  dw[k, c, r, s] = sum_o dy'_k[o] xp_c[o + r Wp + s], dy' being dy laid out
//                     on the same flat positions (zero at q >= Q); 4 output channels x 4 taps
//                     (consecutive in r-major order) in 16 vector accumulators per pass over o.
//   backward data:    the forward over dy with the kernel flipped and its channels swapped.
// kvec kernels (16 output channels per vector; K a multiple of 16 wastes no lane):
//   forward:          one output row, QB (8-14, the fewest wasted columns) pixels per block in
//                     QB vector accumulators, x read by scalar broadcasts (any stride).
//   backward weight:  dy transposed to (pixels, K); 6 taps x 32 channels (16 for an odd last
//                     block) in vector accumulators over the pixels of a band of output rows
//                     (its dy stays in L2), each x value broadcast once per pixel and tap.
// Backward weight sums images in T fixed runs (T = num_threads(), not the threads running), one
// partial dw each, added in run order: the result depends on num_threads() only.
// The loops are written on 16-float vectors (GCC vector extension) and compiled per x86-64 level
// (HG_CPU_CLONES): AVX-512 registers on v4, pairs of AVX2 registers on v3.
// Test: PYTHONPATH=python python3 -m pytest -q tests/ops/test_conv_variants.py
#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "cpu_clones.h"
#include "cpu_kernels.h"
#include "im2col.h"
#include "vec16.h"

namespace hg::cpu {
namespace {


constexpr int kKB = 4;   // output channels per register block
constexpr int kOB = 32;  // flat output positions per register block (2 vectors)

// The flat layout of one image.
struct Flat {
  int64_t C, K, R, S, P, Q, Hp, Wp, sh, sw;
  int64_t L;       // flat positions that hold outputs: (P - 1) * Wp + Q
  int64_t L32;     // L rounded up to kOB
  int64_t plane;   // floats per padded input plane, with room for the overrun of the last block
  explicit Flat(const ConvGeometry& g)
      : C(g.C), K(g.K), R(g.R), S(g.S), P(g.P), Q(g.Q), Hp(g.H + 2 * g.pad_h),
        Wp(g.W + 2 * g.pad_w), sh(g.stride_h), sw(g.stride_w) {
    L = (P - 1) * Wp + Q;
    L32 = (L + kOB - 1) / kOB * kOB;
    plane = std::max(Hp * Wp, L32 + (R - 1) * Wp + S - 1) + 16;
  }
};

// xp (C planes of f.plane floats) = the image with its zero border.
void pad_image(const ConvGeometry& g, const Flat& f, const float* __restrict x,
               float* __restrict xp) {
  for (int64_t c = 0; c < g.C; ++c) {
    float* __restrict o = xp + c * f.plane;
    std::memset(o, 0, sizeof(float) * f.plane);
    for (int64_t h = 0; h < g.H; ++h)
      std::memcpy(o + (h + g.pad_h) * f.Wp + g.pad_w, x + (c * g.H + h) * g.W, sizeof(float) * g.W);
  }
}

// out[kb][o] for o in [0, L32), kb < 4: the 4 channels' flat outputs from the padded image.
// wk: (C, R, S, 4) weights of those channels, channel-minor.
HG_CPU_CLONES
void forward_block(const Flat& f, const float* __restrict xp, const float* __restrict wk,
                   float* __restrict out) {
  const int64_t taps = f.R * f.S;
  for (int64_t o = 0; o < f.L32; o += kOB) {
    vf16 a00 = {}, a01 = {}, a10 = {}, a11 = {}, a20 = {}, a21 = {}, a30 = {}, a31 = {};
    for (int64_t c = 0; c < f.C; ++c) {
      const float* xc = xp + c * f.plane + o;
      const float* w = wk + c * taps * kKB;
      for (int64_t r = 0; r < f.R; ++r) {
        const float* xr = xc + r * f.Wp;
        for (int64_t s = 0; s < f.S; ++s, w += kKB) {
          const vf16 v0 = load16(xr + s), v1 = load16(xr + s + 16);
          a00 += w[0] * v0, a01 += w[0] * v1;
          a10 += w[1] * v0, a11 += w[1] * v1;
          a20 += w[2] * v0, a21 += w[2] * v1;
          a30 += w[3] * v0, a31 += w[3] * v1;
        }
      }
    }
    store16(out + 0 * f.L32 + o, a00), store16(out + 0 * f.L32 + o + 16, a01);
    store16(out + 1 * f.L32 + o, a10), store16(out + 1 * f.L32 + o + 16, a11);
    store16(out + 2 * f.L32 + o, a20), store16(out + 2 * f.L32 + o + 16, a21);
    store16(out + 3 * f.L32 + o, a30), store16(out + 3 * f.L32 + o + 16, a31);
  }
}

// dw4[kb][c][tap] += sum_o dyf[kb][o] * xp_c[o + off(tap)] for 4 channels (dyf: 4 x L32, zero
// past each row's Q columns and past L) and all R*S taps, 4 taps (any rows: off = r Wp + s) at a
// time in 16 vector accumulators.
HG_CPU_CLONES
void weight_block(const Flat& f, const float* __restrict xp, const int64_t* off,
                  const float* __restrict dyf, float* __restrict dw4) {
  const int64_t taps = f.R * f.S;
  for (int64_t c = 0; c < f.C; ++c) {
    const float* xc = xp + c * f.plane;
    for (int64_t t0 = 0; t0 < taps; t0 += 4) {
      const int nt = int(std::min<int64_t>(4, taps - t0));
      const float* x0 = xc + off[t0];  // taps past the last repeat it and are not kept
      const float* x1 = xc + off[t0 + std::min(1, nt - 1)];
      const float* x2 = xc + off[t0 + std::min(2, nt - 1)];
      const float* x3 = xc + off[t0 + std::min(3, nt - 1)];
      vf16 acc[4][4] = {};
      for (int64_t o = 0; o < f.L32; o += 16) {
        const vf16 d0 = load16(dyf + o), d1 = load16(dyf + f.L32 + o);
        const vf16 d2 = load16(dyf + 2 * f.L32 + o), d3 = load16(dyf + 3 * f.L32 + o);
        const vf16 v[4] = {load16(x0 + o), load16(x1 + o), load16(x2 + o), load16(x3 + o)};
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j)
          acc[0][j] += d0 * v[j], acc[1][j] += d1 * v[j], acc[2][j] += d2 * v[j], acc[3][j] += d3 * v[j];
      }
      for (int kb = 0; kb < 4; ++kb)
        for (int j = 0; j < nt; ++j) {
          float sum = 0.f;
          for (int l = 0; l < 16; ++l) sum += acc[kb][j][l];
          dw4[(kb * f.C + c) * taps + t0 + j] += sum;
        }
    }
  }
}

// ---- channel-vector variants: 16 output channels per vector (K a multiple of 16 wastes none)

// yk[kk * PQ + j] (kk < nk, j < nq) = bias + sum_{c,r,s} wT[c][r][s][kk] *
// xp_c[(p sh + r) Wp + (q0 + j) sw + s] for one output row p and columns q0 .. q0 + QB - 1 (QB
// vector accumulators, one w load per tap); xrow points at xp_0[p sh Wp + q0 sw]. D: the column
// stride when known at compile time (1), else 0 (read from f.sw); KS likewise the kernel width
// (its loop then unrolls).
template <int QB, int D, int KS>
HG_INLINE void kvec_row(const Flat& f, const float* __restrict xrow, const float* __restrict wT,
                        int64_t ldw, const float* bias, float* __restrict yk, int64_t PQ, int nk,
                        int nq) {
  const int64_t d = D > 0 ? D : f.sw, S = KS > 0 ? KS : f.S;
  const vf16 b = load16(bias);
  vf16 acc[QB];
#pragma GCC unroll 16
  for (int j = 0; j < QB; ++j) acc[j] = b;
  for (int64_t c = 0; c < f.C; ++c) {
    const float* xc = xrow + c * f.plane;
    const float* w = wT + c * f.R * S * ldw;
    for (int64_t r = 0; r < f.R; ++r) {
      const float* x = xc + r * f.Wp;
#pragma GCC unroll 8
      for (int64_t s = 0; s < S; ++s, ++x, w += ldw) {
        const vf16 wv = load16(w);
#pragma GCC unroll 16
        for (int j = 0; j < QB; ++j) acc[j] += x[j * d] * wv;
      }
    }
  }
  alignas(64) float out[QB][16];
#pragma GCC unroll 16
  for (int j = 0; j < QB; ++j) store16(out[j], acc[j]);
  for (int kk = 0; kk < nk; ++kk)
    for (int j = 0; j < nq; ++j) yk[kk * PQ + j] = out[j][kk];
}

// One instance per (columns per block, unit stride or not), each compiled per x86-64 level.
// (bias by pointer: a vector argument would be passed differently by the baseline caller and
// the AVX-512 clone)
using KvecRowFn = void (*)(const Flat&, const float*, const float*, int64_t, const float*, float*,
                           int64_t, int, int);
#define HG_KVEC_ROW(QB, D, KS)                                                              \
  HG_CPU_CLONES void kvec_row_##QB##_##D##_##KS(const Flat& f, const float* xrow,            \
                                                const float* wT, int64_t ldw,                 \
                                                const float* bias, float* yk, int64_t PQ,     \
                                                int nk, int nq) {                             \
    kvec_row<QB, D, KS>(f, xrow, wT, ldw, bias, yk, PQ, nk, nq);                              \
  }
HG_KVEC_ROW(8, 1, 0)
HG_KVEC_ROW(10, 1, 0)
HG_KVEC_ROW(12, 1, 0)
HG_KVEC_ROW(14, 1, 0)
HG_KVEC_ROW(12, 0, 0)
HG_KVEC_ROW(10, 1, 5)  // LeNet's 5x5 layers (10 and 28 output columns)
HG_KVEC_ROW(14, 1, 5)
HG_KVEC_ROW(12, 1, 3)  // 3x3 layers
#undef HG_KVEC_ROW

// The row kernel for Q output columns: unit stride picks the block width wasting the fewest
// columns (ties: the wider); other strides take 12.
KvecRowFn kvec_row_for(int64_t Q, int64_t sw, int64_t S, int* qb) {
  if (sw != 1) return *qb = 12, &kvec_row_12_0_0;
  const int widths[4] = {14, 12, 10, 8};
  const KvecRowFn fns[4] = {&kvec_row_14_1_0, &kvec_row_12_1_0, &kvec_row_10_1_0, &kvec_row_8_1_0};
  int best = 0;
  for (int i = 1; i < 4; ++i)
    if ((Q + widths[i] - 1) / widths[i] * widths[i] < (Q + widths[best] - 1) / widths[best] * widths[best])
      best = i;
  *qb = widths[best];
  if (S == 5 && *qb == 10) return &kvec_row_10_1_5;
  if (S == 5 && *qb == 14) return &kvec_row_14_1_5;
  if (S == 3 && *qb == 12) return &kvec_row_12_1_3;
  return fns[best];
}

// dwT[tap][0..16) += sum_{p in [p0, p1), q} xp_c[p sh Wp + q sw + off(tap)] * dyT[p Q + q][0..16)
// for 6 taps of one
// input channel (taps past `taps` repeat the last one and are not kept).
HG_CPU_CLONES
void weight_kvec_taps(const Flat& f, int64_t p0, int64_t p1, const float* __restrict xc,
                      const int64_t* off, int taps, const float* __restrict dyT, int64_t ldd,
                      float* __restrict dwT, int64_t ldw) {
  const float* x0 = xc + off[0];
  const float* x1 = xc + off[std::min(1, taps - 1)];
  const float* x2 = xc + off[std::min(2, taps - 1)];
  const float* x3 = xc + off[std::min(3, taps - 1)];
  const float* x4 = xc + off[std::min(4, taps - 1)];
  const float* x5 = xc + off[std::min(5, taps - 1)];
  vf16 a0 = {}, a1 = {}, a2 = {}, a3 = {}, a4 = {}, a5 = {};
  for (int64_t p = p0; p < p1; ++p) {
    for (int64_t q = 0; q < f.Q; ++q) {
      const int64_t o = p * f.sh * f.Wp + q * f.sw;
      const vf16 d = load16(dyT + (p * f.Q + q) * ldd);
      a0 += x0[o] * d, a1 += x1[o] * d, a2 += x2[o] * d;
      a3 += x3[o] * d, a4 += x4[o] * d, a5 += x5[o] * d;
    }
  }
  const vf16 acc[6] = {a0, a1, a2, a3, a4, a5};
  for (int t = 0; t < taps; ++t) store16(dwT + t * ldw, load16(dwT + t * ldw) + acc[t]);
}

// weight_kvec_taps for 32 output channels (two vectors: dyT and dwT columns [0, 32)): each x
// value is broadcast once for two FMAs, 12 accumulators.
HG_CPU_CLONES
void weight_kvec2_taps(const Flat& f, int64_t p0, int64_t p1, const float* __restrict xc,
                       const int64_t* off, int taps, const float* __restrict dyT, int64_t ldd,
                       float* __restrict dwT, int64_t ldw) {
  const float* x0 = xc + off[0];
  const float* x1 = xc + off[std::min(1, taps - 1)];
  const float* x2 = xc + off[std::min(2, taps - 1)];
  const float* x3 = xc + off[std::min(3, taps - 1)];
  const float* x4 = xc + off[std::min(4, taps - 1)];
  const float* x5 = xc + off[std::min(5, taps - 1)];
  vf16 a0 = {}, a1 = {}, a2 = {}, a3 = {}, a4 = {}, a5 = {};
  vf16 b0 = {}, b1 = {}, b2 = {}, b3 = {}, b4 = {}, b5 = {};
  for (int64_t p = p0; p < p1; ++p) {
    for (int64_t q = 0; q < f.Q; ++q) {
      const int64_t o = p * f.sh * f.Wp + q * f.sw;
      const float* dp = dyT + (p * f.Q + q) * ldd;
      const vf16 d = load16(dp), e = load16(dp + 16);
      const float v0 = x0[o], v1 = x1[o], v2 = x2[o], v3 = x3[o], v4 = x4[o], v5 = x5[o];
      a0 += v0 * d, b0 += v0 * e, a1 += v1 * d, b1 += v1 * e, a2 += v2 * d, b2 += v2 * e;
      a3 += v3 * d, b3 += v3 * e, a4 += v4 * d, b4 += v4 * e, a5 += v5 * d, b5 += v5 * e;
    }
  }
  const vf16 acc[6] = {a0, a1, a2, a3, a4, a5}, bcc[6] = {b0, b1, b2, b3, b4, b5};
  for (int t = 0; t < taps; ++t) {
    store16(dwT + t * ldw, load16(dwT + t * ldw) + acc[t]);
    store16(dwT + t * ldw + 16, load16(dwT + t * ldw + 16) + bcc[t]);
  }
}

}  // namespace

bool direct_applies(const ConvGeometry& g, bool any_stride) {
  return (any_stride || (g.stride_h == 1 && g.stride_w == 1)) && g.dil_h == 1 && g.dil_w == 1 &&
         g.groups == 1 && g.pad_h >= 0 && g.pad_w >= 0 && g.P >= 1 && g.Q >= 1 && g.C >= 1 &&
         // flat buffers of a few images' size: a sane padding
         g.pad_h <= g.R && g.pad_w <= g.S;
}

bool conv2d_direct_forward(const ConvForwardArgs& a) {
  const ConvGeometry& g = a.g;
  if (!direct_applies(g, /*any_stride=*/false)) return false;
  const Flat f(g);
  const int64_t KB4 = (g.K + kKB - 1) / kKB, RS = g.R * g.S;
  // Weights as (K/4 blocks, C, R, S, 4), zero past K.
  std::vector<float> wk(size_t(KB4 * g.C * RS * kKB), 0.f);
  for (int64_t k = 0; k < g.K; ++k)
    for (int64_t i = 0; i < g.C * RS; ++i) wk[((k / kKB) * g.C * RS + i) * kKB + k % kKB] = a.w[k * g.C * RS + i];
  const int64_t per_slot = g.C * f.plane + kKB * f.L32;
  const double work = double(g.N) * double(g.K * g.C * RS) * double(f.L32);
  const int threads = region_threads(work, double(1 << 18), g.N);
  std::unique_ptr<float[]> scratch(new float[per_slot * std::max(threads, 1)]);
  const float* wkp = wk.data();
  parallel_tasks(g.N, threads, [&](int64_t n) {
    float* xp = scratch.get() + parallel_slot() * per_slot;
    float* out = xp + g.C * f.plane;
    pad_image(g, f, a.x + n * g.C * g.H * g.W, xp);
    for (int64_t kb = 0; kb < KB4; ++kb) {
      forward_block(f, xp, wkp + kb * g.C * RS * kKB, out);
      for (int64_t j = 0; j < kKB && kb * kKB + j < g.K; ++j) {
        const int64_t k = kb * kKB + j;
        const float b = a.bias ? a.bias[k] : 0.f;
        float* yk = a.y + (n * g.K + k) * g.P * g.Q;
        const float* ok = out + j * f.L32;
        for (int64_t p = 0; p < g.P; ++p)
          for (int64_t q = 0; q < g.Q; ++q) yk[p * g.Q + q] = ok[p * f.Wp + q] + b;
      }
    }
  });
  return true;
}

bool conv2d_direct_backward_weight(const ConvBackwardWeightArgs& a) {
  const ConvGeometry& g = a.g;
  if (!direct_applies(g, /*any_stride=*/false)) return false;
  const Flat f(g);
  const int64_t KB4 = (g.K + kKB - 1) / kKB, RS = g.R * g.S, dw_size = g.K * g.C * RS;
  const int64_t dw4_size = KB4 * kKB * g.C * RS;  // (K rounded up to 4, C, R, S)
  // T fixed runs of images, T from the configured thread count, so sums do not depend on how
  // many threads the pool gets.
  const int T = int(std::max<int64_t>(1, std::min<int64_t>(in_parallel() ? 1 : num_threads(), g.N)));
  const int64_t per_slot = g.C * f.plane + kKB * f.L32;
  std::unique_ptr<float[]> scratch(new float[per_slot * T]);
  std::unique_ptr<float[]> partial(new float[dw4_size * T]);
  std::vector<int64_t> off(static_cast<size_t>(RS));
  for (int64_t r = 0; r < g.R; ++r)
    for (int64_t s = 0; s < g.S; ++s) off[r * g.S + s] = r * f.Wp + s;
  parallel_tasks(T, std::min(T, available_threads()), [&](int64_t t) {
    float* xp = scratch.get() + parallel_slot() * per_slot;
    float* dyf = xp + g.C * f.plane;
    float* dw4 = partial.get() + t * dw4_size;
    std::fill(dw4, dw4 + dw4_size, 0.f);
    for (int64_t n = g.N * t / T; n < g.N * (t + 1) / T; ++n) {
      pad_image(g, f, a.x + n * g.C * g.H * g.W, xp);
      for (int64_t kb = 0; kb < KB4; ++kb) {
        std::fill(dyf, dyf + kKB * f.L32, 0.f);
        for (int64_t j = 0; j < kKB && kb * kKB + j < g.K; ++j) {
          const float* d = a.dy + (n * g.K + kb * kKB + j) * g.P * g.Q;
          for (int64_t p = 0; p < g.P; ++p)
            std::memcpy(dyf + j * f.L32 + p * f.Wp, d + p * g.Q, sizeof(float) * g.Q);
        }
        weight_block(f, xp, off.data(), dyf, dw4 + kb * kKB * g.C * RS);
      }
    }
  });
  for (int64_t i = 0; i < dw_size; ++i) {  // (K, C, R, S) is the first dw_size of dw4
    float sum = partial[i];
    for (int t = 1; t < T; ++t) sum += partial[t * dw4_size + i];
    a.dw[i] = sum;
  }
  return true;
}

bool conv2d_direct_kvec_forward(const ConvForwardArgs& a) {
  const ConvGeometry& g = a.g;
  if (!direct_applies(g, /*any_stride=*/true)) return false;
  const Flat f(g);
  const int64_t Kp = (g.K + 15) / 16 * 16, RS = g.R * g.S, PQ = g.P * g.Q;
  std::vector<float> wT(size_t(g.C * RS * Kp), 0.f);  // (C, R, S, Kp)
  for (int64_t k = 0; k < g.K; ++k)
    for (int64_t i = 0; i < g.C * RS; ++i) wT[i * Kp + k] = a.w[k * g.C * RS + i];
  std::vector<float> bias(size_t(Kp), 0.f);
  if (a.bias) std::copy(a.bias, a.bias + g.K, bias.begin());
  int qb = 0;
  const KvecRowFn row = kvec_row_for(g.Q, g.stride_w, g.S, &qb);
  // A row block reads (qb - 1) sw + S columns from q0 sw: the slack covers the last row.
  const int64_t plane = f.plane + qb * f.sw;
  const int64_t per_slot = g.C * plane;
  const double work = double(g.N) * double(Kp * g.C * RS) * double(PQ);
  const int threads = region_threads(work, double(1 << 18), g.N);
  std::unique_ptr<float[]> scratch(new float[per_slot * std::max(threads, 1)]);
  Flat fp = f;
  fp.plane = plane;
  parallel_tasks(g.N, threads, [&](int64_t n) {
    float* xp = scratch.get() + parallel_slot() * per_slot;
    pad_image(g, fp, a.x + n * g.C * g.H * g.W, xp);
    for (int64_t k0 = 0; k0 < g.K; k0 += 16) {
      const float* b = bias.data() + k0;
      const int nk = int(std::min<int64_t>(16, g.K - k0));
      float* yk = a.y + (n * g.K + k0) * PQ;
      for (int64_t p = 0; p < g.P; ++p)
        for (int64_t q0 = 0; q0 < g.Q; q0 += qb)
          row(fp, xp + p * f.sh * f.Wp + q0 * f.sw, wT.data() + k0, Kp, b, yk + p * g.Q + q0, PQ,
              nk, int(std::min<int64_t>(qb, g.Q - q0)));
    }
  });
  return true;
}

bool conv2d_direct_kvec_backward_weight(const ConvBackwardWeightArgs& a) {
  const ConvGeometry& g = a.g;
  if (!direct_applies(g, /*any_stride=*/true)) return false;
  const Flat f(g);
  const int64_t Kp = (g.K + 15) / 16 * 16, RS = g.R * g.S, PQ = g.P * g.Q;
  const int64_t dwT_size = g.C * RS * Kp;  // (C, R, S, Kp)
  const int T = int(std::max<int64_t>(1, std::min<int64_t>(in_parallel() ? 1 : num_threads(), g.N)));
  const int64_t per_slot = g.C * f.plane + PQ * Kp;
  std::unique_ptr<float[]> scratch(new float[per_slot * T]);
  std::unique_ptr<float[]> partial(new float[dwT_size * T]);
  std::vector<int64_t> off(static_cast<size_t>(RS));
  const int64_t rows = std::max<int64_t>(1, 2048 / g.Q);  // ~2048 pixels: 256 KiB of dy per band
  for (int64_t r = 0; r < g.R; ++r)
    for (int64_t s = 0; s < g.S; ++s) off[r * g.S + s] = r * f.Wp + s;
  parallel_tasks(T, std::min(T, available_threads()), [&](int64_t t) {
    float* xp = scratch.get() + parallel_slot() * per_slot;
    float* dyT = xp + g.C * f.plane;  // (PQ, Kp)
    float* dwT = partial.get() + t * dwT_size;
    std::fill(dwT, dwT + dwT_size, 0.f);
    std::fill(dyT, dyT + PQ * Kp, 0.f);
    for (int64_t n = g.N * t / T; n < g.N * (t + 1) / T; ++n) {
      pad_image(g, f, a.x + n * g.C * g.H * g.W, xp);
      const float* dyn = a.dy + n * g.K * PQ;
      for (int64_t k = 0; k < g.K; ++k)
        for (int64_t i = 0; i < PQ; ++i) dyT[i * Kp + k] = dyn[k * PQ + i];
      // Output rows in bands whose dy rows (16 channels each) stay in L2 across all the taps.
      for (int64_t p0 = 0; p0 < g.P; p0 += rows)
        for (int64_t k0 = 0; k0 < Kp; k0 += 32)  // 32 channels at a time, 16 for an odd last
          for (int64_t c = 0; c < g.C; ++c)
            for (int64_t t0 = 0; t0 < RS; t0 += 6)
              (k0 + 32 <= Kp ? weight_kvec2_taps : weight_kvec_taps)(
                  f, p0, std::min(g.P, p0 + rows), xp + c * f.plane, off.data() + t0,
                  int(std::min<int64_t>(6, RS - t0)), dyT + k0, Kp, dwT + (c * RS + t0) * Kp + k0,
                  Kp);
    }
  });
  for (int64_t k = 0; k < g.K; ++k) {
    for (int64_t i = 0; i < g.C * RS; ++i) {
      float sum = partial[i * Kp + k];
      for (int t = 1; t < T; ++t) sum += partial[t * dwT_size + i * Kp + k];
      a.dw[k * g.C * RS + i] = sum;
    }
  }
  return true;
}

// Backward data of a stride-1 layer is the forward correlation of dy with the kernel flipped and
// its channel axes swapped, padding R - 1 - pad (needs pad <= R - 1): run by the direct forward
// (16-channel vectors when C is a multiple of 16, else 4-channel blocks over flat positions).
bool conv2d_direct_backward_data(const ConvBackwardDataArgs& a) {
  const ConvGeometry& g = a.g;
  if (!direct_applies(g, /*any_stride=*/false) || g.pad_h > g.R - 1 || g.pad_w > g.S - 1) return false;
  ConvForwardArgs f;
  f.g = g;
  f.g.C = g.K, f.g.H = g.P, f.g.W = g.Q, f.g.K = g.C, f.g.P = g.H, f.g.Q = g.W;
  f.g.pad_h = g.R - 1 - g.pad_h, f.g.pad_w = g.S - 1 - g.pad_w;
  std::vector<float> wf(size_t(g.K * g.C * g.R * g.S));  // (C, K, R, S), flipped
  for (int64_t k = 0; k < g.K; ++k)
    for (int64_t c = 0; c < g.C; ++c)
      for (int64_t r = 0; r < g.R; ++r)
        for (int64_t s = 0; s < g.S; ++s)
          wf[((c * g.K + k) * g.R + r) * g.S + s] =
              a.w[((k * g.C + c) * g.R + (g.R - 1 - r)) * g.S + (g.S - 1 - s)];
  f.x = a.dy;
  f.w = wf.data();
  f.y = a.dx;
  return g.C % 16 == 0 ? conv2d_direct_kvec_forward(f) : conv2d_direct_forward(f);
}

}  // namespace hg::cpu
