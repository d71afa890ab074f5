// im2col / col2im for one image (layout in im2col.h). Both variants of the CPU convolution use
// these; they differ only in the GEMM that follows.
//   im2col: one col row (c, r, s) per loop iteration, threads split the C*R*S rows. For stride 1
//           each output row is a contiguous copy; zero fill covers the padding on both sides.
//   col2im: one input channel per loop iteration (its plane is private, so no races), zeroed,
//           then the R*S col rows of that channel are added in; contiguous for stride 1.
// Tested through tests/ops/test_conv.py (every conv test with R, S > 1 or padding).
#include "im2col.h"

#include "cpu_kernels.h"

namespace hg::cpu {

namespace {
constexpr int64_t kParallelMin = 1 << 15;  // elements of col below which one thread is faster
}

void im2col(const ConvGeometry& g, const float* x, float* col, bool threaded) {
  const int64_t RS = g.R * g.S, rows = g.C * RS, PQ = g.P * g.Q, HW = g.H * g.W;
  const int64_t sw = g.stride_w;
#pragma omp parallel for schedule(static) num_threads(num_threads()) \
    if (threaded && rows * PQ >= kParallelMin)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t c = row / RS, r = (row / g.S) % g.R, s = row % g.S;
    const float* __restrict xc = x + c * HW;
    float* __restrict out = col + row * PQ;
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
  }
}

void col2im(const ConvGeometry& g, const float* col, float* x, bool threaded) {
  const int64_t RS = g.R * g.S, PQ = g.P * g.Q, HW = g.H * g.W;
  const int64_t sw = g.stride_w;
#pragma omp parallel for schedule(static) num_threads(num_threads()) \
    if (threaded && g.C * RS * PQ >= kParallelMin)
  for (int64_t c = 0; c < g.C; ++c) {
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
  }
}

}  // namespace hg::cpu
