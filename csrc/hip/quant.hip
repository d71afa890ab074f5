// GPU INT8 inference kernels (the same semantics as csrc/cpu/quant.cpp):
//   quantize  q = clamp(rint(x * inv_scale), -127, 127)  (round half to even; NaN -> 0)
//   qgemm     y[m, n] = act(x_scale * w_scale[n] * sum_k xq[m, k] * wq[n, k] + bias[n])
//   qconv2d   the same per output channel k over the im2col rows: y (N, K, P, Q), NCHW
// with int32 accumulation and the dequantize + bias + activation epilogue fused.
//
// Kernels (handwritten; the v0s are the reference kernels gpu.quantize_int8_v0,
// gpu.qgemm_int8_v0, gpu.qconv2d_int8_v0, run only when forced by name):
//   gpu.quantize_int8_vec4: grid-stride, one float4 -> char4 per step where aligned; v0: one
//     element per step.
//   gpu.qgemm_int8_tiled: shared-memory tiles of int8 packed four to a 32-bit word along k,
//     register-blocked (qgemm_tiled_kernel below); v0: one thread per output, a plain k loop.
//   gpu.qconv2d_int8_igemm: the same tiled kernel as an implicit GEMM (A = wq of the group,
//     B = im2col(xq) gathered on the fly, nothing materialised); one input channel per group
//     (depthwise, any channel multiplier) and v0 run the direct kernel: one thread per output.
// Dot products of four int8 pairs: __dp4a on NVIDIA sm_61+, v_dot4_i32_i8 (sdot4) on AMD targets
// that have it (gfx906, gfx908, gfx90a, gfx1030), plain multiply-adds elsewhere (gfx900).
// Layouts: contiguous row-major xq (M, K) and wq (N, K); NCHW xq, (K, C/groups, R, S) wq.
// The vendor wrappers (vendor/cublas.cpp, vendor/rocblas.cpp) call qgemm_epilogue_handwritten
// after their int32 GEMM.
//
// Test:  PYTHONPATH=python python3 -m pytest -q tests/ops/test_quant.py tests/gpu/test_reference_kernels.py -k q
// Bench (one command line): PYTHONPATH=python python3 -m timeit -s "import numpy as np, hipgrad as hg"
//          -s "q = lambda *s: hg.tensor(np.random.randint(-127, 128, s).astype('i1'), device='gpu:0')"
//          -s "x, w = q(4096, 4096), q(4096, 4096); ws = hg.tensor(np.ones(4096, 'f4'), device='gpu:0')"
//          "hg.ops.qgemm(x, w, 0.01, ws, impl='handwritten'); hg.synchronize()"
#include <type_traits>

#include "gemm_tile.h"
#include "gpu_kernels.h"
#include "kernels_elementwise.h"

#if defined(__gfx906__) || defined(__gfx908__) || defined(__gfx90a__) || defined(__gfx1030__) || \
    defined(HIPGRAD_PLATFORM_SIM)
#define HG_HAVE_SDOT4 1
#endif

