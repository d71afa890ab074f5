// CPU losses and softmax (handwritten; no BLAS routine covers them, so the vendor variant falls
// back to these kernels).
//
//   softmax                        y[r, :] = exp(x[r, :] - max) / sum, one row at a time
//   softmax_cross_entropy          the same softmax into probs, plus the mean over rows of
//                                  log-sum-exp(x[r, :]) - x[r, label[r]]
//   softmax_cross_entropy_backward (probs - onehot(labels)) / N
//   mse_loss / mse_loss_backward   mean((pred - target)^2) / 2 (pred - target) / n
//
// Layout: row-major (rows, cols), contiguous; labels int64 or int32. Rows are independent and
// split over the OpenMP threads (only above kParallelMin elements). The row loop bodies are
// `omp simd` loops; exp is our own vectorizable polynomial (exp_nonpositive) since libm's expf
// does not vectorize without -ffast-math. Reductions are deterministic and do not depend on the
// thread count: fixed blocks (rows or elements) produce double partials, summed in block order.
//
// Test: PYTHONPATH=python python3 -m pytest -q tests/ops/test_loss.py
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include "../core/checks.h"
#include "cpu_kernels.h"

namespace hg::cpu {
namespace {

constexpr int64_t kParallelMin = 1 << 15;  // elements; below this one thread is faster
constexpr int64_t kRowsPerBlock = 16;      // rows summed into one loss partial
constexpr int64_t kMseBlock = 8192;        // elements summed into one mse partial

// exp(x) for x <= 0 (inputs are max-subtracted), within ~2 ulp of expf. x = k ln2 + r with
// |r| <= ln2/2 (Cody-Waite split of ln2), exp(r) by Cephes' degree-6 polynomial, 2^k built in
// the exponent bits. Inputs below -87 are clamped (exp(-87) ~ 1.6e-38); NaN passes through.
inline float exp_nonpositive(float x) {
  constexpr float kMagic = 12582912.f;  // 1.5 * 2^23: adding it rounds to an integer
  x = x < -87.f ? -87.f : x;
  const float t = x * 1.44269504088896341f + kMagic;
  const float k = t - kMagic;
  int32_t ki;
  std::memcpy(&ki, &t, sizeof(ki));
  ki -= 0x4B400000;  // the bits of kMagic: leaves k as an integer
  float r = x - k * 0.693359375f;
  r = r - k * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.f;
  const int32_t bits = (ki + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

struct RowStats { float max, sum; };

// y = softmax(x) over one row of C >= 1 elements; returns the row max and sum of exp(x - max).
inline RowStats softmax_row(const float* __restrict x, float* __restrict y, int64_t C) {
  float mx = x[0];
#pragma omp simd reduction(max : mx)
  for (int64_t j = 0; j < C; ++j) mx = x[j] > mx ? x[j] : mx;
  float sum = 0.f;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < C; ++j) {
    const float e = exp_nonpositive(x[j] - mx);
    y[j] = e;
    sum += e;
  }
  const float inv = 1.f / sum;
#pragma omp simd
  for (int64_t j = 0; j < C; ++j) y[j] *= inv;
  return {mx, sum};
}

void softmax_kernel(const SoftmaxArgs& a) {
  parallel_for(a.rows, (a.rows * a.cols > kParallelMin) ? num_threads() : 1, [&](int64_t r) { softmax_row(a.x + r * a.cols, a.y + r * a.cols, a.cols); });
}

template <class Label>
void softmax_xent_typed(const SoftmaxXentArgs& a, const Label* labels) {
  const int64_t N = a.N, C = a.C, blocks = (N + kRowsPerBlock - 1) / kRowsPerBlock;
  std::vector<double> partial(blocks);
  std::atomic<int> bad{0};
  parallel_for(blocks, (N * C > kParallelMin) ? num_threads() : 1, [&](int64_t b) {
    double acc = 0.0;
    const int64_t end = std::min(N, (b + 1) * kRowsPerBlock);
    for (int64_t r = b * kRowsPerBlock; r < end; ++r) {
      const float* x = a.logits + r * C;
      const RowStats s = softmax_row(x, a.probs + r * C, C);
      const int64_t label = static_cast<int64_t>(labels[r]);
      if (label < 0 || label >= C) {
        bad = 1;
        continue;
      }
      acc += std::log(static_cast<double>(s.sum)) + (static_cast<double>(s.max) - x[label]);
    }
    partial[b] = acc;
  });
  double total = 0.0;
  for (double p : partial) total += p;
  *a.loss = static_cast<float>(total / static_cast<double>(N));
  if (bad) *a.bad_label = 1;
}

void softmax_xent_kernel(const SoftmaxXentArgs& a) {
  if (a.label_dtype == DType::i32) softmax_xent_typed(a, static_cast<const int32_t*>(a.labels));
  else softmax_xent_typed(a, static_cast<const int64_t*>(a.labels));
}

template <class Label>
void softmax_xent_backward_typed(const SoftmaxXentBackwardArgs& a, const Label* labels) {
  const int64_t N = a.N, C = a.C;
  const float n = static_cast<float>(N);
  std::atomic<int> bad{0};
  parallel_for(N, (N * C > kParallelMin) ? num_threads() : 1, [&](int64_t r) {
    const float* __restrict p = a.probs + r * C;
    float* __restrict d = a.dlogits + r * C;
#pragma omp simd
    for (int64_t j = 0; j < C; ++j) d[j] = p[j] / n;
    const int64_t label = static_cast<int64_t>(labels[r]);
    if (label < 0 || label >= C) bad = 1;
    else d[label] = (p[label] - 1.f) / n;
  });
  if (bad) *a.bad_label = 1;
}

void softmax_xent_backward_kernel(const SoftmaxXentBackwardArgs& a) {
  if (a.label_dtype == DType::i32) softmax_xent_backward_typed(a, static_cast<const int32_t*>(a.labels));
  else softmax_xent_backward_typed(a, static_cast<const int64_t*>(a.labels));
}

void mse_kernel(const MseArgs& a) {
  const int64_t blocks = (a.n + kMseBlock - 1) / kMseBlock;
  std::vector<double> partial(blocks);
  parallel_for(blocks, (a.n > kParallelMin) ? num_threads() : 1, [&](int64_t b) {
    const float* __restrict p = a.pred;
    const float* __restrict t = a.target;
    const int64_t end = std::min(a.n, (b + 1) * kMseBlock);
    double acc = 0.0;
#pragma omp simd reduction(+ : acc)
    for (int64_t i = b * kMseBlock; i < end; ++i) {
      const double d = static_cast<double>(p[i]) - t[i];
      acc += d * d;
    }
    partial[b] = acc;
  });
  double total = 0.0;
  for (double p : partial) total += p;
  *a.loss = static_cast<float>(total / static_cast<double>(a.n));
}

void mse_backward_range(const float* __restrict p, const float* __restrict t, float* __restrict d,
                        float scale, int64_t b, int64_t e) {
#pragma omp simd
  for (int64_t i = b; i < e; ++i) d[i] = (p[i] - t[i]) * scale;
}

void mse_backward_kernel(const MseBackwardArgs& a) {
  const float scale = static_cast<float>(2.0 / static_cast<double>(a.n));
  const float* p = a.pred;
  const float* t = a.target;
  float* d = a.dpred;
  parallel_range(a.n, (a.n > kParallelMin) ? num_threads() : 1,
                 [=](int64_t b, int64_t e) { mse_backward_range(p, t, d, scale, b, e); }, 16);
}

}  // namespace
}  // namespace hg::cpu

HG_REGISTER_KERNEL(softmax_op, cpu, handwritten, "cpu.softmax_rows", &hg::cpu::softmax_kernel);
HG_REGISTER_KERNEL(softmax_cross_entropy_op, cpu, handwritten, "cpu.softmax_xent_rows",
                   &hg::cpu::softmax_xent_kernel);
HG_REGISTER_KERNEL(softmax_cross_entropy_backward_op, cpu, handwritten, "cpu.softmax_xent_backward",
                   &hg::cpu::softmax_xent_backward_kernel);
HG_REGISTER_KERNEL(mse_loss_op, cpu, handwritten, "cpu.mse_blocked", &hg::cpu::mse_kernel);
HG_REGISTER_KERNEL(mse_loss_backward_op, cpu, handwritten, "cpu.mse_backward",
                   &hg::cpu::mse_backward_kernel);
