// Backward weight of a dense convolution as an implicit GEMM over register tiles of taps x output
// channels ("cpu.conv2d_direct_taps", an alternate timed by impl="auto"): the ResNet stem (7x7
// stride 2, C = 3) and 3x3 block layers, LeNet's 5x5.
//   dw[k, c, r, s] = sum_n sum_{p, q} dy[n, k, p, q] * xp_n[c, p sh + r, q sw + s]
// with xp_n the image with its zero border (C planes of Hp x Wp). dy is transposed to dyT
// (pixels, Kp) (Kp: K rounded up to 16, zero past K) one band of output rows at a time, so one
// output pixel's channels are consecutive 16-float vectors. A register tile keeps NT taps (r, s) of one input channel c by
// KV vectors of output channels in NT*KV vector accumulators; per output pixel it loads the KV
// dy vectors once and broadcasts one x value per tap: NT*KV FMAs for KV loads and NT broadcasts,
// with no im2col matrix and no packing. The taps of a channel are cut into chunks of near-equal
// size (9 = 5 + 4, 49 = 9 chunks of 5-6), so no lane of a tile is wasted on a repeated tap, and
// the output channels into blocks of 64, then 32, then 16 (KV = 4, 2, 1).
// A band's dyT (24 KiB: whole output rows, or a piece of a long row) is transposed just before
// its tiles run and stays in L1 while every channel and tap chunk passes over it.
// Threads: the images are cut into T = num_threads() fixed runs (not the threads the pool gets),
// each summed into its own partial dwT (C*R*S, Kp), then added in run order: the result depends on
// num_threads() alone.
// The loops are written on 16-float vectors (GCC vector extension) and compiled per x86-64 level
// (HG_CPU_CLONES): AVX-512 registers on v4, pairs of AVX2 registers on v3.
// Test: PYTHONPATH=python python3 -m pytest -q tests/ops/test_conv_bwd_weight.py
#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "cpu_clones.h"
#include "cpu_kernels.h"
#include "im2col.h"
#include "parallel.h"
#include "vec16.h"

