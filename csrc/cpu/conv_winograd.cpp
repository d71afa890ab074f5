// Winograd F(2x2, 3x3) convolution on the CPU: 3x3 kernels, stride 1, dilation 1, groups 1, any
// padding up to 2 (the ResNet/VGG 3x3 layers). A 2x2 output tile costs 16 multiplies per (k, c)
// instead of 36, at the price of three transforms that are linear in the data:
//   U[xi][k][c] = (G w[k][c] G^T)[xi]          weights, once per call (xi: 16 positions of 4x4)
//   V[xi][c][t] = (B^T d[c][t] B)[xi]           input tile t (4x4, overlapping by 2), per chunk
//   M[xi][t][k] = sum_c V[xi][c][t] U[xi][k][c] 16 GEMMs (tiles x C) @ (C x K) per chunk
//   y[k][tile t] = A^T M[.][t][k] A (+ bias)    2x2 outputs, cropped at odd edges
// with G (4x3), B^T (4x4), A^T (2x4) of Lavin & Gray's F(2, 3). The tiles of the whole batch
// are cut into chunks of whole tile rows (~kChunkTiles tiles); each chunk is one task of the
// thread pool and runs transform, GEMMs and inverse transform on its own scratch (V and M stay
// in L2). The GEMMs are the packed handwritten GEMM with U^T packed once per call
// (gemm_pack_b), single-threaded inside the task. The input transform is vectorized over the
// tiles of a row (stride-2 loads from a zero-padded copy of the 4 input rows), the output
// transform over output channels.
// Backward data of such a layer (pad <= 2) is the same correlation run on dy with the kernel
// flipped and its in/out channels swapped, padding 2 - pad, so it runs here too. Backward weight
// is the transpose of the forward's bilinear map (conv2d_winograd_backward_weight).
// Test: PYTHONPATH=python python3 -m pytest -q tests/ops/test_conv_variants.py
#include <algorithm>
#include <memory>
#include <vector>

#include "cpu_clones.h"
#include "cpu_kernels.h"
#include "im2col.h"