namespace hg::gpu {
namespace {

// ---- shared device pieces -----------------------------------------------------------------------

// c + the dot product of the four signed bytes of a and b.
__device__ inline int dot4_i8(int a, int b, int c) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 610
  return __dp4a(a, b, c);
#elif defined(HG_HAVE_SDOT4)
  return __builtin_amdgcn_sdot4(a, b, c, false);
#else
#pragma unroll
  for (int i = 0; i < 4; ++i) c += int(int8_t(a >> (8 * i))) * int(int8_t(b >> (8 * i)));
  return c;
#endif
}

// Act: -1 (no activation) or an ActKind value.
template <int Act>
__device__ inline float apply_act(float v, float alpha) {
  if constexpr (Act < 0) return v;
  else return act_forward<ActKind(Act)>(v, alpha);
}

struct Dequant {
  float x_scale;
  const float* w_scale;
  const float* bias;  // may be nullptr
  float alpha;
  template <int Act>
  __device__ float apply(int acc, int64_t ch) const {
    const float v = float(acc) * (x_scale * w_scale[ch]) + (bias != nullptr ? bias[ch] : 0.f);
    return apply_act<Act>(v, alpha);
  }
};

// Calls f(std::integral_constant<int, Act>) for the epilogue's activation (-1: none).
template <class F>
void with_act(bool has_act, ActKind kind, F&& f) {
  using std::integral_constant;
  if (!has_act) return f(integral_constant<int, -1>{});
  switch (kind) {
    case ActKind::relu: return f(integral_constant<int, int(ActKind::relu)>{});
    case ActKind::leaky_relu: return f(integral_constant<int, int(ActKind::leaky_relu)>{});
    case ActKind::sigmoid: return f(integral_constant<int, int(ActKind::sigmoid)>{});
    case ActKind::tanh: return f(integral_constant<int, int(ActKind::tanh)>{});
    case ActKind::gelu: return f(integral_constant<int, int(ActKind::gelu)>{});
    case ActKind::gelu_tanh: return f(integral_constant<int, int(ActKind::gelu_tanh)>{});
    case ActKind::elu: return f(integral_constant<int, int(ActKind::elu)>{});
    case ActKind::relu6: return f(integral_constant<int, int(ActKind::relu6)>{});
    case ActKind::hardsigmoid: return f(integral_constant<int, int(ActKind::hardsigmoid)>{});
    case ActKind::hardswish: return f(integral_constant<int, int(ActKind::hardswish)>{});
  }
}

// ---- quantize -----------------------------------------------------------------------------------

__device__ inline int8_t quantize_value(float x, float inv_scale) {
  const float v = rintf(x * inv_scale);
  if (v != v) return 0;
  return int8_t(v > 127.f ? 127.f : (v < -127.f ? -127.f : v));
}

// Thread t converts float4 t, t + stride, ... of the aligned body, then the tail element by element
// (every element when vec4 is false: that path is the v0 reference).
__global__ void quantize_kernel(int64_t n, float inv_scale, const float* __restrict__ x,
                                int8_t* __restrict__ q, bool vec4) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t done = 0;
  if (vec4) {
    const int64_t n4 = n / 4;
    for (int64_t i = tid; i < n4; i += stride) {
      const float4 v = reinterpret_cast<const float4*>(x)[i];
      char4 r;
      r.x = quantize_value(v.x, inv_scale), r.y = quantize_value(v.y, inv_scale);
      r.z = quantize_value(v.z, inv_scale), r.w = quantize_value(v.w, inv_scale);
      reinterpret_cast<char4*>(q)[i] = r;
    }
    done = n4 * 4;
  }
  for (int64_t i = done + tid; i < n; i += stride) q[i] = quantize_value(x[i], inv_scale);
}

// ---- the tiled int8 GEMM ------------------------------------------------------------------------
// C[z][m][n] = sum_k A[z][m][k] * B[z][n][k] (both operands k-contiguous), handed to the epilogue.
// - Block (blockIdx.x, blockIdx.y) owns the BM x BN tile at (y * BM, x * BN); blockIdx.z walks z.
// - Thread (tx, ty) = (tid % (BN/TN), tid / (BN/TN)) owns rows ty + i * (BM/TM), i < TM, and
//   columns tx + j * (BN/TN), j < TN: a warp's B reads and epilogue stores are consecutive.
// - Shared memory holds two kBK-deep slices of each operand as 32-bit words of four consecutive
//   k, word-major: As[w][m], Bs[w][n] (rows padded by one word). The next slice's loads are in
//   registers while the block multiplies the current one: one barrier per slice.
// Loaders: `Loader(params, z, o0, tid, K)`, `fetch(k0, regs)`, `stash(smem, regs)`, `kRegs`;
// zeros outside the matrix (k tails included), so the main loop has no edge cases.
constexpr int kBK = 32;           // k per slice
constexpr int kWords = kBK / 4;   // packed words per row of a slice

