// The shared-memory tiled, register-blocked GEMM main loop, used by gemm.hip and by the
// implicit-GEMM convolutions (conv_igemm.hip), which differ only in how tiles are gathered from
// memory (loaders) and where results go (epilogues).
//
// Computes, per z in [0, nz), an M x N tile grid of  sum_k op(A)[m][k] * op(B)[k][n]  over the k
// range of split z % splits, then hands each result to the epilogue.
// - Block (blockIdx.x, blockIdx.y) owns the BM x BN output tile at (m0, n0) = (y * BM, x * BN);
//   blockIdx.z walks z with a grid stride. kThreads = (BM/TM) * (BN/TN) threads.
// - Thread (tx, ty) = (tid % (BN/TN), tid / (BN/TN)) owns TM x TN outputs: rows
//   m0 + g * (BM / (TM/4)) + ty*4 + {0..3} for g < TM/4, and the columns likewise with tx, so
//   each shared-memory read is one float4 and a warp's reads of B are contiguous.
// - Shared memory holds two BK-deep slices of each operand, k-major: As[k][m], Bs[k][n] (rows
//   padded by 4 floats: transposed stores spread over banks, rows stay 16-byte aligned). While
//   the block multiplies one slice, each thread's loads of the next one are in flight in
//   registers (the loader's fetch), stored to the other slice after (stash): one barrier per slice.
// Loaders: `Loader(params, batch, o0, tid, k_end)`, `fetch(k0, regs)`, `stash(smem, regs)`,
// `kRegs`; they return 0 outside the matrix so edges need no special case in the main loop.
// Epilogue: `epi(batch, split, m, n, v, count)` stores v[0..count) at (m, n..n+count).
#pragma once
#include <cstdint>

#include "runtime.h"

namespace hg::gpu::tile {

template <int BM_, int BN_, int BK_, int TM_, int TN_>
struct Config {
  static constexpr int BM = BM_, BN = BN_, BK = BK_, TM = TM_, TN = TN_;
  static constexpr int kThreads = (BM / TM) * (BN / TN);
  static constexpr int kPad = 4;
  static_assert(TM % 4 == 0 && TN % 4 == 0, "threads read float4 fragments");
};
using Large = Config<128, 128, 8, 8, 8>;  // 256 threads x 64 outputs
using Small = Config<64, 64, 16, 4, 4>;   // 256 threads x 16 outputs: small or skinny problems

struct Problem {
  int64_t M = 0, N = 0, K = 0;
  int64_t nz = 1;       // batches (or groups) x splits
  int splits = 1;       // z % splits selects the k range, z / splits the batch
  int64_t k_chunk = 0;  // k range per split, a multiple of BK (K when splits == 1)
};

// Large tiles when both sides are big enough and there are enough tiles to fill the device.
inline bool prefer_large(int64_t M, int64_t N, int64_t nz) {
  if (M <= 64 || N <= 64) return false;
  const int64_t tiles = (M + 127) / 128 * ((N + 127) / 128) * nz;
  return tiles >= device_info(0).multiprocessors;
}

// op(X)[o][k] = X[batch * stride + o * ld + k]: k contiguous (A untransposed, B transposed).
// Thread element v is the float4 at (o[v], kk[v]..kk[v]+3) of the slice.
template <class Cfg, int BO>
struct LoadKContiguous {
  struct Params {
    const float* p;
    int64_t ld, stride, rows;
    bool vec;  // p, ld and stride aligned to float4
  };
  static constexpr int BK = Cfg::BK, T = Cfg::kThreads, kVecs = BO * BK / 4 / T, kRegs = 4 * kVecs;
  static_assert(BO * BK % (4 * T) == 0, "each thread loads whole float4s");
  const float* ptr[kVecs];  // the element (o[v], kk[v]) of the slice at k0 = 0
  int o[kVecs], kk[kVecs];
  bool row_ok[kVecs];
  bool vec;
  int64_t k_end;