namespace hg::cpu {
namespace {

constexpr int64_t kChunkTiles = 64;

// The correlation this file computes: in (N, C, H, W) * kernel -> out (N, K, P, Q), 3x3,
// stride 1, padding (ph, pw) in [0, 2]; wk(k, c, r, s) reads the kernel.
struct Problem {
  int64_t N, C, H, W, K, P, Q, ph, pw;
  int64_t TH() const { return (P + 1) / 2; }
  int64_t TW() const { return (Q + 1) / 2; }
};

// U (16, K, C): each (k, c) 3x3 kernel g transformed to G g G^T.
template <class Wk>
void transform_weights(const Problem& pr, Wk wk, float* U) {
  const int64_t KC = pr.K * pr.C;
  for (int64_t k = 0; k < pr.K; ++k) {
    for (int64_t c = 0; c < pr.C; ++c) {
      float g[3][3], t[4][3];
      for (int r = 0; r < 3; ++r)
        for (int s = 0; s < 3; ++s) g[r][s] = wk(k, c, r, s);
      for (int s = 0; s < 3; ++s) {
        t[0][s] = g[0][s];
        t[1][s] = 0.5f * (g[0][s] + g[1][s] + g[2][s]);
        t[2][s] = 0.5f * (g[0][s] - g[1][s] + g[2][s]);
        t[3][s] = g[2][s];
      }
      for (int i = 0; i < 4; ++i) {
        const float u[4] = {t[i][0], 0.5f * (t[i][0] + t[i][1] + t[i][2]),
                            0.5f * (t[i][0] - t[i][1] + t[i][2]), t[i][2]};
        for (int j = 0; j < 4; ++j) U[(i * 4 + j) * KC + k * pr.C + c] = u[j];
      }
    }
  }
}

// B^T d B for the TW tiles of one tile row, d[i][j] = rows[i][2 tx + j]; V[xi * ldv + tx].
HG_CPU_CLONES
void input_row(const float* __restrict rows, int64_t ldr, int64_t TW, float* __restrict V,
               int64_t ldv) {
  const float* __restrict r0 = rows;
  const float* __restrict r1 = rows + ldr;
  const float* __restrict r2 = rows + 2 * ldr;
  const float* __restrict r3 = rows + 3 * ldr;
  for (int64_t tx = 0; tx < TW; ++tx) {
    const int64_t o = 2 * tx;
    float a[4][4];  // B^T d: rows d0 - d2, d1 + d2, d2 - d1, d1 - d3
    for (int j = 0; j < 4; ++j) {
      const float d0 = r0[o + j], d1 = r1[o + j], d2 = r2[o + j], d3 = r3[o + j];
      a[0][j] = d0 - d2;
      a[1][j] = d1 + d2;
      a[2][j] = d2 - d1;
      a[3][j] = d1 - d3;
    }
    for (int i = 0; i < 4; ++i) {  // (B^T d) B: columns likewise
      V[(i * 4 + 0) * ldv + tx] = a[i][0] - a[i][2];
      V[(i * 4 + 1) * ldv + tx] = a[i][1] + a[i][2];
      V[(i * 4 + 2) * ldv + tx] = a[i][2] - a[i][1];
      V[(i * 4 + 3) * ldv + tx] = a[i][1] - a[i][3];
    }
  }
}

// A^T m A for one tile and K channels: m[xi * ldm + k]; the 2x2 outputs (cropped to rows x cols
// valid ones) at y[k * PQ + i * Q + j] (+ bias[k], + res at the same offsets: conv2d_bias_act's
// residual, which may be y itself, each element read before it is written).
HG_CPU_CLONES
void output_tile(const float* __restrict m, int64_t ldm, int64_t K, const float* bias,
                 const float* res, float* y, int64_t PQ, int64_t Q, int rows, int cols) {
  for (int64_t k = 0; k < K; ++k) {
    float t[2][4];
    for (int j = 0; j < 4; ++j) {
      const float m0 = m[(0 + j) * ldm + k], m1 = m[(4 + j) * ldm + k];
      const float m2 = m[(8 + j) * ldm + k], m3 = m[(12 + j) * ldm + k];
      t[0][j] = m0 + m1 + m2;
      t[1][j] = m1 - m2 - m3;
    }
    const float b = bias ? bias[k] : 0.f;
    float* yk = y + k * PQ;
    float o[4] = {t[0][0] + t[0][1] + t[0][2] + b, t[0][1] - t[0][2] - t[0][3] + b,
                  t[1][0] + t[1][1] + t[1][2] + b, t[1][1] - t[1][2] - t[1][3] + b};
    if (res) {
      const float* rk = res + k * PQ;
      o[0] += rk[0];
      if (cols > 1) o[1] += rk[1];
      if (rows > 1) {
        o[2] += rk[Q];
        if (cols > 1) o[3] += rk[Q + 1];
      }
    }
    yk[0] = o[0];
    if (cols > 1) yk[1] = o[1];
    if (rows > 1) {
      yk[Q] = o[2];
      if (cols > 1) yk[Q + 1] = o[3];
    }
  }
}

// `res` (y's shape, may be y) is added with the bias; `act` (activation only, or nullptr) runs
// over each chunk's output rows right after they are written.
template <class Wk>
void winograd(const Problem& pr, Wk wk, const float* x, const float* bias, float* y,
              const float* res = nullptr, const GemmEpilogue* act = nullptr) {
  const int64_t TH = pr.TH(), TW = pr.TW(), HW = pr.H * pr.W, PQ = pr.P * pr.Q;
  const int64_t rows_per_chunk = std::max<int64_t>(1, std::min(TH, kChunkTiles / TW));
  const int64_t chunks_per_image = (TH + rows_per_chunk - 1) / rows_per_chunk;
  const int64_t chunks = pr.N * chunks_per_image;
  const int64_t Tb = rows_per_chunk * TW;  // tiles of a full chunk
  // U^T of each xi packed once for the GEMM's B side (C x K).
  const int64_t nr = gemm_handwritten_blocking().nr, panel = (pr.K + nr - 1) / nr * nr * pr.C;
  std::unique_ptr<float[]> U(new float[16 * pr.K * pr.C]), Up(new float[16 * panel]);
  transform_weights(pr, wk, U.get());
  for (int xi = 0; xi < 16; ++xi)
    gemm_pack_b(/*trans_b=*/true, U.get() + xi * pr.K * pr.C, pr.C, pr.C, pr.K, Up.get() + xi * panel);
  const int64_t ldr = 2 * TW + 2;  // one zero-padded input row: the 4 rows of a tile row
  const int64_t per_slot = 16 * pr.C * Tb + 16 * Tb * pr.K + 4 * ldr;
  const double work = 32.0 * double(pr.N * TH * TW) * double(pr.C * pr.K);
  const int threads = region_threads(work, double(1 << 20), chunks);
  std::unique_ptr<float[]> scratch(new float[per_slot * std::max(threads, 1)]);
  const float* Upp = Up.get();
  parallel_tasks(chunks, threads, [&](int64_t chunk) {
    float* V = scratch.get() + parallel_slot() * per_slot;
    float* M = V + 16 * pr.C * Tb;
    float* rows = M + 16 * Tb * pr.K;
    const int64_t n = chunk / chunks_per_image;
    const int64_t ty0 = chunk % chunks_per_image * rows_per_chunk;
    const int64_t nrows = std::min(rows_per_chunk, TH - ty0), T = nrows * TW;
    const float* xn = x + n * pr.C * HW;
    // V (16, C, T): tile (ty, tx) at column (ty - ty0) * TW + tx.
    for (int64_t c = 0; c < pr.C; ++c) {
      const float* xc = xn + c * HW;
      for (int64_t ty = ty0; ty < ty0 + nrows; ++ty) {
        for (int i = 0; i < 4; ++i) {  // input row 2 ty - ph + i, columns from -pw, zero outside
          float* __restrict r = rows + i * ldr;
          const int64_t h = 2 * ty - pr.ph + i;
          if (h < 0 || h >= pr.H) {
            std::fill(r, r + ldr, 0.f);
            continue;
          }
          const int64_t lo = std::min(pr.pw, ldr), hi = std::min(ldr, pr.W + pr.pw);
          std::fill(r, r + lo, 0.f);
          std::copy(xc + h * pr.W + (lo - pr.pw), xc + h * pr.W + (hi - pr.pw), r + lo);
          std::fill(r + hi, r + ldr, 0.f);
        }
        input_row(rows, ldr, TW, V + c * T + (ty - ty0) * TW, pr.C * T);
      }
    }
    for (int xi = 0; xi < 16; ++xi)  // M_xi (T, K) = V_xi^T (T, C) @ U_xi^T (C, K)
      gemm_handwritten_prepacked(/*trans_a=*/true, T, pr.K, pr.C, V + xi * pr.C * T, T,
                                 Upp + xi * panel, M + xi * T * pr.K, pr.K);
    float* yn = y + n * pr.K * PQ;
    const float* rn = res ? res + n * pr.K * PQ : nullptr;
    for (int64_t t = 0; t < T; ++t) {
      const int64_t ty = ty0 + t / TW, tx = t % TW, at = 2 * ty * pr.Q + 2 * tx;
      output_tile(M + t * pr.K, T * pr.K, pr.K, bias, rn ? rn + at : nullptr, yn + at, PQ, pr.Q,
                  int(std::min<int64_t>(2, pr.P - 2 * ty)), int(std::min<int64_t>(2, pr.Q - 2 * tx)));
    }
    if (act) {  // the chunk's output rows of every channel, still in cache
      const int64_t p0 = 2 * ty0, p1 = std::min(pr.P, 2 * (ty0 + nrows));
      apply_epilogue(*act, 0, 0, pr.K, (p1 - p0) * pr.Q, yn + p0 * pr.Q, PQ);
    }
  });
}

// A dy A^T for the TW tiles of one tile row: dy rows e0, e1 (zero-padded to 2 TW columns),
// Z[xi * ldz + tx]; A = (A^T)^T, rows (1, 0), (1, 1), (1, -1), (0, -1).
HG_CPU_CLONES
void grad_row(const float* __restrict e0, const float* __restrict e1, int64_t TW,
              float* __restrict Z, int64_t ldz) {
  for (int64_t tx = 0; tx < TW; ++tx) {
    const float a00 = e0[2 * tx], a01 = e0[2 * tx + 1], a10 = e1[2 * tx], a11 = e1[2 * tx + 1];
    const float t[4][2] = {{a00, a01}, {a00 + a10, a01 + a11}, {a00 - a10, a01 - a11},
                           {-a10, -a11}};
    for (int i = 0; i < 4; ++i) {
      Z[(i * 4 + 0) * ldz + tx] = t[i][0];
      Z[(i * 4 + 1) * ldz + tx] = t[i][0] + t[i][1];
      Z[(i * 4 + 2) * ldz + tx] = t[i][0] - t[i][1];
      Z[(i * 4 + 3) * ldz + tx] = -t[i][1];
    }
  }
}

}  // namespace

bool winograd_applies(const ConvGeometry& g) {
  return g.R == 3 && g.S == 3 && g.stride_h == 1 && g.stride_w == 1 && g.dil_h == 1 &&
         g.dil_w == 1 && g.groups == 1 && g.pad_h >= 0 && g.pad_h <= 2 && g.pad_w >= 0 &&
         g.pad_w <= 2 && g.P >= 1 && g.Q >= 1 && g.C >= 1;
}

bool conv2d_winograd_forward(const ConvForwardArgs& a) {
  const ConvGeometry& g = a.g;
  if (!winograd_applies(g)) return false;
  const Problem pr{g.N, g.C, g.H, g.W, g.K, g.P, g.Q, g.pad_h, g.pad_w};
  const int64_t C = g.C;
  const float* w = a.w;
  winograd(pr, [=](int64_t k, int64_t c, int r, int s) { return w[((k * C + c) * 3 + r) * 3 + s]; },
           a.x, a.bias, a.y);
  return true;
}

bool conv2d_bias_act_winograd(const ConvBiasActArgs& a) {
  const ConvGeometry& g = a.g;
  if (!winograd_applies(g)) return false;
  const Problem pr{g.N, g.C, g.H, g.W, g.K, g.P, g.Q, g.pad_h, g.pad_w};
  const int64_t C = g.C;
  const float* w = a.w;
  GemmEpilogue act;  // the activation only: bias and residual are added by the output transform
  act.op = FusedEpilogue{nullptr, a.epi.has_act, a.epi.act, a.epi.alpha};
  act.bias_per_row = true;
  winograd(pr, [=](int64_t k, int64_t c, int r, int s) { return w[((k * C + c) * 3 + r) * 3 + s]; },
           a.x, a.epi.bias, a.y, a.residual, a.epi.has_act ? &act : nullptr);
  return true;
}

bool conv2d_winograd_backward_data(const ConvBackwardDataArgs& a) {
  const ConvGeometry& g = a.g;
  if (!winograd_applies(g)) return false;
  // dx (N, C, H, W) = dy (N, K, P, Q) correlated with w[k][c] flipped, padding 2 - pad.
  const Problem pr{g.N, g.K, g.P, g.Q, g.C, g.H, g.W, 2 - g.pad_h, 2 - g.pad_w};
  const int64_t C = g.C;
  const float* w = a.w;
  winograd(pr,
           [=](int64_t c, int64_t k, int r, int s) { return w[((k * C + c) * 3 + 2 - r) * 3 + 2 - s]; },
           a.dy, nullptr, a.dx);
  return true;
}

// Backward weight: the transpose of the forward's bilinear map, dw[k][c] = G^T M[k][c] G with
// M_xi (K, C) = sum over tiles t of Z_xi[k][t] V_xi[c][t], Z = A dy_t A^T (the 2x2 dy tile), V the
// forward's input transform: 16 GEMMs per chunk reducing over its tiles, 2.25x fewer multiplies
// than the direct sum. The chunks are cut into T = num_threads() fixed runs, one partial M each,
// added in run order: the result depends on num_threads() only.
bool conv2d_winograd_backward_weight(const ConvBackwardWeightArgs& a) {
  const ConvGeometry& g = a.g;
  if (!winograd_applies(g)) return false;
  const Problem pr{g.N, g.C, g.H, g.W, g.K, g.P, g.Q, g.pad_h, g.pad_w};
  const int64_t TH = pr.TH(), TW = pr.TW(), HW = pr.H * pr.W, PQ = pr.P * pr.Q, KC = pr.K * pr.C;
  const int64_t rows_per_chunk = std::max<int64_t>(1, std::min(TH, 2 * kChunkTiles / TW));
  const int64_t chunks_per_image = (TH + rows_per_chunk - 1) / rows_per_chunk;
  const int64_t chunks = pr.N * chunks_per_image, Tb = rows_per_chunk * TW;
  const int T = int(std::max<int64_t>(1, std::min<int64_t>(in_parallel() ? 1 : num_threads(), chunks)));
  const int64_t ldr = 2 * TW + 2;
  const int64_t per_slot = 16 * pr.C * Tb + 16 * pr.K * Tb + 4 * ldr + 2 * 2 * TW;
  std::unique_ptr<float[]> scratch(new float[per_slot * T]);
  std::unique_ptr<float[]> Mpart(new float[16 * KC * T]);
  parallel_tasks(T, std::min(T, available_threads()), [&](int64_t run) {
    float* V = scratch.get() + parallel_slot() * per_slot;
    float* Z = V + 16 * pr.C * Tb;
    float* rows = Z + 16 * pr.K * Tb;
    float* erow = rows + 4 * ldr;  // two zero-padded dy rows of 2 TW
    float* M = Mpart.get() + run * 16 * KC;
    std::fill(M, M + 16 * KC, 0.f);
    for (int64_t chunk = chunks * run / T; chunk < chunks * (run + 1) / T; ++chunk) {
      const int64_t n = chunk / chunks_per_image;
      const int64_t ty0 = chunk % chunks_per_image * rows_per_chunk;
      const int64_t nrows = std::min(rows_per_chunk, TH - ty0), Tc = nrows * TW;
      const float* xn = a.x + n * pr.C * HW;
      for (int64_t c = 0; c < pr.C; ++c) {  // V (16, C, Tc), as the forward
        const float* xc = xn + c * HW;
        for (int64_t ty = ty0; ty < ty0 + nrows; ++ty) {
          for (int i = 0; i < 4; ++i) {
            float* __restrict r = rows + i * ldr;
            const int64_t h = 2 * ty - pr.ph + i;
            if (h < 0 || h >= pr.H) {
              std::fill(r, r + ldr, 0.f);
              continue;
            }
            const int64_t lo = std::min(pr.pw, ldr), hi = std::min(ldr, pr.W + pr.pw);
            std::fill(r, r + lo, 0.f);
            std::copy(xc + h * pr.W + (lo - pr.pw), xc + h * pr.W + (hi - pr.pw), r + lo);
            std::fill(r + hi, r + ldr, 0.f);
          }
          input_row(rows, ldr, TW, V + c * Tc + (ty - ty0) * TW, pr.C * Tc);
        }
      }
      const float* dyn = a.dy + n * pr.K * PQ;
      for (int64_t k = 0; k < pr.K; ++k) {  // Z (16, K, Tc)
        for (int64_t ty = ty0; ty < ty0 + nrows; ++ty) {
          for (int i = 0; i < 2; ++i) {
            float* e = erow + i * 2 * TW;
            const int64_t p = 2 * ty + i;
            std::fill(e, e + 2 * TW, 0.f);
            if (p < pr.P) std::copy(dyn + k * PQ + p * pr.Q, dyn + k * PQ + (p + 1) * pr.Q, e);
          }
          grad_row(erow, erow + 2 * TW, TW, Z + k * Tc + (ty - ty0) * TW, pr.K * Tc);
        }
      }
      for (int xi = 0; xi < 16; ++xi)  // M_xi (K, C) += Z_xi (K, Tc) @ V_xi^T (Tc, C)
        gemm_handwritten(false, true, pr.K, pr.C, Tc, 1.f, Z + xi * pr.K * Tc, Tc,
                         V + xi * pr.C * Tc, Tc, 1.f, M + xi * KC, pr.C);
    }
  });
  // Partials in run order, then dw[k][c] = G^T M G (3x3 of the 4x4).
  for (int64_t kc = 0; kc < KC; ++kc) {
    float m[4][4];
    for (int xi = 0; xi < 16; ++xi) {
      float sum = Mpart[xi * KC + kc];
      for (int t = 1; t < T; ++t) sum += Mpart[(t * 16 + xi) * KC + kc];
      m[xi / 4][xi % 4] = sum;
    }
    float u[3][4];
    for (int j = 0; j < 4; ++j) {
      u[0][j] = m[0][j] + 0.5f * (m[1][j] + m[2][j]);
      u[1][j] = 0.5f * (m[1][j] - m[2][j]);
      u[2][j] = 0.5f * (m[1][j] + m[2][j]) + m[3][j];
    }
    float* dw = a.dw + kc * 9;
    for (int i = 0; i < 3; ++i) {
      dw[i * 3 + 0] = u[i][0] + 0.5f * (u[i][1] + u[i][2]);
      dw[i * 3 + 1] = 0.5f * (u[i][1] - u[i][2]);
      dw[i * 3 + 2] = 0.5f * (u[i][1] + u[i][2]) + u[i][3];
    }
  }
  return true;
}

}  // namespace hg::cpu
