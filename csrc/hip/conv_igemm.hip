// Convolution as implicit GEMM: the three conv ops run the tiled main loop of gemm_tile.h with
// loaders that gather the im2col matrix on the fly (nothing is materialised) and epilogues that
// scatter into NCHW. Per group g (blockIdx.z), with Cg = C/groups, Kg = K/groups:
//   forward:         y[n,k,p,q]  (M = Kg, N = N*P*Q, K = Cg*R*S)
//                    A = w[g] (Kg x CgRS, float4 loads when CgRS % 4 == 0), B = im2col(x);
//                    the bias is added in the epilogue, and for conv2d_bias_act the
//                    residual and the activation too (the epilogue is instantiated per kind).
//   backward data:   dx[n,c,h,w] (M = Cg, N = N*H*W, K = Kg*R*S)
//                    A = w[g] transposed, B[(k,r,s)][(n,h,w)] = dy[n,k,p,q] where
//                    h = p*sh - ph + r*dh (taps that land between strides read 0). Every dx
//                    element is written once: no atomics, no zero-fill.
//   backward weight: dw[k,c,r,s] (M = Kg, N = Cg*R*S, K = N*P*Q), A = dy rows, B = im2col(x)^T;
//                    split-K over blockIdx.z when the tile grid is too small to fill the device,
//                    partial sums in scratch memory added in a fixed order (deterministic).
// Which thread computes which output element and what shared memory holds: gemm_tile.h. Each
// gather loader keeps what it can per thread: the forward/backward-data B loaders own one column
// (a fixed output/input pixel, decoded once) and walk k; the backward-weight loaders own one k
// of the slice and walk rows/columns, whose (c, r, s) decodes are hoisted out of the k loop.
// Tests: tests/ops/test_conv.py (gpu params), tests/gpu/test_reference_kernels.py.
#include <algorithm>
#include <memory>

#include "activation_device.h"
#include "gemm_tile.h"
#include "gpu_kernels.h"

namespace hg::gpu {
namespace {

using tile::Large;
using tile::Small;

// ---- forward ---------------------------------------------------------------------------------

// B = im2col(x) of group g:
//   B[(c,r,s)][(n,p,q)] = x[n, g*Cg + c, p*sh - ph + r*dh, q*sw - pw + s*dw].
// The thread owns column o = tid % BO and rows tid / BO + e * (T / BO) of each slice.
template <class Cfg, int BO>
struct LoadIm2col {
  struct Params {
    const float* x;
    ConvDims d;
  };
  static constexpr int BK = Cfg::BK, T = Cfg::kThreads, kStep = T / BO, kRegs = BO * BK / T;
  static_assert(T % BO == 0 && BK % kStep == 0, "a thread owns one column of the slice");
  const float* img;  // x at (n, g*Cg); nullptr when the column lies outside
  int o, kk0, k_end, h0, w0;
  int RS, S, H, W, dh, dw;