template <int BM_, int BN_, int TM_, int TN_>
struct QTile {
  static constexpr int BM = BM_, BN = BN_, TM = TM_, TN = TN_;
  static constexpr int kThreads = (BM / TM) * (BN / TN);
};
using QSmall = QTile<64, 64, 4, 4>;    // 256 threads x 16 outputs
using QLarge = QTile<128, 128, 8, 8>;  // 256 threads x 64 outputs

inline bool aligned4(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 3u) == 0; }

// op[z][o][k] = p[z * stride + o * ld + k]. Thread word v is (o[v], words w[v]) of the slice: one
// 32-bit load when the rows are 4-byte aligned (vec) and the word lies inside k, else four bytes.
template <class Cfg, int BO>
struct LoadRows {
  struct Params {
    const int8_t* p;
    int64_t ld, stride, rows;
    bool vec;  // p, ld and stride multiples of 4 bytes
  };
  static constexpr int T = Cfg::kThreads, kRegs = BO * kWords / T;
  static_assert(BO * kWords % T == 0, "each thread loads whole words");
  const int8_t* ptr[kRegs];  // the element (o[v], 4 w[v]) of the slice at k0 = 0
  int o[kRegs], w[kRegs];
  bool row_ok[kRegs];
  bool vec;
  int64_t K;

  __device__ LoadRows(const Params& p, int64_t z, int64_t o0, int tid, int64_t K_) : vec(p.vec), K(K_) {
#pragma unroll
    for (int v = 0; v < kRegs; ++v) {
      const int idx = tid + v * T;
      o[v] = idx / kWords;
      w[v] = idx % kWords;
      row_ok[v] = o0 + o[v] < p.rows;
      ptr[v] = p.p + z * p.stride + (row_ok[v] ? (o0 + o[v]) * p.ld : 0) + 4 * w[v];
    }
  }
  __device__ void fetch(int64_t k0, int* r) const {
#pragma unroll
    for (int v = 0; v < kRegs; ++v) {
      const int64_t k = k0 + 4 * w[v];
      const int8_t* src = ptr[v] + k0;
      if (row_ok[v] && vec && k + 3 < K) {
        r[v] = *reinterpret_cast<const int*>(src);
      } else {
        unsigned word = 0;
#pragma unroll
        for (int i = 0; i < 4; ++i)
          if (row_ok[v] && k + i < K) word |= unsigned(uint8_t(src[i])) << (8 * i);
        r[v] = int(word);
      }
    }
  }
  __device__ void stash(int* s, const int* r) const {
#pragma unroll
    for (int v = 0; v < kRegs; ++v) s[w[v] * (BO + 1) + o[v]] = r[v];
  }
};

