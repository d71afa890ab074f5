// CPU broadcasting binary ops: y = a (add | sub | mul | div) b over y's collapsed axes
// (ops_graph.h, BinaryArgs: at most 6 axes, each operand's innermost stride 0 or 1).
//
// Kernel: cpu.binary_rows (handwritten, the only one; the vendor slot falls back to it). y is
// walked as rows of its innermost axis; each row is one loop over contiguous (or, for a
// broadcast operand, one repeated) elements, instantiated per kind and per pair of inner strides
// (1/1: same shape, 1/0: a per-row scalar such as NCHW * NC11, 0/1, 0/0: one element), with
// __restrict pointers so it vectorizes; the row's start in a and b comes from its outer
// index. Threads take ranges of y's flat index (multiples of 64 elements) above kParallelMin
// elements, so a single long row is split too. y may be a or b itself: each iteration reads its
// element before it writes it.
//
// Test:  PYTHONPATH=python python3 -m pytest -q tests/ops/test_binary.py
// Bench: PYTHONPATH=python python3 -m timeit -s "import numpy as np, hipgrad as hg;
//          a = hg.tensor(np.random.randn(8, 64, 56, 56)); b = hg.tensor(np.random.randn(1, 64, 1, 1))"
//          "hg.ops.binary(a, b, 'mul')"
#include <algorithm>
#include <cstdint>

#include "../core/checks.h"
#include "cpu_kernels.h"

namespace hg::cpu {
namespace {

constexpr int64_t kParallelMin = 1 << 15;

template <BinaryKind K>
inline float apply(float a, float b) {
  if constexpr (K == BinaryKind::add) return a + b;
  if constexpr (K == BinaryKind::sub) return a - b;
  if constexpr (K == BinaryKind::mul) return a * b;
  return a / b;
}

// One row of n outputs; SA / SB (0 or 1) are the operands' strides along it.
template <BinaryKind K, int SA, int SB>
void binary_row(const float* __restrict a, const float* __restrict b, float* __restrict y,
                int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = apply<K>(a[i * SA], b[i * SB]);
}

using RowFn = void (*)(const float*, const float*, float*, int64_t);

template <BinaryKind K>
RowFn row_for(int64_t sa, int64_t sb) {
  if (sa == 1) return sb == 1 ? &binary_row<K, 1, 1> : &binary_row<K, 1, 0>;
  return sb == 1 ? &binary_row<K, 0, 1> : &binary_row<K, 0, 0>;
}

RowFn row_fn(BinaryKind kind, int64_t sa, int64_t sb) {
  switch (kind) {
    case BinaryKind::add: return row_for<BinaryKind::add>(sa, sb);
    case BinaryKind::sub: return row_for<BinaryKind::sub>(sa, sb);
    case BinaryKind::mul: return row_for<BinaryKind::mul>(sa, sb);
    case BinaryKind::div: return row_for<BinaryKind::div>(sa, sb);
  }
  return nullptr;
}

// y's flat elements [begin, end), row piece by row piece.
void binary_range(const BinaryArgs& g, RowFn row, int64_t begin, int64_t end) {
  const int last = g.ndim - 1;
  const int64_t inner = g.shape[last];
  int64_t idx[kMaxGraphRank];  // the multi-index of element `begin` over the outer axes
  int64_t rest = begin / inner, col = begin % inner;
  for (int d = last - 1; d >= 0; --d) {
    idx[d] = rest % g.shape[d];
    rest /= g.shape[d];
  }
  for (int64_t i = begin; i < end;) {
    int64_t oa = col * g.a_stride[last], ob = col * g.b_stride[last];
    for (int d = 0; d < last; ++d) {
      oa += idx[d] * g.a_stride[d];
      ob += idx[d] * g.b_stride[d];
    }
    const int64_t len = std::min(inner - col, end - i);
    row(g.a + oa, g.b + ob, g.y + i, len);
    i += len;
    col = 0;
    for (int d = last - 1; d >= 0; --d) {  // next row
      if (++idx[d] < g.shape[d]) break;
      idx[d] = 0;
    }
  }
}

void binary_rows(const BinaryArgs& a) {
  const RowFn row = row_fn(a.kind, a.a_stride[a.ndim - 1], a.b_stride[a.ndim - 1]);
  if (a.n <= kParallelMin) return binary_range(a, row, 0, a.n);
  parallel_range(a.n, num_threads(), [&](int64_t b, int64_t e) { binary_range(a, row, b, e); },
                 64);
}

}  // namespace
}  // namespace hg::cpu

HG_REGISTER_KERNEL(binary_op, cpu, handwritten, "cpu.binary_rows", &hg::cpu::binary_rows);