  __device__ LoadKContiguous(const Params& p, int64_t batch, int64_t o0, int tid, int64_t k_end_)
      : vec(p.vec), k_end(k_end_) {
#pragma unroll
    for (int v = 0; v < kVecs; ++v) {
      const int idx = tid + v * T;
      o[v] = idx / (BK / 4);
      kk[v] = idx % (BK / 4) * 4;
      row_ok[v] = o0 + o[v] < p.rows;
      ptr[v] = p.p + batch * p.stride + (o0 + o[v]) * p.ld + kk[v];
    }
  }
  __device__ void fetch(int64_t k0, float* r) const {
#pragma unroll
    for (int v = 0; v < kVecs; ++v) {
      const int64_t k = k0 + kk[v];
      const float* src = ptr[v] + k0;
      if (row_ok[v] && vec && k + 3 < k_end) {
        const float4 t = *reinterpret_cast<const float4*>(src);
        r[4 * v] = t.x, r[4 * v + 1] = t.y, r[4 * v + 2] = t.z, r[4 * v + 3] = t.w;
      } else {
#pragma unroll
        for (int i = 0; i < 4; ++i) r[4 * v + i] = row_ok[v] && k + i < k_end ? src[i] : 0.f;
      }
    }
  }
  __device__ void stash(float* s, const float* r) const {
#pragma unroll
    for (int v = 0; v < kVecs; ++v)
#pragma unroll
      for (int i = 0; i < 4; ++i) s[(kk[v] + i) * (BO + Cfg::kPad) + o[v]] = r[4 * v + i];
  }
};

// op(X)[o][k] = X[batch * stride + k * ld + o]: o contiguous (A transposed, B untransposed).
// Thread element v is the float4 at (o[v]..o[v]+3, kk[v]) of the slice.
template <class Cfg, int BO>
struct LoadOContiguous {
  using Params = typename LoadKContiguous<Cfg, BO>::Params;
  static constexpr int BK = Cfg::BK, T = Cfg::kThreads, kVecs = BO * BK / 4 / T, kRegs = 4 * kVecs;
  static_assert(BO * BK % (4 * T) == 0, "each thread loads whole float4s");
  const float* ptr[kVecs];  // the element (o[v], kk[v]) of the slice at k0 = 0
  int o[kVecs], kk[kVecs];
  int cols[kVecs];  // how many of the 4 columns exist (0..4)
  bool vec;
  int64_t ld, k_end;