  __device__ LoadIm2col(const Params& pr, int64_t grp, int64_t o0, int tid, int64_t k_end_)
      : img(nullptr), o(tid % BO), kk0(tid / BO), k_end(int(k_end_)), h0(0), w0(0) {
    const ConvDims& d = pr.d;
    RS = d.R * d.S, S = d.S, H = d.H, W = d.W, dh = d.dh, dw = d.dw;
    const int PQ = d.P * d.Q;
    if (o0 + o < int64_t(d.N) * PQ) {
      const int col = int(o0) + o;
      const int n = col / PQ, pq = col - n * PQ, p = pq / d.Q, q = pq - p * d.Q;
      img = pr.x + (int64_t(n) * d.C + grp * d.Cg) * d.H * d.W;
      h0 = p * d.sh - d.ph;
      w0 = q * d.sw - d.pw;
    }
  }
  __device__ void fetch(int64_t k0, float* r) const {
#pragma unroll
    for (int e = 0; e < kRegs; ++e) {
      const int k = int(k0) + kk0 + e * kStep;
      float v = 0.f;
      if (img != nullptr && k < k_end) {
        const int c = k / RS, rs = k - c * RS, rr = rs / S, ss = rs - rr * S;
        const int h = h0 + rr * dh, w = w0 + ss * dw;
        if (unsigned(h) < unsigned(H) && unsigned(w) < unsigned(W)) v = img[(c * H + h) * W + w];
      }
      r[e] = v;
    }
  }
  __device__ void stash(float* s, const float* r) const {
#pragma unroll
    for (int e = 0; e < kRegs; ++e) s[(kk0 + e * kStep) * (BO + Cfg::kPad) + o] = r[e];
  }
};

// y = act(v + bias[k] + residual) scattered into NCHW; Act is ActNone for conv2d
// (activation_device.h). The residual (conv2d_bias_act; nullptr: none) has y's layout and may be
// y itself: each element is read by the thread that then writes it.
template <class Act>
struct ForwardEpilogue {
  float* y;
  const float* bias;
  const float* residual;
  int K, Kg, PQ;
  Act act;
  __device__ void operator()(int64_t grp, int, int64_t m, int64_t n, const float* v,
                             int count) const {
    const int k = int(grp) * Kg + int(m);
    const float b = bias != nullptr ? bias[k] : 0.f;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if (i < count) {
        const int col = int(n) + i, img = col / PQ, pq = col - img * PQ;
        const int64_t at = (int64_t(img) * K + k) * PQ + pq;
        y[at] = act(v[i] + b + (residual != nullptr ? residual[at] : 0.f));
      }
    }
  }
};

template <class Cfg, class Act>
void forward_with(const ConvForwardArgs& a, const ConvDims& d, Act act, const float* residual) {
  using LoadA = tile::LoadKContiguous<Cfg, Cfg::BM>;
  using LoadB = LoadIm2col<Cfg, Cfg::BN>;
  const int64_t crs = int64_t(d.Cg) * d.R * d.S;
  const typename LoadA::Params pa{a.w, crs, d.Kg * crs, d.Kg, tile::aligned16(a.w) && crs % 4 == 0};
  const typename LoadB::Params pb{a.x, d};
  const ForwardEpilogue<Act> epi{a.y, a.bias, residual, d.K, d.Kg, d.P * d.Q, act};
  tile::Problem pr;
  pr.M = d.Kg, pr.N = int64_t(d.N) * d.P * d.Q, pr.K = crs, pr.nz = d.groups, pr.k_chunk = crs;
  tile::launch<Cfg, LoadA, LoadB>(pa, pb, epi, pr);
}

template <class Act>
void forward_any(const ConvForwardArgs& a, Act act, const float* residual = nullptr) {
  const ConvDims d = conv2d_dims(a.g);
  if (tile::prefer_large(d.Kg, int64_t(d.N) * d.P * d.Q, d.groups))
    forward_with<Large>(a, d, act, residual);
  else
    forward_with<Small>(a, d, act, residual);
}

// ---- backward data ---------------------------------------------------------------------------

// A = w[g]^T: A[c][(k,r,s)] = w[g*Kg + k, c, r, s]. The thread owns slice row kk = tid % BK
// (one (k, r, s), decoded once per slice) and columns c = tid / BK + e * (T / BK).
template <class Cfg, int BO>
struct LoadWeightT {
  struct Params {
    const float* w;
    ConvDims d;
  };
  static constexpr int BK = Cfg::BK, T = Cfg::kThreads, kStep = T / BK, kRegs = BO * BK / T;
  static_assert(T % BK == 0 && BO % kStep == 0, "a thread owns one row of the slice");
  const float* wg;
  int kk, first, c0, Cg, RS, k_end;

