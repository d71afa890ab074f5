// CPU layer helpers (handwritten; no BLAS routine covers them, so each vendor variant falls back
// to these kernels).
//
//   add / add_ / fill_     y = a + alpha*b (y may be a), y = value: flat `parallel for simd`
//   batch_norm             x viewed as (N, C, HW). Training: per-channel mean, then the corrected
//                          two-pass biased variance (double), running stats updated with the
//                          unbiased variance; eval: running stats. y = (x - mean)*(invstd*gamma) + beta.
//   batch_norm_backward    dbeta = sum dy, dgamma = invstd * sum dy*(x - mean) in one pass;
//                          training dx = gamma*invstd*(dy - dbeta/M - (x - mean)*invstd*dgamma/M),
//                          eval dx = dy*gamma*invstd (M = N*HW).
//   dropout                mask[i] = (splitmix64 output i of the stream keyed by seed) >> 32 >=
//                          floor(p * 2^32); y = x * mask / (1 - p). A pure function of (seed, i),
//                          so the GPU kernels reproduce it bit for bit.
//   embedding              y[r, :] = weight[idx[r], :], rows split over threads.
//   embedding_backward     dw = 0, then dw[idx[r], :] += dy[r, :] in order of r, with the columns
//                          split over threads: each dw element is summed in the same order for
//                          any thread count, without atomics.
//
// Per-channel sums (channel_sums) are deterministic for any thread count: double partials per
// (n, c) plane (or per block of rows when HW == 1), combined in row order. Loops run on one thread below kParallelMin elements.
//
// Test: PYTHONPATH=python python3 -m pytest -q tests/ops/test_layers.py

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include "../core/checks.h"
#include "cpu_kernels.h"

namespace hg::cpu {
namespace {

constexpr int64_t kParallelMin = 1 << 15;
constexpr int64_t kChannelBlock = 64;     // channels combined together (contiguous partials)
constexpr int64_t kRowsPerPartial = 64;   // (N, C) input: rows summed into one partial row

// ---- add, fill --------------------------------------------------------------------------------
// Loop bodies are functions of their arrays: pointers captured by a lambda lose __restrict (and
// the aliasing facts the vectorizer needs).
void axpy_range(const float* A, const float* B, float* Y, float alpha, int64_t b, int64_t e) {
#pragma omp simd
  for (int64_t i = b; i < e; ++i) Y[i] = A[i] + alpha * B[i];
}

void fill_range(float* __restrict Y, float value, int64_t b, int64_t e) {
#pragma omp simd
  for (int64_t i = b; i < e; ++i) Y[i] = value;
}

void add_kernel(const AddArgs& a) {
  const float* A = a.a;  // may alias y (add_), so no restrict on a, b, y
  const float* B = a.b;
  float* Y = a.y;
  const float alpha = a.alpha;
  parallel_range(a.n, (a.n > kParallelMin) ? num_threads() : 1,
                 [=](int64_t b, int64_t e) { axpy_range(A, B, Y, alpha, b, e); }, 16);
}

void fill_kernel(const FillArgs& a) {
  float* Y = a.y;
  const float value = a.value;
  parallel_range(a.n, (a.n > kParallelMin) ? num_threads() : 1,
                 [=](int64_t b, int64_t e) { fill_range(Y, value, b, e); }, 16);
}

// ---- batch norm -------------------------------------------------------------------------------
// out0[c] = sum f0(c, i), out1[c] = sum f1(c, i) over the elements i of channel c of an
// (N, C, HW) tensor, in double. Partial rows of C sums are formed in parallel, one per (n) plane
// row when HW > 1 (vectorized over HW) or one per block of kRowsPerPartial rows when HW == 1
// (vectorized over C), then combined in row order.
template <class F0, class F1>
void channel_sums(int64_t N, int64_t C, int64_t HW, F0 f0, F1 f1, double* out0, double* out1) {
  const bool rows = HW == 1;
  const int64_t R = rows ? (N + kRowsPerPartial - 1) / kRowsPerPartial : N;
  std::vector<double> p0(R * C), p1(R * C);
  const int nt = num_threads();
  if (rows) {
    parallel_for(R, (N * C > kParallelMin) ? nt : 1, [&](int64_t r) {
      double* __restrict a0 = p0.data() + r * C;
      double* __restrict a1 = p1.data() + r * C;
      const int64_t end = std::min(N, (r + 1) * kRowsPerPartial);
      for (int64_t n = r * kRowsPerPartial; n < end; ++n) {
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) {
          a0[c] += f0(c, n * C + c);
          a1[c] += f1(c, n * C + c);
        }
      }
    });
  } else {
    parallel_for(N * C, (N * C * HW > kParallelMin) ? nt : 1, [&](int64_t p) {
      const int64_t c = p % C, base = p * HW;
      double a0 = 0.0, a1 = 0.0;
#pragma omp simd reduction(+ : a0, a1)
      for (int64_t i = base; i < base + HW; ++i) {
        a0 += f0(c, i);
        a1 += f1(c, i);
      }
      p0[p] = a0;
      p1[p] = a1;
    });
  }
  const int64_t blocks = (C + kChannelBlock - 1) / kChannelBlock;
  parallel_for(blocks, (R * C > kParallelMin) ? nt : 1, [&](int64_t b) {
    const int64_t c0 = b * kChannelBlock, c1 = std::min(C, c0 + kChannelBlock);
    for (int64_t c = c0; c < c1; ++c) out0[c] = out1[c] = 0.0;
    for (int64_t r = 0; r < R; ++r) {
#pragma omp simd
      for (int64_t c = c0; c < c1; ++c) {
        out0[c] += p0[r * C + c];
        out1[c] += p1[r * C + c];
      }
    }
  });
}

// f(c, i) for every element i of channel c; vectorized over HW, or over C when HW == 1.
template <class F>
void per_element(int64_t N, int64_t C, int64_t HW, F f) {
  const int nt = num_threads();
  if (HW == 1) {
    parallel_for(N, (N * C > kParallelMin) ? nt : 1, [&](int64_t n) {
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) f(c, n * C + c);
    });
    return;
  }
  parallel_for(N * C, (N * C * HW > kParallelMin) ? nt : 1, [&](int64_t p) {
    const int64_t c = p % C, base = p * HW;
#pragma omp simd
    for (int64_t i = base; i < base + HW; ++i) f(c, i);
  });
}

