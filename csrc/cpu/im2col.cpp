// im2col / col2im for one image (layout in im2col.h). The handwritten and vendor CPU convolutions both use
// these; they differ only in the GEMM that follows.
//   im2col: one col row (c, r, s) per loop iteration, threads split the C*R*S rows. For stride 1
//           each output row is a contiguous copy; zero fill covers the padding on both sides.
//   im2col_images: several small images side by side (conv.cpp's narrow-plane forward): each
//           channel's planes copied once into a zero-bordered buffer, then every col row is a
//           gather through precomputed offsets (runs of Q contiguous floats for stride 1).
//   col2im: one input channel per loop iteration (its plane is private, so no races), zeroed,
//           then the R*S col rows of that channel are added in; contiguous for stride 1.
// Tested through tests/ops/test_conv.py (every conv test with R, S > 1 or padding).
#include "im2col.h"

#include "cpu_kernels.h"

namespace hg::cpu {

namespace {
constexpr int64_t kParallelMin = 1 << 15;  // elements of col below which one thread is faster
}

void im2col(const ConvGeometry& g, const float* x, float* col, bool threaded, int64_t ldcol) {
  const int64_t RS = g.R * g.S, rows = g.C * RS, PQ = g.P * g.Q, HW = g.H * g.W;
  const int64_t ld = ldcol > 0 ? ldcol : PQ;
  const int64_t sw = g.stride_w;
  parallel_for(rows, (threaded && rows * PQ >= kParallelMin) ? num_threads() : 1, [&](int64_t row) {
    const int64_t c = row / RS, r = (row / g.S) % g.R, s = row % g.S;
    const float* __restrict xc = x + c * HW;
    float* __restrict out = col + row * ld;
    const int64_t off_w = s * g.dil_w - g.pad_w;
    int64_t lo, hi;
    valid_range(off_w, sw, g.W, g.Q, &lo, &hi);
    for (int64_t p = 0; p < g.P; ++p) {
      float* __restrict o = out + p * g.Q;
      const int64_t h = p * g.stride_h - g.pad_h + r * g.dil_h;
      if (h < 0 || h >= g.H) {
        std::fill(o, o + g.Q, 0.f);
        continue;
      }
      const float* __restrict xr = xc + h * g.W;
      std::fill(o, o + lo, 0.f);
      if (sw == 1) {
        for (int64_t q = lo; q < hi; ++q) o[q] = xr[q + off_w];
      } else {
        for (int64_t q = lo; q < hi; ++q) o[q] = xr[q * sw + off_w];
      }
      std::fill(o + hi, o + g.Q, 0.f);
    }
  });
}

namespace {
// With stride_w == 1 a col row of the narrow-plane im2col is nb*P runs of Q contiguous floats,
// run i starting at taps[i*Q]; a compile-time Q turns each run into a few vector moves.
using RowCopy = void (*)(int64_t, int64_t, const float*, const int32_t*, float*);
template <int Q>
void copy_runs(int64_t runs, int64_t q_any, const float* __restrict src, const int32_t* taps,
               float* __restrict out) {
  const int64_t q = Q > 0 ? Q : q_any;
  for (int64_t i = 0; i < runs; ++i) {
    const float* __restrict s = src + taps[i * q];
    float* __restrict o = out + i * q;
    for (int64_t t = 0; t < q; ++t) o[t] = s[t];
  }
}
RowCopy row_copy(int64_t Q) {
  switch (Q) {
    case 2: return &copy_runs<2>;
    case 3: return &copy_runs<3>;
    case 4: return &copy_runs<4>;
    case 5: return &copy_runs<5>;
    case 6: return &copy_runs<6>;
    case 7: return &copy_runs<7>;
    case 8: return &copy_runs<8>;
    default: return &copy_runs<0>;
  }
}
}  // namespace

void im2col_images_taps(const ConvGeometry& g, int64_t nb, int32_t* taps) {
  const int64_t Wp = g.W + 2 * g.pad_w, plane = (g.H + 2 * g.pad_h) * Wp;
  for (int64_t b = 0; b < nb; ++b)
    for (int64_t p = 0; p < g.P; ++p)
      for (int64_t q = 0; q < g.Q; ++q)
        *taps++ = int32_t(b * plane + p * g.stride_h * Wp + q * g.stride_w);
}

void im2col_images(const ConvGeometry& g, const float* x, int64_t nb, float* col, int64_t ld,
                   float* pad, const int32_t* taps) {
  const int64_t Wp = g.W + 2 * g.pad_w, Hp = g.H + 2 * g.pad_h, plane = Hp * Wp;
  const int64_t HW = g.H * g.W, cols = nb * g.P * g.Q;
  const RowCopy copy_rows = g.stride_w == 1 ? row_copy(g.Q) : nullptr;
  std::fill(pad, pad + nb * plane, 0.f);  // the border stays zero; the interior is rewritten
  for (int64_t c = 0; c < g.C; ++c) {
    for (int64_t b = 0; b < nb; ++b) {
      const float* __restrict src = x + (b * g.C + c) * HW;
      float* __restrict dst = pad + b * plane + g.pad_h * Wp + g.pad_w;
      for (int64_t h = 0; h < g.H; ++h) std::copy(src + h * g.W, src + (h + 1) * g.W, dst + h * Wp);
    }
    for (int64_t r = 0; r < g.R; ++r) {
      for (int64_t s = 0; s < g.S; ++s) {
        const float* __restrict src = pad + r * g.dil_h * Wp + s * g.dil_w;
        float* __restrict out = col + ((c * g.R + r) * g.S + s) * ld;
        if (copy_rows) {
          copy_rows(cols / g.Q, g.Q, src, taps, out);
        } else {
          for (int64_t j = 0; j < cols; ++j) out[j] = src[taps[j]];
        }
      }
    }
  }
}

void col2im(const ConvGeometry& g, const float* col, float* x, bool threaded) {
  const int64_t RS = g.R * g.S, PQ = g.P * g.Q, HW = g.H * g.W;
  const int64_t sw = g.stride_w;
  parallel_for(g.C, (threaded && g.C * RS * PQ >= kParallelMin) ? num_threads() : 1, [&](int64_t c) {
    float* __restrict xc = x + c * HW;
    std::fill(xc, xc + HW, 0.f);
    for (int64_t r = 0; r < g.R; ++r) {
      for (int64_t s = 0; s < g.S; ++s) {
        const float* __restrict in = col + ((c * g.R + r) * g.S + s) * PQ;
        const int64_t off_w = s * g.dil_w - g.pad_w;
        int64_t lo, hi;
        valid_range(off_w, sw, g.W, g.Q, &lo, &hi);
        for (int64_t p = 0; p < g.P; ++p) {
          const int64_t h = p * g.stride_h - g.pad_h + r * g.dil_h;
          if (h < 0 || h >= g.H) continue;
          float* __restrict xr = xc + h * g.W;
          const float* __restrict ir = in + p * g.Q;
          if (sw == 1) {
            for (int64_t q = lo; q < hi; ++q) xr[q + off_w] += ir[q];
          } else {
            for (int64_t q = lo; q < hi; ++q) xr[q * sw + off_w] += ir[q];
          }
        }
      }
    }
  });
}

}  // namespace hg::cpu