  __device__ LoadWeightT(const Params& pr, int64_t grp, int64_t o0, int tid, int64_t k_end_)
      : kk(tid % BK), first(tid / BK), c0(int(o0) + tid / BK), Cg(pr.d.Cg), RS(pr.d.R * pr.d.S),
        k_end(int(k_end_)) {
    wg = pr.w + grp * pr.d.Kg * pr.d.Cg * RS;
  }
  __device__ void fetch(int64_t k0, float* r) const {
    const int j = int(k0) + kk;
    if (j >= k_end) {
#pragma unroll
      for (int e = 0; e < kRegs; ++e) r[e] = 0.f;
      return;
    }
    const int k = j / RS, rs = j - k * RS;
    const float* src = wg + int64_t(k) * Cg * RS + rs;
#pragma unroll
    for (int e = 0; e < kRegs; ++e) {
      const int c = c0 + e * kStep;
      r[e] = c < Cg ? src[c * RS] : 0.f;
    }
  }
  __device__ void stash(float* s, const float* r) const {
#pragma unroll
    for (int e = 0; e < kRegs; ++e) s[kk * (BO + Cfg::kPad) + first + e * kStep] = r[e];
  }
};

// B[(k,r,s)][(n,h,w)] = dy[n, g*Kg + k, p, q] with h + ph = p*sh + r*dh, w + pw = q*sw + s*dw
// (0 when no such p, q exists). The thread owns column o = tid % BO (one input pixel).
template <class Cfg, int BO>
struct LoadDyGather {
  struct Params {
    const float* dy;
    ConvDims d;
  };
  static constexpr int BK = Cfg::BK, T = Cfg::kThreads, kStep = T / BO, kRegs = BO * BK / T;
  static_assert(T % BO == 0 && BK % kStep == 0, "a thread owns one column of the slice");
  const float* dyg;  // dy at (n, g*Kg); nullptr when the column lies outside
  int o, kk0, k_end, hp, wp;
  int RS, S, P, Q, sh, sw, dh, dw;

  __device__ LoadDyGather(const Params& pr, int64_t grp, int64_t o0, int tid, int64_t k_end_)
      : dyg(nullptr), o(tid % BO), kk0(tid / BO), k_end(int(k_end_)), hp(0), wp(0) {
    const ConvDims& d = pr.d;
    RS = d.R * d.S, S = d.S, P = d.P, Q = d.Q, sh = d.sh, sw = d.sw, dh = d.dh, dw = d.dw;
    const int HW = d.H * d.W;
    if (o0 + o < int64_t(d.N) * HW) {
      const int col = int(o0) + o;
      const int n = col / HW, hw = col - n * HW, h = hw / d.W, w = hw - h * d.W;
      dyg = pr.dy + (int64_t(n) * d.K + grp * d.Kg) * P * Q;
      hp = h + d.ph;
      wp = w + d.pw;
    }
  }
  __device__ void fetch(int64_t k0, float* r) const {
#pragma unroll
    for (int e = 0; e < kRegs; ++e) {
      const int j = int(k0) + kk0 + e * kStep;
      float v = 0.f;
      if (dyg != nullptr && j < k_end) {
        const int k = j / RS, rs = j - k * RS, rr = rs / S, ss = rs - rr * S;
        const int th = hp - rr * dh, tw = wp - ss * dw;
        if (th >= 0 && tw >= 0) {
          const int p = th / sh, q = tw / sw;
          if (p * sh == th && q * sw == tw && p < P && q < Q) v = dyg[(k * P + p) * Q + q];
        }
      }
      r[e] = v;
    }
  }
  __device__ void stash(float* s, const float* r) const {
#pragma unroll
    for (int e = 0; e < kRegs; ++e) s[(kk0 + e * kStep) * (BO + Cfg::kPad) + o] = r[e];
  }
};

struct BackwardDataEpilogue {
  float* dx;
  int C, Cg, HW;
  __device__ void operator()(int64_t grp, int, int64_t m, int64_t n, const float* v,
                             int count) const {
    const int c = int(grp) * Cg + int(m);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if (i < count) {
        const int col = int(n) + i, img = col / HW, hw = col - img * HW;
        dx[(int64_t(img) * C + c) * HW + hw] = v[i];
      }
    }
  }
};

template <class Cfg>
void backward_data_with(const ConvBackwardDataArgs& a, const ConvDims& d) {
  using LoadA = LoadWeightT<Cfg, Cfg::BM>;
  using LoadB = LoadDyGather<Cfg, Cfg::BN>;
  const int64_t krs = int64_t(d.Kg) * d.R * d.S;
  const BackwardDataEpilogue epi{a.dx, d.C, d.Cg, d.H * d.W};
  tile::Problem pr;
  pr.M = d.Cg, pr.N = int64_t(d.N) * d.H * d.W, pr.K = krs, pr.nz = d.groups, pr.k_chunk = krs;
  tile::launch<Cfg, LoadA, LoadB>({a.w, d}, {a.dy, d}, epi, pr);
}

// ---- backward weight -------------------------------------------------------------------------