void batch_norm_kernel(const BatchNormArgs& a) {
  const int64_t N = a.N, C = a.C, HW = a.HW, M = N * HW;
  const float* __restrict x = a.x;
  float* mean = a.save_mean;
  float* invstd = a.save_invstd;
  if (a.training) {
    std::vector<double> sum(C), unused(C), sq(C), dev(C);
    channel_sums(N, C, HW, [x](int64_t, int64_t i) { return static_cast<double>(x[i]); },
                 [](int64_t, int64_t) { return 0.0; }, sum.data(), unused.data());
    std::vector<double> mu(C);
    for (int64_t c = 0; c < C; ++c) mu[c] = sum[c] / static_cast<double>(M);
    const double* m = mu.data();
    channel_sums(N, C, HW,
                 [x, m](int64_t c, int64_t i) { const double d = x[i] - m[c]; return d * d; },
                 [x, m](int64_t c, int64_t i) { return x[i] - m[c]; }, sq.data(), dev.data());
    const double mom = a.momentum;
    for (int64_t c = 0; c < C; ++c) {
      // biased; rounding below 0 is clamped, NaN (from an infinite x) kept, as in PyTorch
      const double v = (sq[c] - dev[c] * dev[c] / M) / M, var = v < 0.0 ? 0.0 : v;
      mean[c] = static_cast<float>(mu[c]);
      invstd[c] = static_cast<float>(1.0 / std::sqrt(var + a.eps));
      const double unbiased = var * static_cast<double>(M) / static_cast<double>(M - 1);
      a.running_mean[c] = static_cast<float>((1.0 - mom) * a.running_mean[c] + mom * mu[c]);
      a.running_var[c] = static_cast<float>((1.0 - mom) * a.running_var[c] + mom * unbiased);
    }
  } else {
    for (int64_t c = 0; c < C; ++c) {
      mean[c] = a.running_mean[c];
      invstd[c] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(a.running_var[c]) + a.eps));
    }
  }
  std::vector<float> scale(C);
  for (int64_t c = 0; c < C; ++c) scale[c] = invstd[c] * a.gamma[c];
  const float* s = scale.data();
  const float* b = a.beta;
  const float* mn = mean;
  float* __restrict y = a.y;
  per_element(N, C, HW, [=](int64_t c, int64_t i) { y[i] = (x[i] - mn[c]) * s[c] + b[c]; });
}