namespace hg::cpu {
namespace {


// The most taps per tile for KV output-channel vectors (accumulators NT*KV plus KV dy vectors
// within AVX-512's 32 registers).
constexpr int max_taps(int kv) { return kv == 4 ? 6 : 9; }

// Floats of transposed dy per band (24 KiB).
constexpr int64_t kBandFloats = 6144;

// One band of output pixels of one image: rows [p0, p1), columns [q0, q1) of each (whole rows,
// or a piece of one row).
struct Band {
  int64_t p0, p1, q0, q1, Q;
  int64_t row;   // floats between the input rows of consecutive output rows: sh * Wp
  int64_t sw;    // stride along a row
  int64_t ldd;   // floats between the dyT rows of consecutive pixels (Kp)
};

// dwT[t * ldw + 16 v + j] += sum over the band of xt[t][p row + q sw] * dyT[(p Q + q) ldd + 16 v + j]
// for the NT taps t (xt[t]: the channel's padded plane at the tap's offset) and KV vectors v.
template <int NT, int KV, int SW>
HG_INLINE void taps_tile(const Band& b, const float* const* xt, const float* __restrict dyT,
                         float* __restrict dwT, int64_t ldw) {
  vf16 acc[NT][KV];
  for (int t = 0; t < NT; ++t)
    for (int v = 0; v < KV; ++v) acc[t][v] = vf16{};
  const int64_t sw = SW ? SW : b.sw;
  for (int64_t p = b.p0; p < b.p1; ++p) {
    const float* xr[NT];
    for (int t = 0; t < NT; ++t) xr[t] = xt[t] + p * b.row;
    const float* dp = dyT + (p * b.Q + b.q0) * b.ldd;
    for (int64_t q = b.q0; q < b.q1; ++q, dp += b.ldd) {
      vf16 d[KV];
      for (int v = 0; v < KV; ++v) d[v] = load16(dp + 16 * v);
      const int64_t o = q * sw;
      for (int t = 0; t < NT; ++t) {
        const float xv = xr[t][o];
        for (int v = 0; v < KV; ++v) acc[t][v] += xv * d[v];
      }
    }
  }
  for (int t = 0; t < NT; ++t)
    for (int v = 0; v < KV; ++v)
      store16(dwT + t * ldw + 16 * v, load16(dwT + t * ldw + 16 * v) + acc[t][v]);
}

// taps_tile for nt (1 ... max_taps(KV)) taps.
template <int KV, int SW>
HG_INLINE void taps_tile_n(int nt, const Band& b, const float* const* xt, const float* dyT,
                           float* dwT, int64_t ldw) {
  switch (nt) {
    case 1: return taps_tile<1, KV, SW>(b, xt, dyT, dwT, ldw);
    case 2: return taps_tile<2, KV, SW>(b, xt, dyT, dwT, ldw);
    case 3: return taps_tile<3, KV, SW>(b, xt, dyT, dwT, ldw);
    case 4: return taps_tile<4, KV, SW>(b, xt, dyT, dwT, ldw);
    case 5: return taps_tile<5, KV, SW>(b, xt, dyT, dwT, ldw);
    case 6: return taps_tile<6, KV, SW>(b, xt, dyT, dwT, ldw);
    default: break;
  }
  if constexpr (max_taps(KV) > 6) {
    switch (nt) {
      case 7: return taps_tile<7, KV, SW>(b, xt, dyT, dwT, ldw);
      case 8: return taps_tile<8, KV, SW>(b, xt, dyT, dwT, ldw);
      case 9: return taps_tile<9, KV, SW>(b, xt, dyT, dwT, ldw);
      default: break;
    }
  }
}

// Every tile of one band of one image: output-channel blocks, input channels, tap chunks.
// xp: C padded planes of `plane` floats; off[i]: tap i's offset r Wp + s; dwT (C*R*S, Kp).
template <int SW>
HG_INLINE void band_tiles(const Band& b, int64_t C, int64_t RS, int64_t Kp, const float* xp,
                          int64_t plane, const int64_t* off, const float* dyT, float* dwT) {
  const float* xt[9];
  for (int64_t k0 = 0; k0 < Kp;) {
    const int kv = Kp - k0 >= 64 ? 4 : Kp - k0 >= 32 ? 2 : 1;
    const int most = max_taps(kv);
    const int64_t chunks = (RS + most - 1) / most;
    for (int64_t c = 0; c < C; ++c) {
      for (int64_t j = 0, t0 = 0; j < chunks; ++j) {
        const int64_t t1 = RS * (j + 1) / chunks;  // chunk j: taps [t0, t1)
        const int nt = int(t1 - t0);
        for (int t = 0; t < nt; ++t) xt[t] = xp + c * plane + off[t0 + t];
        float* d = dwT + (c * RS + t0) * Kp + k0;
        if (kv == 4) taps_tile_n<4, SW>(nt, b, xt, dyT + k0, d, Kp);
        else if (kv == 2) taps_tile_n<2, SW>(nt, b, xt, dyT + k0, d, Kp);
        else taps_tile_n<1, SW>(nt, b, xt, dyT + k0, d, Kp);
        t0 = t1;
      }
    }
    k0 += 16 * kv;
  }
}

HG_CPU_CLONES
void band_tiles_any(const Band& b, int64_t C, int64_t RS, int64_t Kp, const float* xp,
                    int64_t plane, const int64_t* off, const float* dyT, float* dwT) {
  if (b.sw == 1) band_tiles<1>(b, C, RS, Kp, xp, plane, off, dyT, dwT);
  else if (b.sw == 2) band_tiles<2>(b, C, RS, Kp, xp, plane, off, dyT, dwT);
  else band_tiles<0>(b, C, RS, Kp, xp, plane, off, dyT, dwT);
}

// dyT (i1 - i0, Kp) = columns [i0, i1) of dy_n (K, PQ), transposed: blocks of 32 pixels, whose
// 32 dyT rows (8 KiB with 64 channels) stay in L1 while each channel's 32 contiguous values are
// read. Columns K ... Kp stay as they are (zeroed once by the caller).
void transpose_dy(const float* __restrict dy, int64_t K, int64_t PQ, int64_t i0, int64_t i1,
                  int64_t Kp, float* __restrict dyT) {
  constexpr int64_t B = 32;
  for (int64_t b0 = i0; b0 < i1; b0 += B) {
    const int64_t n = std::min(B, i1 - b0);
    float* __restrict out = dyT + (b0 - i0) * Kp;
    for (int64_t k = 0; k < K; ++k) {
      const float* __restrict src = dy + k * PQ + b0;
      for (int64_t i = 0; i < n; ++i) out[i * Kp + k] = src[i];
    }
  }
}

}  // namespace

bool conv2d_taps_backward_weight(const ConvBackwardWeightArgs& a) {
  const ConvGeometry& g = a.g;
  if (!direct_applies(g, /*any_stride=*/true)) return false;
  const int64_t Kp = (g.K + 15) / 16 * 16, RS = g.R * g.S, PQ = g.P * g.Q;
  const int64_t Hp = g.H + 2 * g.pad_h, Wp = g.W + 2 * g.pad_w;
  // A plane holds every position the taps read: rows up to (P-1) sh + R - 1 and columns up to
  // sw + S - 1, which may pass the padded image when the stride skips its last rows.
  const int64_t rows_read = std::max(Hp, (g.P - 1) * g.stride_h + g.R);
  const int64_t plane = rows_read * Wp + g.S;
  const int64_t dwT_size = g.C * RS * Kp;
  const int T = int(std::max<int64_t>(1, std::min<int64_t>(in_parallel() ? 1 : num_threads(), g.N)));
  // Bands of up to kBandFloats of dyT (whole rows, or a row cut into equal pieces): the band's
  // dyT stays in L1 next to the x rows one channel's tiles read.
  const int64_t band_rows = std::max<int64_t>(1, kBandFloats / (Kp * g.Q));
  const int64_t pieces = band_rows > 1 ? 1 : (Kp * g.Q + kBandFloats - 1) / kBandFloats;
  const int64_t band_px = band_rows * g.Q;
  std::vector<Band> bands;
  for (int64_t p0 = 0; p0 < g.P; p0 += band_rows)
    for (int64_t j = 0; j < pieces; ++j)
      bands.push_back(Band{p0, std::min(g.P, p0 + band_rows), g.Q * j / pieces,
                           g.Q * (j + 1) / pieces, g.Q, g.stride_h * Wp, g.stride_w, Kp});
  // dy's pixels of band i, [first, end): contiguous (whole rows or one row)
  auto first = [&](const Band& b) { return b.p0 * g.Q + b.q0; };
  auto end = [&](const Band& b) { return (b.p1 - 1) * g.Q + b.q1; };
  const int64_t per_slot = g.C * plane + band_px * Kp;
  std::unique_ptr<float[]> scratch(new float[per_slot * T]);
  std::unique_ptr<float[]> partial(new float[dwT_size * T]);
  std::vector<int64_t> off(static_cast<size_t>(RS));
  for (int64_t r = 0; r < g.R; ++r)
    for (int64_t s = 0; s < g.S; ++s) off[r * g.S + s] = r * Wp + s;
  parallel_tasks(T, std::min(T, available_threads()), [&](int64_t t) {
    float* xp = scratch.get() + parallel_slot() * per_slot;
    float* dyT = xp + g.C * plane;
    float* dwT = partial.get() + t * dwT_size;
    std::fill(dwT, dwT + dwT_size, 0.f);
    std::fill(xp, xp + g.C * plane, 0.f);  // the border stays zero; the interior is rewritten
    std::fill(dyT, dyT + band_px * Kp, 0.f);  // channels K ... Kp stay zero
    for (int64_t n = g.N * t / T; n < g.N * (t + 1) / T; ++n) {
      const float* xn = a.x + n * g.C * g.H * g.W;
      for (int64_t c = 0; c < g.C; ++c)
        for (int64_t h = 0; h < g.H; ++h)
          std::memcpy(xp + c * plane + (h + g.pad_h) * Wp + g.pad_w, xn + (c * g.H + h) * g.W,
                      sizeof(float) * size_t(g.W));
      const float* dyn = a.dy + n * g.K * PQ;
      for (size_t i = 0; i < bands.size(); ++i) {
        const Band& b = bands[i];
        // The band's dy, transposed just before its tiles read it.
        transpose_dy(dyn, g.K, PQ, first(b), end(b), Kp, dyT);
        // Ask for the next band's dy (K runs far apart) while this band's tiles run: fetched on
        // demand, the transpose would wait on memory for most of its reads.
        const bool last = i + 1 == bands.size();
        if (!last || n + 1 < g.N) {
          const Band& nb = bands[last ? 0 : i + 1];
          const float* next = last ? dyn + g.K * PQ : dyn;
          for (int64_t k = 0; k < g.K; ++k)
            for (int64_t j = first(nb); j < end(nb); j += 16)
              __builtin_prefetch(next + k * PQ + j, 0, 2);
        }
        band_tiles_any(b, g.C, RS, Kp, xp, plane, off.data(), dyT - first(b) * Kp, dwT);
      }
    }
  });
  const int64_t CRS = g.C * RS;
  for (int64_t k = 0; k < g.K; ++k) {
    for (int64_t i = 0; i < CRS; ++i) {
      float sum = partial[i * Kp + k];
      for (int t = 1; t < T; ++t) sum += partial[t * dwT_size + i * Kp + k];
      a.dw[k * CRS + i] = sum;
    }
  }
  return true;
}

}  // namespace hg::cpu