template <class Cfg, class LoadA, class LoadB, class Epilogue>
__global__ void __launch_bounds__(Cfg::kThreads)
    qgemm_tiled_kernel(typename LoadA::Params pa, typename LoadB::Params pb, Epilogue epi,
                       int64_t M, int64_t N, int64_t K, int64_t nz) {
  constexpr int BM = Cfg::BM, BN = Cfg::BN, TM = Cfg::TM, TN = Cfg::TN;
  constexpr int kRowStep = BM / TM, kColStep = BN / TN;
  __shared__ int As[2][kWords][BM + 1];
  __shared__ int Bs[2][kWords][BN + 1];
  const int tid = threadIdx.x;
  const int tx = tid % kColStep, ty = tid / kColStep;
  const int64_t m0 = int64_t(blockIdx.y) * BM, n0 = int64_t(blockIdx.x) * BN;

  for (int64_t z = blockIdx.z; z < nz; z += gridDim.z) {
    const LoadA la(pa, z, m0, tid, K);
    const LoadB lb(pb, z, n0, tid, K);
    int acc[TM][TN] = {};
    int ra[LoadA::kRegs], rb[LoadB::kRegs];
    if (K > 0) {
      la.fetch(0, ra);
      lb.fetch(0, rb);
      la.stash(&As[0][0][0], ra);
      lb.stash(&Bs[0][0][0], rb);
      __syncthreads();
      int cur = 0;
      for (int64_t k0 = 0; k0 < K; k0 += kBK) {
        const bool more = k0 + kBK < K;
        if (more) {
          la.fetch(k0 + kBK, ra);
          lb.fetch(k0 + kBK, rb);
        }
        HG_UNROLL_TILE_K  // partial on AMD: a full unroll spills the 128 x 128 tile's registers
        for (int w = 0; w < kWords; ++w) {
          int a[TM], b[TN];
#pragma unroll
          for (int i = 0; i < TM; ++i) a[i] = As[cur][w][ty + i * kRowStep];
#pragma unroll
          for (int j = 0; j < TN; ++j) b[j] = Bs[cur][w][tx + j * kColStep];
#pragma unroll
          for (int i = 0; i < TM; ++i)
#pragma unroll
            for (int j = 0; j < TN; ++j) acc[i][j] = dot4_i8(a[i], b[j], acc[i][j]);
        }
        if (more) {
          la.stash(&As[cur ^ 1][0][0], ra);
          lb.stash(&Bs[cur ^ 1][0][0], rb);
        }
        __syncthreads();
        cur ^= 1;
      }
    }
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const int64_t m = m0 + ty + i * kRowStep;
      if (m >= M) continue;
#pragma unroll
      for (int j = 0; j < TN; ++j) {
        const int64_t n = n0 + tx + j * kColStep;
        if (n < N) epi(z, m, n, acc[i][j]);
      }
    }
  }
}

template <class Cfg, class LoadA, class LoadB, class Epilogue>
void launch_tiled(const char* op, const typename LoadA::Params& pa, const typename LoadB::Params& pb,
                  const Epilogue& epi, int64_t M, int64_t N, int64_t K, int64_t nz) {
  const int64_t tiles_m = (M + Cfg::BM - 1) / Cfg::BM, tiles_n = (N + Cfg::BN - 1) / Cfg::BN;
  // AMD's launcher refuses gridDim.x * blockDim.x beyond 2^32 - 1 (NVIDIA: gridDim.x < 2^31).
  HG_REQUIRE(tiles_m <= 65535 && tiles_n * Cfg::kThreads <= 0xffffffffLL, op, ": a ", M, " x ", N,
             " result exceeds the GPU launch grid (at most ", 65535 * Cfg::BM, " rows and ",
             0xffffffffLL / Cfg::kThreads * Cfg::BN, " columns)");
  const dim3 grid(unsigned(tiles_n), unsigned(tiles_m), unsigned(nz < 65535 ? nz : 65535));
  qgemm_tiled_kernel<Cfg, LoadA, LoadB, Epilogue>
      <<<grid, Cfg::kThreads, 0, stream()>>>(pa, pb, epi, M, N, K, nz);
  HG_LAUNCH_CHECK("qgemm_tiled_kernel");
}

// ---- qgemm --------------------------------------------------------------------------------------

template <int Act>
struct GemmEpilogue {
  float* y;
  int64_t N;
  Dequant e;
  __device__ void operator()(int64_t, int64_t m, int64_t n, int acc) const {
    y[m * N + n] = e.apply<Act>(acc, n);
  }
};

Dequant dequant_of(const QGemmArgs& a) { return Dequant{a.x_scale, a.w_scale, a.bias, a.alpha}; }