void batch_norm_backward_kernel(const BatchNormBackwardArgs& a) {
  const int64_t N = a.N, C = a.C, HW = a.HW, M = N * HW;
  const float* __restrict x = a.x;
  const float* __restrict dy = a.dy;
  const float* mean = a.save_mean;
  std::vector<double> sum_dy(C), sum_dy_xm(C);
  channel_sums(N, C, HW, [dy](int64_t, int64_t i) { return static_cast<double>(dy[i]); },
               [x, dy, mean](int64_t c, int64_t i) {
                 return static_cast<double>(dy[i]) * (static_cast<double>(x[i]) - mean[c]);
               },
               sum_dy.data(), sum_dy_xm.data());
  // dx = k * dy - k * mean_dy - (x - mean) * k2, per channel.
  std::vector<float> k(C), shift(C), k2(C);
  for (int64_t c = 0; c < C; ++c) {
    const double inv = a.save_invstd[c], kc = static_cast<double>(a.gamma[c]) * inv;
    a.dbeta[c] = static_cast<float>(sum_dy[c]);
    a.dgamma[c] = static_cast<float>(sum_dy_xm[c] * inv);
    k[c] = static_cast<float>(kc);
    shift[c] = a.training && M > 0 ? static_cast<float>(kc * sum_dy[c] / M) : 0.f;
    k2[c] = a.training && M > 0 ? static_cast<float>(kc * inv * inv * sum_dy_xm[c] / M) : 0.f;
  }
  const float *kp = k.data(), *sp = shift.data(), *k2p = k2.data();
  float* __restrict dx = a.dx;
  if (!a.training) {  // the eval gradient does not depend on x (a NaN in x stays out of dx)
    per_element(N, C, HW, [=](int64_t c, int64_t i) { dx[i] = kp[c] * dy[i]; });
    return;
  }
  per_element(N, C, HW, [=](int64_t c, int64_t i) {
    dx[i] = kp[c] * dy[i] - sp[c] - (x[i] - mean[c]) * k2p[c];
  });
}

// ---- dropout ----------------------------------------------------------------------------------
constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;

inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void dropout_range(const float* __restrict x, float* __restrict y, uint8_t* __restrict mask,
                   uint64_t key, uint64_t threshold, float scale, int64_t b, int64_t e) {
#pragma omp simd
  for (int64_t i = b; i < e; ++i) {
    const uint64_t h = mix64(key + (static_cast<uint64_t>(i) + 1) * kGolden);
    const bool keep = (h >> 32) >= threshold;
    mask[i] = keep;
    y[i] = x[i] * (keep ? scale : 0.f);
  }
}

void dropout_kernel(const DropoutArgs& a) {
  const uint64_t key = mix64(a.seed);
  const uint64_t threshold = static_cast<uint64_t>(static_cast<double>(a.p) * 4294967296.0);
  const float scale = static_cast<float>(1.0 / (1.0 - static_cast<double>(a.p)));
  const float* x = a.x;
  float* y = a.y;
  uint8_t* mask = a.mask;
  parallel_range(a.n, (a.n > kParallelMin) ? num_threads() : 1, [=](int64_t b, int64_t e) {
    dropout_range(x, y, mask, key, threshold, scale, b, e);
  }, 16);
}

void dropout_backward_range(const float* __restrict dy, const uint8_t* __restrict mask,
                            float* __restrict dx, float scale, int64_t b, int64_t e) {
#pragma omp simd
  for (int64_t i = b; i < e; ++i) dx[i] = dy[i] * (static_cast<float>(mask[i]) * scale);
}

void dropout_backward_kernel(const DropoutBackwardArgs& a) {
  const float scale = static_cast<float>(1.0 / (1.0 - static_cast<double>(a.p)));
  const float* dy = a.dy;
  const uint8_t* mask = a.mask;
  float* dx = a.dx;
  parallel_range(a.n, (a.n > kParallelMin) ? num_threads() : 1, [=](int64_t b, int64_t e) {
    dropout_backward_range(dy, mask, dx, scale, b, e);
  }, 16);
}

// ---- embedding --------------------------------------------------------------------------------
void embedding_kernel(const EmbeddingArgs& a) {
  const int64_t dim = a.dim;
  std::atomic<int> bad{0};
  parallel_for(a.count, (a.count * dim > kParallelMin) ? num_threads() : 1, [&](int64_t r) {
    const int64_t j = a.idx[r];
    float* y = a.y + r * dim;
    if (j < 0 || j >= a.num) {
      bad = 1;
      std::fill(y, y + dim, 0.f);
    } else {
      std::memcpy(y, a.weight + j * dim, static_cast<size_t>(dim) * sizeof(float));
    }
  });
  if (bad) *a.bad_index = 1;
}

