// CPU kernels of the graph plans' data-movement and reduction ops (ops_graph.h), float32:
//   concat / split  cpu.block_copy: strided 2-D block copies, a memcpy per row; threads take
//                   (block, row) pairs above kParallelMin elements;
//   transpose       cpu.transpose_rows: y is written in order, row by row of its innermost axis;
//                   a row whose input stride is 1 is a memcpy, any other a strided gather
//                   (x_stride along the row), whose start comes from the row's outer index;
//   reduce_mean     cpu.reduce_mean_rows: one output at a time, its elements summed in double
//                   along the innermost reduced axis (four partial sums, so the adds pipeline)
//                   and the other reduced axes walked by index, then divided by the count;
//   pad2d           cpu.pad2d_rows: each output row is filled (top, bottom) or written as
//                   left fill, a memcpy of the input row, right fill.
// Each has the only kernel of its op; the vendor slots fall back to them. Threads split the
// output rows (or outputs) above kParallelMin elements of work.
//
// Test:  PYTHONPATH=python python3 -m pytest -q tests/ops/test_shape.py
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "../core/checks.h"
#include "cpu_kernels.h"

namespace hg::cpu {
namespace {

constexpr int64_t kParallelMin = 1 << 15;

int threads_for(int64_t work) { return work > kParallelMin ? num_threads() : 1; }

void block_copy(const BlockCopyArgs& a) {
  int64_t per_row = 0;
  for (int64_t b = 0; b < a.count; ++b) per_row += a.blocks[b].len;
  parallel_for(a.count * a.rows, threads_for(per_row * a.rows), [&](int64_t t) {
    const CopyBlock& b = a.blocks[t / a.rows];
    const int64_t r = t % a.rows;
    std::memcpy(b.dst + r * b.dst_ld, b.src + r * b.src_ld, size_t(b.len) * sizeof(float));
  });
}

void gather_row(const float* __restrict x, int64_t stride, float* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i * stride];
}

void transpose_range(const TransposeArgs& a, int64_t row_begin, int64_t row_end) {
  const int last = a.ndim - 1;
  const int64_t inner = a.shape[last], s = a.x_stride[last];
  for (int64_t row = row_begin; row < row_end; ++row) {
    int64_t rest = row, off = 0;
    for (int d = last - 1; d >= 0; --d) {
      off += (rest % a.shape[d]) * a.x_stride[d];
      rest /= a.shape[d];
    }
    float* y = a.y + row * inner;
    if (s == 1) {
      std::memcpy(y, a.x + off, size_t(inner) * sizeof(float));
    } else {
      gather_row(a.x + off, s, y, inner);
    }
  }
}

void transpose_rows(const TransposeArgs& a) {
  const int64_t rows = a.n / a.shape[a.ndim - 1];
  parallel_range(rows, threads_for(a.n),
                 [&](int64_t b, int64_t e) { transpose_range(a, b, e); });
}

// The sum of n elements of x, `stride` apart, in double.
double strided_sum(const float* __restrict x, int64_t stride, int64_t n) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += x[i * stride];
    s1 += x[(i + 1) * stride];
    s2 += x[(i + 2) * stride];
    s3 += x[(i + 3) * stride];
  }
  for (; i < n; ++i) s0 += x[i * stride];
  return (s0 + s1) + (s2 + s3);
}

void reduce_mean_range(const ReduceMeanArgs& a, int64_t begin, int64_t end) {
  const int rl = a.red_ndim - 1;
  const int64_t inner = a.red_shape[rl], outer_count = a.count / inner;
  for (int64_t o = begin; o < end; ++o) {
    int64_t rest = o, base = 0;
    for (int d = a.kept_ndim - 1; d >= 0; --d) {
      base += (rest % a.kept_shape[d]) * a.kept_stride[d];
      rest /= a.kept_shape[d];
    }
    double sum = 0;
    for (int64_t r = 0; r < outer_count; ++r) {  // the reduced axes before the innermost
      int64_t rr = r, off = base;
      for (int d = rl - 1; d >= 0; --d) {
        off += (rr % a.red_shape[d]) * a.red_stride[d];
        rr /= a.red_shape[d];
      }
      sum += strided_sum(a.x + off, a.red_stride[rl], inner);
    }
    a.y[o] = float(sum / double(a.count));
  }
}

void reduce_mean_rows(const ReduceMeanArgs& a) {
  parallel_range(a.n, threads_for(a.n * a.count),
                 [&](int64_t b, int64_t e) { reduce_mean_range(a, b, e); });
}

void fill_row(float* __restrict y, int64_t n, float v) {
  for (int64_t i = 0; i < n; ++i) y[i] = v;
}

void pad2d_rows(const Pad2dArgs& a) {
  const int64_t Ho = a.top + a.H + a.bottom, Wo = a.left + a.W + a.right;
  parallel_range(a.planes * Ho, threads_for(a.planes * Ho * Wo), [&](int64_t b, int64_t e) {
    for (int64_t row = b; row < e; ++row) {
      const int64_t plane = row / Ho, h = row % Ho - a.top;
      float* y = a.y + row * Wo;
      if (h < 0 || h >= a.H) {
        fill_row(y, Wo, a.value);
        continue;
      }
      fill_row(y, a.left, a.value);
      std::memcpy(y + a.left, a.x + (plane * a.H + h) * a.W, size_t(a.W) * sizeof(float));
      fill_row(y + a.left + a.W, a.right, a.value);
    }
  });
}

}  // namespace
}  // namespace hg::cpu

HG_REGISTER_KERNEL(concat_op, cpu, handwritten, "cpu.block_copy", &hg::cpu::block_copy);
HG_REGISTER_KERNEL(split_op, cpu, handwritten, "cpu.block_copy", &hg::cpu::block_copy);
HG_REGISTER_KERNEL(transpose_op, cpu, handwritten, "cpu.transpose_rows", &hg::cpu::transpose_rows);
HG_REGISTER_KERNEL(reduce_mean_op, cpu, handwritten, "cpu.reduce_mean_rows",
                   &hg::cpu::reduce_mean_rows);
HG_REGISTER_KERNEL(pad2d_op, cpu, handwritten, "cpu.pad2d_rows", &hg::cpu::pad2d_rows);