template <class Cfg, int Act>
void qgemm_with(const QGemmArgs& a) {
  using LoadA = LoadRows<Cfg, Cfg::BM>;
  using LoadB = LoadRows<Cfg, Cfg::BN>;
  const bool vec_x = aligned4(a.xq) && a.K % 4 == 0;
  const bool vec_w = aligned4(a.wq) && a.K % 4 == 0;
  const typename LoadA::Params pa{a.xq, a.K, 0, a.M, vec_x};
  const typename LoadB::Params pb{a.wq, a.K, 0, a.N, vec_w};
  launch_tiled<Cfg, LoadA, LoadB>("qgemm", pa, pb, GemmEpilogue<Act>{a.y, a.N, dequant_of(a)}, a.M,
                                  a.N, a.K, 1);
}

// v0: thread (m, n) of a grid-stride loop over M*N, a plain loop over k.
template <int Act>
__global__ void qgemm_v0_kernel(int64_t M, int64_t N, int64_t K, const int8_t* xq, const int8_t* wq,
                                Dequant e, float* y) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < M * N;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t m = i / N, n = i - m * N;
    int acc = 0;
    for (int64_t k = 0; k < K; ++k) acc += int(xq[m * K + k]) * int(wq[n * K + k]);
    y[i] = e.apply<Act>(acc, n);
  }
}

// y[i] = epilogue(acc[i]) over the row-major (M, N) int32 result of a vendor GEMM.
template <int Act, class D>
__global__ void qgemm_epilogue_kernel(typename D::Index total, D N_d, const int* __restrict__ acc,
                                      Dequant e, float* __restrict__ y) {
  using I = typename D::Index;
  for (I i = I(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += I(gridDim.x) * blockDim.x) {
    const I n = i - N_d.div(i) * I(N_d.d);
    y[i] = e.apply<Act>(acc[i], int64_t(n));
  }
}

// ---- qconv2d ------------------------------------------------------------------------------------

// B[z = group][(n,p,q)][(c,r,s)] = xq[n, z*Cg + c, p*sh - ph + r*dh, q*sw - pw + s*dw] (0 outside).
// The thread owns column o = tid % BO (one output pixel, decoded once) and words
// tid / BO + e * (T / BO) of each slice, each gathered byte by byte.
template <class Cfg, int BO>
struct LoadIm2colInt8 {
  struct Params {
    const int8_t* x;
    ConvDims d;
  };
  static constexpr int T = Cfg::kThreads, kStep = T / BO, kRegs = BO * kWords / T;
  static_assert(T % BO == 0 && kWords % kStep == 0, "a thread owns one column of the slice");
  const int8_t* img;  // xq at (n, z*Cg); nullptr when the column lies outside
  int o, w0, k_end, h0, wc0;
  int RS, S, H, W, dh, dw;

  __device__ LoadIm2colInt8(const Params& pr, int64_t z, int64_t o0, int tid, int64_t K)
      : img(nullptr), o(tid % BO), w0(tid / BO), k_end(int(K)), h0(0), wc0(0) {
    const ConvDims& d = pr.d;
    RS = d.R * d.S, S = d.S, H = d.H, W = d.W, dh = d.dh, dw = d.dw;
    const int PQ = d.P * d.Q;
    if (o0 + o < int64_t(d.N) * PQ) {
      const int col = int(o0) + o;
      const int n = col / PQ, pq = col - n * PQ, p = pq / d.Q, q = pq - p * d.Q;
      img = pr.x + (int64_t(n) * d.C + z * d.Cg) * d.H * d.W;
      h0 = p * d.sh - d.ph;
      wc0 = q * d.sw - d.pw;
    }
  }
  __device__ void fetch(int64_t k0, int* r) const {
#pragma unroll
    for (int e = 0; e < kRegs; ++e) {
      const int kb = int(k0) + 4 * (w0 + e * kStep);
      unsigned word = 0;
      if (img != nullptr) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int k = kb + i;
          if (k < k_end) {
            const int c = k / RS, rs = k - c * RS, rr = rs / S, ss = rs - rr * S;
            const int h = h0 + rr * dh, w = wc0 + ss * dw;
            if (unsigned(h) < unsigned(H) && unsigned(w) < unsigned(W))
              word |= unsigned(uint8_t(img[(c * H + h) * W + w])) << (8 * i);
          }
        }
      }
      r[e] = int(word);
    }
  }
  __device__ void stash(int* s, const int* r) const {
#pragma unroll
    for (int e = 0; e < kRegs; ++e) s[(w0 + e * kStep) * (BO + 1) + o] = r[e];
  }
};