void embedding_backward_kernel(const EmbeddingBackwardArgs& a) {
  const int64_t dim = a.dim, num = a.num;
  float* __restrict dw = a.dw;
  const float* __restrict dy = a.dy;
  const int64_t total = num * dim;
  parallel_range(total, (total > kParallelMin) ? num_threads() : 1,
                 [=](int64_t b, int64_t e) { fill_range(dw, 0.f, b, e); }, 16);
  // Column slices of at least 16 floats per thread; every thread walks all of idx in order.
  const int threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(num_threads(), dim / 16)));
  std::atomic<int> bad{0};
  // Column slices, a fixed set of them (4 per thread), each task walks all of idx in order.
  const int64_t slices = threads > 1 ? std::min<int64_t>(dim / 16, 4 * threads) : 1;
  parallel_tasks(slices, a.count * dim > kParallelMin ? threads : 1, [&](int64_t t) {
    const int64_t c0 = dim * t / slices, c1 = dim * (t + 1) / slices;
    for (int64_t r = 0; r < a.count; ++r) {
      const int64_t j = a.idx[r];
      if (j < 0 || j >= num) {
        bad = 1;
        continue;
      }
      float* __restrict row = dw + j * dim;
      const float* __restrict src = dy + r * dim;
#pragma omp simd
      for (int64_t c = c0; c < c1; ++c) row[c] += src[c];
    }
  });
  if (bad && a.bad_index) *a.bad_index = 1;
}

}  // namespace
namespace {

// The serial check of one chunk. Compiled for AVX-512, AVX2 and baseline x86-64 (the loader picks
// the best the CPU has; a finite check has no rounding to differ between them): at 800 KB the
// AVX-512 copy runs ~4x the SSE2 one, which is below NumPy's min + max.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__CUDACC__) && !defined(__HIP__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
bool chunk_finite(const uint32_t* bits, int64_t n) {
  uint32_t bad = 0;
#pragma omp simd reduction(| : bad)
  for (int64_t i = 0; i < n; ++i) bad |= uint32_t((bits[i] & 0x7f800000u) == 0x7f800000u);
  return bad == 0;
}

}  // namespace

bool all_finite(const float* p, int64_t n) {
  const uint32_t* bits = reinterpret_cast<const uint32_t*>(p);
  const int threads = n > 2 * kParallelMin ? num_threads() : 1;
  if (threads == 1) return chunk_finite(bits, n);
  std::atomic<int> bad{0};
  const int64_t parts = 4 * int64_t(threads);
  parallel_tasks(parts, threads, [&](int64_t t) {
    if (bad.load(std::memory_order_relaxed)) return;  // one non-finite value decides it
    const int64_t i0 = n * t / parts, i1 = n * (t + 1) / parts;
    if (!chunk_finite(bits + i0, i1 - i0)) bad = 1;
  });
  return bad == 0;
}

}  // namespace hg::cpu

HG_REGISTER_KERNEL(add_op, cpu, handwritten, "cpu.add_axpy", &hg::cpu::add_kernel);
HG_REGISTER_KERNEL(fill_op, cpu, handwritten, "cpu.fill", &hg::cpu::fill_kernel);
HG_REGISTER_KERNEL(batch_norm_op, cpu, handwritten, "cpu.batch_norm_two_pass", &hg::cpu::batch_norm_kernel);
HG_REGISTER_KERNEL(batch_norm_backward_op, cpu, handwritten, "cpu.batch_norm_backward",
                   &hg::cpu::batch_norm_backward_kernel);
HG_REGISTER_KERNEL(dropout_op, cpu, handwritten, "cpu.dropout_splitmix64", &hg::cpu::dropout_kernel);
HG_REGISTER_KERNEL(dropout_backward_op, cpu, handwritten, "cpu.dropout_backward",
                   &hg::cpu::dropout_backward_kernel);
HG_REGISTER_KERNEL(embedding_op, cpu, handwritten, "cpu.embedding_gather", &hg::cpu::embedding_kernel);
HG_REGISTER_KERNEL(embedding_backward_op, cpu, handwritten, "cpu.embedding_scatter_columns",
                   &hg::cpu::embedding_backward_kernel);