  __device__ LoadOContiguous(const Params& p, int64_t batch, int64_t o0, int tid, int64_t k_end_)
      : vec(p.vec), ld(p.ld), k_end(k_end_) {
#pragma unroll
    for (int v = 0; v < kVecs; ++v) {
      const int idx = tid + v * T;
      kk[v] = idx / (BO / 4);
      o[v] = idx % (BO / 4) * 4;
      const int64_t left = p.rows - (o0 + o[v]);
      cols[v] = left <= 0 ? 0 : left >= 4 ? 4 : int(left);
      ptr[v] = p.p + batch * p.stride + kk[v] * p.ld + o0 + o[v];
    }
  }
  __device__ void fetch(int64_t k0, float* r) const {
#pragma unroll
    for (int v = 0; v < kVecs; ++v) {
      const bool k_ok = k0 + kk[v] < k_end;
      const float* src = ptr[v] + k0 * ld;
      if (k_ok && vec && cols[v] == 4) {
        const float4 t = *reinterpret_cast<const float4*>(src);
        r[4 * v] = t.x, r[4 * v + 1] = t.y, r[4 * v + 2] = t.z, r[4 * v + 3] = t.w;
      } else {
#pragma unroll
        for (int i = 0; i < 4; ++i) r[4 * v + i] = k_ok && i < cols[v] ? src[i] : 0.f;
      }
    }
  }
  __device__ void stash(float* s, const float* r) const {
#pragma unroll
    for (int v = 0; v < kVecs; ++v)
      *reinterpret_cast<float4*>(&s[kk[v] * (BO + Cfg::kPad) + o[v]]) =
          make_float4(r[4 * v], r[4 * v + 1], r[4 * v + 2], r[4 * v + 3]);
  }
};

template <class Cfg, class LoadA, class LoadB, class Epilogue>
__global__ void __launch_bounds__(Cfg::kThreads)
    tiled_gemm_kernel(typename LoadA::Params pa, typename LoadB::Params pb, Epilogue epi,
                      Problem pr) {
  constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Cfg::BK, TM = Cfg::TM, TN = Cfg::TN;
  constexpr int kRowStride = BM / (TM / 4), kColStride = BN / (TN / 4);
  __shared__ __align__(16) float As[2][BK][BM + Cfg::kPad];
  __shared__ __align__(16) float Bs[2][BK][BN + Cfg::kPad];
  const int tid = threadIdx.x;
  const int tx = tid % (BN / TN), ty = tid / (BN / TN);
  const int64_t m0 = int64_t(blockIdx.y) * BM, n0 = int64_t(blockIdx.x) * BN;

  for (int64_t z = blockIdx.z; z < pr.nz; z += gridDim.z) {
    const int split = int(z % pr.splits);
    const int64_t batch = z / pr.splits;
    const int64_t kb = split * pr.k_chunk;
    const int64_t ke = kb + pr.k_chunk < pr.K ? kb + pr.k_chunk : pr.K;
    const LoadA la(pa, batch, m0, tid, ke);
    const LoadB lb(pb, batch, n0, tid, ke);
    float acc[TM][TN] = {};
    float ra[LoadA::kRegs], rb[LoadB::kRegs];
    if (kb < ke) {
      la.fetch(kb, ra);
      lb.fetch(kb, rb);
      la.stash(&As[0][0][0], ra);
      lb.stash(&Bs[0][0][0], rb);
      __syncthreads();
      int cur = 0;
      for (int64_t k0 = kb; k0 < ke; k0 += BK) {
        const bool more = k0 + BK < ke;
        if (more) {
          la.fetch(k0 + BK, ra);
          lb.fetch(k0 + BK, rb);
        }
        HG_UNROLL_TILE_K
        for (int kk = 0; kk < BK; ++kk) {
          float a[TM], b[TN];
#pragma unroll
          for (int g = 0; g < TM / 4; ++g) {
            const float4 v =
                *reinterpret_cast<const float4*>(&As[cur][kk][g * kRowStride + ty * 4]);
            a[4 * g] = v.x, a[4 * g + 1] = v.y, a[4 * g + 2] = v.z, a[4 * g + 3] = v.w;
          }
#pragma unroll
          for (int g = 0; g < TN / 4; ++g) {
            const float4 v =
                *reinterpret_cast<const float4*>(&Bs[cur][kk][g * kColStride + tx * 4]);
            b[4 * g] = v.x, b[4 * g + 1] = v.y, b[4 * g + 2] = v.z, b[4 * g + 3] = v.w;
          }
#pragma unroll
          for (int i = 0; i < TM; ++i)
#pragma unroll
            for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
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
      const int64_t m = m0 + (i / 4) * kRowStride + ty * 4 + i % 4;
      if (m >= pr.M) continue;
#pragma unroll
      for (int g = 0; g < TN / 4; ++g) {
        const int64_t n = n0 + g * kColStride + tx * 4;
        if (n >= pr.N) continue;
        const int count = pr.N - n < 4 ? int(pr.N - n) : 4;
        const float v[4] = {acc[i][4 * g], acc[i][4 * g + 1], acc[i][4 * g + 2], acc[i][4 * g + 3]};
        epi(batch, split, m, n, v, count);
      }
    }
  }
}

// Launches the main loop over the problem's tile grid on the hipgrad stream.
template <class Cfg, class LoadA, class LoadB, class Epilogue>
void launch(const typename LoadA::Params& pa, const typename LoadB::Params& pb,
            const Epilogue& epi, const Problem& pr) {
  const int64_t tiles_m = (pr.M + Cfg::BM - 1) / Cfg::BM, tiles_n = (pr.N + Cfg::BN - 1) / Cfg::BN;
  // AMD's launcher refuses gridDim.x * blockDim.x beyond 2^32 - 1 (NVIDIA: gridDim.x < 2^31).
  HG_REQUIRE(tiles_m <= 65535 && tiles_n * Cfg::kThreads <= 0xffffffffLL, "gpu gemm: a ", pr.M, " x ",
             pr.N, " result exceeds the launch grid (at most ", 65535 * Cfg::BM, " rows and ",
             0xffffffffLL / Cfg::kThreads * Cfg::BN, " columns)");
  const dim3 grid(unsigned(tiles_n), unsigned(tiles_m), unsigned(pr.nz < 65535 ? pr.nz : 65535));
  tiled_gemm_kernel<Cfg, LoadA, LoadB, Epilogue>
      <<<grid, Cfg::kThreads, 0, stream()>>>(pa, pb, epi, pr);
  HG_LAUNCH_CHECK("tiled_gemm_kernel");
}

inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace hg::gpu::tile