// Row m of group z is output channel k = z*Kg + m; column n the output pixel (image, p, q).
template <int Act>
struct ConvEpilogue {
  float* y;
  int K, Kg, PQ;
  Dequant e;
  __device__ void operator()(int64_t z, int64_t m, int64_t n, int acc) const {
    const int k = int(z) * Kg + int(m), img = int(n) / PQ, pq = int(n) - img * PQ;
    y[(int64_t(img) * K + k) * PQ + pq] = e.apply<Act>(acc, k);
  }
};

Dequant dequant_of(const QConvArgs& a) { return Dequant{a.x_scale, a.w_scale, a.bias, a.alpha}; }

template <class Cfg, int Act>
void qconv2d_igemm_with(const QConvArgs& a, const ConvDims& d) {
  using LoadA = LoadRows<Cfg, Cfg::BM>;
  using LoadB = LoadIm2colInt8<Cfg, Cfg::BN>;
  const int64_t crs = int64_t(d.Cg) * d.R * d.S;
  const typename LoadA::Params pa{a.wq, crs, d.Kg * crs, d.Kg, aligned4(a.wq) && crs % 4 == 0};
  const typename LoadB::Params pb{a.xq, d};
  const ConvEpilogue<Act> epi{a.y, d.K, d.Kg, d.P * d.Q, dequant_of(a)};
  launch_tiled<Cfg, LoadA, LoadB>("qconv2d", pa, pb, epi, d.Kg, int64_t(d.N) * d.P * d.Q, crs,
                                  d.groups);
}

// Direct: thread i of a grid-stride loop computes y[i] = y[n, k, p, q] (NCHW order, so stores are
// coalesced) from the Cg*R*S taps of its group. The production kernel for one input channel per
// group (depthwise), and the v0 reference for every convolution.
template <int Act>
__global__ void qconv2d_direct_kernel(const int8_t* __restrict__ x, const int8_t* __restrict__ w,
                                      ConvDims d, Dequant e, float* __restrict__ y) {
  const int64_t total = int64_t(d.N) * d.K * d.P * d.Q;  // < 2^31 (conv2d_dims)
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < total;
       j += int64_t(gridDim.x) * blockDim.x) {
    const int i = int(j);
    int t = i / d.Q;
    const int q = i - t * d.Q;
    const int p = t % d.P;
    t /= d.P;
    const int k = t % d.K, n = t / d.K, grp = k / d.Kg;
    const int8_t* wk = w + int64_t(k) * d.Cg * d.R * d.S;
    int acc = 0;
    for (int c = 0; c < d.Cg; ++c) {
      const int8_t* xc = x + (int64_t(n) * d.C + grp * d.Cg + c) * d.H * d.W;
      for (int r = 0; r < d.R; ++r) {
        const int h = p * d.sh - d.ph + r * d.dh;
        if (unsigned(h) >= unsigned(d.H)) continue;
        for (int s = 0; s < d.S; ++s) {
          const int ww = q * d.sw - d.pw + s * d.dw;
          if (unsigned(ww) < unsigned(d.W)) acc += int(xc[h * d.W + ww]) * int(wk[(c * d.R + r) * d.S + s]);
        }
      }
    }
    y[i] = e.apply<Act>(acc, k);
  }
}

// ---- host entries -------------------------------------------------------------------------------

template <Path P>
void quantize_gpu(const QuantizeArgs& a) {
  const bool vec4 = P == Path::fast && aligned16(a.x) && aligned4(a.q);
  quantize_kernel<<<blocks_for(vec4 ? (a.n + 3) / 4 : a.n), kThreads, 0, current_stream()>>>(
      a.n, a.inv_scale, a.x, a.q, vec4);
  HG_LAUNCH_CHECK("quantize_kernel");
}

