// CPU 2-D pooling, NCHW, contiguous float32 (argmax int64), PyTorch semantics (floor mode,
// padding <= kernel/2, so every window holds at least one input element):
//   max_pool2d           y = max over the window (padding is -inf); argmax (unless nullptr) = h*W + w of the
//                        first maximum in row-major window order (PyTorch's CPU choice); a NaN
//                        in the window wins, as in PyTorch;
//   max_pool2d_backward  dx = scatter-add of dy at argmax; dx fully written;
//   avg_pool2d           y = window sum / (kh*kw), padding counted in the divisor;
//   avg_pool2d_backward  dx[h, w] = sum of dy / (kh*kw) over the windows that cover (h, w).
//
// Variants: cpu.*_planes (handwritten, the only ones). One OpenMP thread takes whole (n, c)
// planes (threads start only above kParallelMin input elements). Forward, and average backward:
// for each output row and kernel offset (r, s), one branch-free loop over the output columns q
// whose input column lies inside the row (the range is computed up front, not tested per
// element); it is contiguous in y / dy and strided in x / dx, with strides 1 and 2 compiled as
// constants so the loop vectorizes. Max backward scatters dy into its zeroed plane. The vendor
// slots fall back to these (OpenBLAS has no pooling routine).
//
// Test:  PYTHONPATH=python python3 -m pytest -q tests/ops/test_pool.py
// Bench: PYTHONPATH=python python3 -m timeit -s
//          "import numpy as np, hipgrad as hg; x = hg.tensor(np.random.randn(64, 64, 56, 56))" "hg.ops.max_pool2d(x, 2)"
#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "../core/checks.h"
#include "cpu_kernels.h"