// A[m][(n,p,q)] = dy[n, g*Kg + m, p, q]. The thread owns slice column kk = tid % BK (one (n, p, q)
// per slice) and rows m = tid / BK + e * (T / BK).
template <class Cfg, int BO>
struct LoadDyRows {
  struct Params {
    const float* dy;
    ConvDims d;
  };
  static constexpr int BK = Cfg::BK, T = Cfg::kThreads, kStep = T / BK, kRegs = BO * BK / T;
  static_assert(T % BK == 0 && BO % kStep == 0, "a thread owns one k of the slice");
  const float* dyg;
  int kk, first, m0, Kg, PQ, k_end;
  int64_t KPQ;

  __device__ LoadDyRows(const Params& pr, int64_t grp, int64_t o0, int tid, int64_t k_end_)
      : kk(tid % BK), first(tid / BK), m0(int(o0) + tid / BK), Kg(pr.d.Kg), PQ(pr.d.P * pr.d.Q),
        k_end(int(k_end_)), KPQ(int64_t(pr.d.K) * PQ) {
    dyg = pr.dy + grp * pr.d.Kg * PQ;
  }
  __device__ void fetch(int64_t k0, float* r) const {
    const int j = int(k0) + kk;
    if (j >= k_end) {
#pragma unroll
      for (int e = 0; e < kRegs; ++e) r[e] = 0.f;
      return;
    }
    const int n = j / PQ, pq = j - n * PQ;
    const float* src = dyg + n * KPQ + pq;
#pragma unroll
    for (int e = 0; e < kRegs; ++e) {
      const int m = m0 + e * kStep;
      r[e] = m < Kg ? src[int64_t(m) * PQ] : 0.f;
    }
  }
  __device__ void stash(float* s, const float* r) const {
#pragma unroll
    for (int e = 0; e < kRegs; ++e) s[kk * (BO + Cfg::kPad) + first + e * kStep] = r[e];
  }
};

// B[(n,p,q)][(c,r,s)] = x[n, g*Cg + c, p*sh - ph + r*dh, q*sw - pw + s*dw]. The thread owns slice
// row kk = tid % BK and columns tid / BK + e * (T / BK), whose (c, r, s) offsets it keeps.
template <class Cfg, int BO>
struct LoadIm2colT {
  struct Params {
    const float* x;
    ConvDims d;
  };
  static constexpr int BK = Cfg::BK, T = Cfg::kThreads, kStep = T / BK, kRegs = BO * BK / T;
  static_assert(T % BK == 0 && BO % kStep == 0, "a thread owns one k of the slice");
  const float* xg;
  int kk, first, k_end, PQ, Q, sh, sw, H, W;
  int64_t CHW;
  int coff[kRegs], roff[kRegs], soff[kRegs];  // roff < -H marks a column outside

  __device__ LoadIm2colT(const Params& pr, int64_t grp, int64_t o0, int tid, int64_t k_end_)
      : kk(tid % BK), first(tid / BK), k_end(int(k_end_)) {
    const ConvDims& d = pr.d;
    PQ = d.P * d.Q, Q = d.Q, sh = d.sh, sw = d.sw, H = d.H, W = d.W;
    CHW = int64_t(d.C) * d.H * d.W;
    xg = pr.x + grp * d.Cg * d.H * d.W;
    const int RS = d.R * d.S, CRS = d.Cg * RS;
#pragma unroll
    for (int e = 0; e < kRegs; ++e) {
      const int o = int(o0) + first + e * kStep;
      const int c = o / RS, rs = o - c * RS, rr = rs / d.S, ss = rs - rr * d.S;
      coff[e] = c * d.H * d.W;
      roff[e] = o < CRS ? rr * d.dh - d.ph : -(1 << 30);
      soff[e] = ss * d.dw - d.pw;
    }
  }
  __device__ void fetch(int64_t k0, float* r) const {
    const int j = int(k0) + kk;
    if (j >= k_end) {
#pragma unroll
      for (int e = 0; e < kRegs; ++e) r[e] = 0.f;
      return;
    }
    const int n = j / PQ, pq = j - n * PQ, p = pq / Q, q = pq - p * Q;
    const float* img = xg + n * CHW;
#pragma unroll
    for (int e = 0; e < kRegs; ++e) {
      const int h = p * sh + roff[e], w = q * sw + soff[e];
      const bool inside = unsigned(h) < unsigned(H) && unsigned(w) < unsigned(W);
      r[e] = inside ? img[coff[e] + h * W + w] : 0.f;
    }
  }
  __device__ void stash(float* s, const float* r) const {
#pragma unroll
    for (int e = 0; e < kRegs; ++e) s[kk * (BO + Cfg::kPad) + first + e * kStep] = r[e];
  }
};

