// CPU attention: registration of the handwritten blocked kernel for the ISA in use
// (attention.inc: "cpu.attention_flash_<isa>", never forms the (Tq, Tk) matrix) and the vendor
// variant composed of OpenBLAS SGEMM and a row softmax:
//
//   forward   per head: s = scale * q @ k^T (sgemm, (Tq, Tk) materialized), masked row softmax
//             with lse, out = p @ v (sgemm)
//   backward  per head: p = exp(scale * q @ k^T - lse) (sgemm), dv = p^T @ dout, dp = dout @ v^T,
//             ds = p * (dp - rowsum(dout * out)) * scale, dq = ds @ k, dk = ds^T @ q (sgemm each)
//
// OpenBLAS has no softmax, so the softmax part of the vendor variant is ours (named in the kernel
// name). Heads run one after another, each GEMM on OpenBLAS's threads; the (Tq, Tk) buffers are
// per call, so its memory grows with Tq * Tk (the handwritten kernel's with T).
// Test: PYTHONPATH=python python3 -m pytest -q tests/ops/test_attention.py
#include <algorithm>
#include <cmath>
#include <vector>

#include "../core/checks.h"
#include "attention_kernel.h"
#include "cpu_kernels.h"
#include "isa.h"

namespace hg::cpu {
namespace {

const AttentionCpuKernel& active_attention() {
  switch (cpu_isa()) {
    case CpuIsa::avx512: return attention_kernel_avx512;
    case CpuIsa::avx2: return attention_kernel_avx2;
    default: return attention_kernel_generic;
  }
}

// The handwritten kernels run the copy for the ISA in use at call time.
void attention_flash(const AttentionArgs& a) { active_attention().forward(a); }
void attention_backward_flash(const AttentionBackwardArgs& a) { active_attention().backward(a); }

// Row i of s (Tk keys) sees the first visible(i) keys.
int64_t visible_keys(const AttentionGeometry& g, int64_t i) {
  return g.causal ? std::min(g.Tk, i + (g.Tk - g.Tq) + 1) : g.Tk;
}

void attention_composed(const AttentionArgs& a) {
  const AttentionGeometry& g = a.g;
  const int64_t Tq = g.Tq, Tk = g.Tk, D = g.D;
  std::vector<float> s(size_t(Tq * Tk));
  for (int64_t bh = 0; bh < g.B * g.H; ++bh) {
    const float* q = a.q + bh * Tq * D;
    const float* k = a.k + bh * g.kv_head;   // keys kv_row apart (a cache read in place)
    gemm_blas(false, true, Tq, Tk, D, g.scale, q, D, k, g.kv_row, 0.f, s.data(), Tk);
    float* lse = a.lse + bh * Tq;
    parallel_for(Tq, (Tq * Tk > (1 << 15)) ? available_threads() : 1, [&](int64_t i) {
      float* row = s.data() + i * Tk;
      const int64_t lim = visible_keys(g, i);
      float mx = row[0];
      for (int64_t j = 1; j < lim; ++j) mx = std::max(mx, row[j]);
      double sum = 0.0;
      for (int64_t j = 0; j < lim; ++j) sum += row[j] = std::exp(row[j] - mx);
      const float inv = float(1.0 / sum);
      for (int64_t j = 0; j < lim; ++j) row[j] *= inv;
      std::fill(row + lim, row + Tk, 0.f);
      lse[i] = mx + float(std::log(sum));
    });
    gemm_blas(false, false, Tq, D, Tk, 1.f, s.data(), Tk, a.v + bh * g.kv_head, g.kv_row, 0.f,
              a.out + bh * Tq * D, D);
  }
}

void attention_backward_composed(const AttentionBackwardArgs& a) {
  const AttentionGeometry& g = a.g;
  const int64_t Tq = g.Tq, Tk = g.Tk, D = g.D;
  std::vector<float> p(size_t(Tq * Tk)), dp(size_t(Tq * Tk));
  for (int64_t bh = 0; bh < g.B * g.H; ++bh) {
    const float* q = a.q + bh * Tq * D;
    const float* k = a.k + bh * Tk * D;
    const float* v = a.v + bh * Tk * D;
    const float* dout = a.dout + bh * Tq * D;
    const float* out = a.out + bh * Tq * D;
    const float* lse = a.lse + bh * Tq;
    gemm_blas(false, true, Tq, Tk, D, g.scale, q, D, k, D, 0.f, p.data(), Tk);
    gemm_blas(false, true, Tq, Tk, D, 1.f, dout, D, v, D, 0.f, dp.data(), Tk);
    parallel_for(Tq, (Tq * Tk > (1 << 15)) ? available_threads() : 1, [&](int64_t i) {
      float di = 0.f;
      for (int64_t c = 0; c < D; ++c) di += dout[i * D + c] * out[i * D + c];
      float* pr = p.data() + i * Tk;
      float* dr = dp.data() + i * Tk;
      const int64_t lim = visible_keys(g, i);
      for (int64_t j = 0; j < Tk; ++j) {
        pr[j] = j < lim ? std::exp(pr[j] - lse[i]) : 0.f;
        dr[j] = pr[j] * (dr[j] - di) * g.scale;
      }
    });
    gemm_blas(true, false, Tk, D, Tq, 1.f, p.data(), Tk, dout, D, 0.f, a.dv + bh * Tk * D, D);
    gemm_blas(false, false, Tq, D, Tk, 1.f, dp.data(), Tk, k, D, 0.f, a.dq + bh * Tq * D, D);
    gemm_blas(true, false, Tk, D, Tq, 1.f, dp.data(), Tk, q, D, 0.f, a.dk + bh * Tk * D, D);
  }
}

// The op table names the handwritten copy in use; renamed whenever the ISA is forced.
void register_attention() {
  const AttentionCpuKernel& k = active_attention();
  attention_op().add(Backend::cpu, Variant::handwritten, k.forward_name, &attention_flash);
  attention_backward_op().add(Backend::cpu, Variant::handwritten, k.backward_name,
                              &attention_backward_flash);
}

}  // namespace
}  // namespace hg::cpu

static const bool hg_attention_registered =
    (hg::cpu::on_cpu_isa_change(&hg::cpu::register_attention), true);
HG_REGISTER_KERNEL(attention_op, cpu, vendor, "cpu.openblas_sgemm+softmax_composed",
                   &hg::cpu::attention_composed);
HG_REGISTER_KERNEL(attention_backward_op, cpu, vendor, "cpu.openblas_sgemm+softmax_composed",
                   &hg::cpu::attention_backward_composed);