namespace hg::cpu {
namespace {

constexpr int64_t kParallelMin = 1 << 15;

// Output columns q whose input column q*sw + off lies in [0, W): [lo, hi), possibly empty.
struct ColumnRange {
  int64_t lo, hi;
};
inline ColumnRange valid_columns(int64_t off, int64_t sw, int64_t W, int64_t Q) {
  const int64_t lo = off >= 0 ? 0 : (-off + sw - 1) / sw;
  const int64_t hi = off > W - 1 ? 0 : std::min(Q, (W - 1 - off) / sw + 1);
  return {lo, std::max(lo, hi)};
}

// Folds one kernel offset (r, s) into an output row: column q reads x[base + q*SW]. SW is the
// stride when it is 1 or 2 (a compile-time stride vectorizes), else 0 (the stride is sw_any).
// The row's argmax lives in int32 while it is built: SSE2 has no 64-bit compare-and-blend.
template <int SW>
void max_into_row(ColumnRange cols, int64_t sw_any, int32_t base, const float* __restrict x,
                  float* __restrict y, int32_t* __restrict idx) {
  const int64_t sw = SW > 0 ? SW : sw_any;
  for (int64_t q = cols.lo; q < cols.hi; ++q) {
    const float v = x[base + q * sw];
    const bool take = v > y[q] || v != v;
    y[q] = take ? v : y[q];
    idx[q] = take ? int32_t(base + q * sw) : idx[q];
  }
}

template <int SW>
void sum_into_row(ColumnRange cols, int64_t sw_any, int64_t base, const float* __restrict x,
                  float* __restrict y) {
  const int64_t sw = SW > 0 ? SW : sw_any;
  for (int64_t q = cols.lo; q < cols.hi; ++q) y[q] += x[base + q * sw];
}

// The adjoint of sum_into_row, scaled: dx[base + q*SW] += scale * dy[q].
template <int SW>
void add_from_row(ColumnRange cols, int64_t sw_any, int64_t base, float scale,
                  const float* __restrict dy, float* __restrict dx) {
  const int64_t sw = SW > 0 ? SW : sw_any;
  for (int64_t q = cols.lo; q < cols.hi; ++q) dx[base + q * sw] += scale * dy[q];
}

void max_pool2d_planes(const MaxPoolArgs& a) {
  const PoolGeometry g = a.g;
  const int64_t planes = g.N * g.C;
  HG_REQUIRE(g.H * g.W <= std::numeric_limits<int32_t>::max(), "max_pool2d: x's planes hold ",
             g.H * g.W, " elements; the CPU kernel supports up to 2^31-1 per (n, c) plane");
  const auto fold = g.sw == 1 ? &max_into_row<1> : g.sw == 2 ? &max_into_row<2> : &max_into_row<0>;
#pragma omp parallel num_threads(num_threads()) if(planes * g.H * g.W > kParallelMin)
  {
    std::vector<int32_t> idx(size_t(g.Q));
#pragma omp for schedule(static)
    for (int64_t nc = 0; nc < planes; ++nc) {
      const float* x = a.x + nc * g.H * g.W;
      for (int64_t p = 0; p < g.P; ++p) {
        float* y = a.y + (nc * g.P + p) * g.Q;
        const int64_t h0 = p * g.sh - g.ph;
        const int64_t first_row = std::max<int64_t>(h0, 0) * g.W;
        for (int64_t q = 0; q < g.Q; ++q) {  // a window of -inf points at its first real element
          y[q] = -std::numeric_limits<float>::infinity();
          idx[q] = int32_t(first_row + std::max<int64_t>(q * g.sw - g.pw, 0));
        }
        for (int64_t h = std::max<int64_t>(h0, 0); h < std::min(h0 + g.kh, g.H); ++h) {
          for (int64_t s = 0; s < g.kw; ++s) {
            const int64_t off = s - g.pw;
            const ColumnRange cols = valid_columns(off, g.sw, g.W, g.Q);
            fold(cols, g.sw, int32_t(h * g.W + off), x, y, idx.data());
          }
        }
        if (a.argmax) std::copy(idx.begin(), idx.end(), a.argmax + (nc * g.P + p) * g.Q);
      }
    }
  }
}

void max_pool2d_backward_planes(const MaxPoolBackwardArgs& a) {
  const PoolGeometry g = a.g;
  const int64_t planes = g.N * g.C, HW = g.H * g.W, PQ = g.P * g.Q;
  bool bad = false;
#pragma omp parallel for schedule(static) num_threads(num_threads()) reduction(|| : bad) if(planes * HW > kParallelMin)
  for (int64_t nc = 0; nc < planes; ++nc) {
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
  }
  HG_REQUIRE(!bad, "max_pool2d_backward: argmax holds indices outside [0, H*W) = [0, ", HW,
             ") for x_shape (", g.N, ", ", g.C, ", ", g.H, ", ", g.W,
             "); pass the argmax that max_pool2d returned for x");
}

void avg_pool2d_planes(const AvgPoolArgs& a) {
  const PoolGeometry g = a.g;
  const int64_t planes = g.N * g.C;
  const float inv = 1.f / float(g.kh * g.kw);
  const auto fold = g.sw == 1 ? &sum_into_row<1> : g.sw == 2 ? &sum_into_row<2> : &sum_into_row<0>;
#pragma omp parallel for schedule(static) num_threads(num_threads()) if(planes * g.H * g.W > kParallelMin)
  for (int64_t nc = 0; nc < planes; ++nc) {
    const float* x = a.x + nc * g.H * g.W;
    for (int64_t p = 0; p < g.P; ++p) {
      float* __restrict y = a.y + (nc * g.P + p) * g.Q;
      std::fill(y, y + g.Q, 0.f);
      const int64_t h0 = p * g.sh - g.ph;
      for (int64_t h = std::max<int64_t>(h0, 0); h < std::min(h0 + g.kh, g.H); ++h) {
        for (int64_t s = 0; s < g.kw; ++s) {
          const int64_t off = s - g.pw;
          fold(valid_columns(off, g.sw, g.W, g.Q), g.sw, h * g.W + off, x, y);
        }
      }
      for (int64_t q = 0; q < g.Q; ++q) y[q] *= inv;
    }
  }
}

void avg_pool2d_backward_planes(const AvgPoolBackwardArgs& a) {
  const PoolGeometry g = a.g;
  const int64_t planes = g.N * g.C, HW = g.H * g.W;
  const float inv = 1.f / float(g.kh * g.kw);
  // Strided read-modify-write leaves gaps no SSE store can skip: only stride 1 vectorizes.
  const auto spread = g.sw == 1 ? &add_from_row<1> : &add_from_row<0>;
#pragma omp parallel for schedule(static) num_threads(num_threads()) if(planes * HW > kParallelMin)
  for (int64_t nc = 0; nc < planes; ++nc) {
    float* dx = a.dx + nc * HW;
    std::fill(dx, dx + HW, 0.f);
    for (int64_t p = 0; p < g.P; ++p) {
      const float* dy = a.dy + (nc * g.P + p) * g.Q;
      const int64_t h0 = p * g.sh - g.ph;
      for (int64_t h = std::max<int64_t>(h0, 0); h < std::min(h0 + g.kh, g.H); ++h) {
        for (int64_t s = 0; s < g.kw; ++s) {
          const int64_t off = s - g.pw;
          spread(valid_columns(off, g.sw, g.W, g.Q), g.sw, h * g.W + off, inv, dy, dx);
        }
      }
    }
  }
}

}  // namespace
}  // namespace hg::cpu

#define HG_NO_BLAS_POOLING "OpenBLAS, the CPU vendor library, has no pooling routine"
HG_REGISTER_KERNEL(max_pool2d_op, cpu, handwritten, "cpu.max_pool2d_planes", &hg::cpu::max_pool2d_planes);
HG_REGISTER_FALLBACK(max_pool2d_op, cpu, vendor, HG_NO_BLAS_POOLING);
HG_REGISTER_KERNEL(max_pool2d_backward_op, cpu, handwritten, "cpu.max_pool2d_backward_planes",
                   &hg::cpu::max_pool2d_backward_planes);
HG_REGISTER_FALLBACK(max_pool2d_backward_op, cpu, vendor, HG_NO_BLAS_POOLING);
HG_REGISTER_KERNEL(avg_pool2d_op, cpu, handwritten, "cpu.avg_pool2d_planes", &hg::cpu::avg_pool2d_planes);
HG_REGISTER_FALLBACK(avg_pool2d_op, cpu, vendor, HG_NO_BLAS_POOLING);
HG_REGISTER_KERNEL(avg_pool2d_backward_op, cpu, handwritten, "cpu.avg_pool2d_backward_planes",
                   &hg::cpu::avg_pool2d_backward_planes);
HG_REGISTER_FALLBACK(avg_pool2d_backward_op, cpu, vendor, HG_NO_BLAS_POOLING);