// Writes split `split`'s partial sums to out + split * K * CRS (out = dw when there is one split).
struct BackwardWeightEpilogue {
  float* out;
  int Kg, CRS;
  int64_t split_stride;
  __device__ void operator()(int64_t grp, int split, int64_t m, int64_t n, const float* v,
                             int count) const {
    float* dst = out + split * split_stride + (grp * Kg + m) * CRS + n;
#pragma unroll
    for (int i = 0; i < 4; ++i)
      if (i < count) dst[i] = v[i];
  }
};

__global__ void __launch_bounds__(256)
    split_k_sum_kernel(const float* __restrict__ parts, float* __restrict__ out, int n,
                       int splits) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    float s = 0.f;
    for (int k = 0; k < splits; ++k) s += parts[int64_t(k) * n + i];
    out[i] = s;
  }
}

template <class Cfg>
void backward_weight_with(const ConvBackwardWeightArgs& a, const ConvDims& d) {
  using LoadA = LoadDyRows<Cfg, Cfg::BM>;
  using LoadB = LoadIm2colT<Cfg, Cfg::BN>;
  const int crs = d.Cg * d.R * d.S;
  const int64_t red = int64_t(d.N) * d.P * d.Q;
  const int64_t tiles =
      (d.Kg + Cfg::BM - 1) / Cfg::BM * ((crs + Cfg::BN - 1) / Cfg::BN) * int64_t(d.groups);
  // Split the reduction until the tiles fill the device twice over, keeping >= 8 slices a split.
  const int64_t want = 2 * int64_t(device_info(0).multiprocessors);
  int64_t splits = tiles >= want ? 1 : (want + tiles - 1) / tiles;
  splits = std::min<int64_t>({splits, red / (8 * Cfg::BK), 64, 65535 / d.groups});
  splits = std::max<int64_t>(splits, 1);
  const int64_t k_chunk = ((red + splits - 1) / splits + Cfg::BK - 1) / Cfg::BK * Cfg::BK;
  splits = (red + k_chunk - 1) / k_chunk;

  const int total = d.K * crs;
  std::unique_ptr<Scratch> parts;
  if (splits > 1) parts = std::make_unique<Scratch>(size_t(splits) * total * sizeof(float));
  const BackwardWeightEpilogue epi{parts ? parts->floats() : a.dw, d.Kg, crs, total};
  tile::Problem pr;
  pr.M = d.Kg, pr.N = crs, pr.K = red, pr.nz = d.groups * splits, pr.splits = int(splits);
  pr.k_chunk = k_chunk;
  tile::launch<Cfg, LoadA, LoadB>({a.dy, d}, {a.x, d}, epi, pr);
  if (parts) {
    split_k_sum_kernel<<<grid_for(total, 256), 256, 0, stream()>>>(parts->floats(), a.dw, total,
                                                                 int(splits));
    HG_LAUNCH_CHECK("split_k_sum_kernel");
  }
}

}  // namespace

void conv2d_forward_igemm(const ConvForwardArgs& a) { forward_any(a, ActNone{}); }

void conv2d_bias_act_igemm(const ConvBiasActArgs& a) {
  const ConvForwardArgs c{a.g, a.x, a.w, a.epi.bias, a.y};
  with_activation(a.epi, [&](auto act) { forward_any(c, act, a.residual); });
}

void conv2d_backward_data_igemm(const ConvBackwardDataArgs& a) {
  const ConvDims d = conv2d_dims(a.g);
  if (tile::prefer_large(d.Cg, int64_t(d.N) * d.H * d.W, d.groups))
    backward_data_with<Large>(a, d);
  else
    backward_data_with<Small>(a, d);
}

void conv2d_backward_weight_igemm(const ConvBackwardWeightArgs& a) {
  const ConvDims d = conv2d_dims(a.g);
  if (tile::prefer_large(d.Kg, int64_t(d.Cg) * d.R * d.S, d.groups))
    backward_weight_with<Large>(a, d);
  else
    backward_weight_with<Small>(a, d);
}

}  // namespace hg::gpu