template <Path P>
void qconv2d_gpu(const QConvArgs& a) {
  const ConvDims d = conv2d_dims(a.g);
  if (int64_t(d.N) * d.K * d.P * d.Q == 0) return;
  with_act(a.has_act, a.act, [&](auto act) {
    constexpr int Act = decltype(act)::value;
    if (d.Cg == 1 || P == Path::reference) {
      const int64_t total = int64_t(d.N) * d.K * d.P * d.Q;
      qconv2d_direct_kernel<Act><<<grid_for(total, kThreads), kThreads, 0, stream()>>>(
          a.xq, a.wq, d, dequant_of(a), a.y);
      HG_LAUNCH_CHECK("qconv2d_direct_kernel");
    } else if (tile::prefer_large(d.Kg, int64_t(d.N) * d.P * d.Q, d.groups)) {
      qconv2d_igemm_with<QLarge, Act>(a, d);
    } else {
      qconv2d_igemm_with<QSmall, Act>(a, d);
    }
  });
}

template <Path P>
void qgemm_gpu(const QGemmArgs& a) {
  with_act(a.has_act, a.act, [&](auto act) {
    constexpr int Act = decltype(act)::value;
    if (P == Path::reference) {
      qgemm_v0_kernel<Act><<<grid_for(a.M * a.N, kThreads), kThreads, 0, stream()>>>(
          a.M, a.N, a.K, a.xq, a.wq, dequant_of(a), a.y);
      HG_LAUNCH_CHECK("qgemm_v0_kernel");
    } else if (tile::prefer_large(a.M, a.N, 1)) {
      qgemm_with<QLarge, Act>(a);
    } else {
      qgemm_with<QSmall, Act>(a);
    }
  });
}

}  // namespace

void qgemm_handwritten(const QGemmArgs& a) { qgemm_gpu<Path::fast>(a); }

void qgemm_epilogue_handwritten(const QGemmArgs& a, const int32_t* acc) {
  const int64_t total = a.M * a.N;
  with_act(a.has_act, a.act, [&](auto act) {
    constexpr int Act = decltype(act)::value;
    with_divider(total, [&](auto tag) {
      using D = decltype(tag);
      qgemm_epilogue_kernel<Act, D><<<blocks_for(total), kThreads, 0, current_stream()>>>(
          typename D::Index(total), D(a.N), acc, dequant_of(a), a.y);
      HG_LAUNCH_CHECK("qgemm_epilogue_kernel");
    });
  });
}

}  // namespace hg::gpu

HG_REGISTER_KERNEL(quantize_op, gpu, handwritten, "gpu.quantize_int8_vec4",
                   &hg::gpu::quantize_gpu<hg::gpu::Path::fast>);
HG_REGISTER_REFERENCE(quantize_op, gpu, "gpu.quantize_int8_v0",
                      &hg::gpu::quantize_gpu<hg::gpu::Path::reference>);
HG_REGISTER_KERNEL(qgemm_op, gpu, handwritten, "gpu.qgemm_int8_tiled", &hg::gpu::qgemm_handwritten);
HG_REGISTER_REFERENCE(qgemm_op, gpu, "gpu.qgemm_int8_v0", &hg::gpu::qgemm_gpu<hg::gpu::Path::reference>);
HG_REGISTER_KERNEL(qconv2d_op, gpu, handwritten,
                   "gpu.qconv2d_int8_igemm (one input channel per group: gpu.qconv2d_int8_direct)",
                   &hg::gpu::qconv2d_gpu<hg::gpu::Path::fast>);
HG_REGISTER_REFERENCE(qconv2d_op, gpu, "gpu.qconv2d_int8_v0",
                      &hg::gpu::qconv2d_gpu<hg::gpu::Path::reference>);
