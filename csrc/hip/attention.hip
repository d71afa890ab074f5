// GPU scaled dot-product attention (fused, flash-style: the (Tq, Tk) score matrix never exists in
// memory) and batched GEMM, float32, q (B, H, Tq, D), k and v (B, H, Tk, D), lse (B, H, Tq):
//   attention           one block of 128 threads per (head, 16 queries): 8 threads per query, each
//                       holding D/8 of q (scaled) and of the output accumulator in registers; K/V
//                       tiles of 16 keys go through shared memory; per tile the scores, their max,
//                       the online-softmax rescale of (m, l, o) and o += p v. out = o / l,
//                       lse = m + log l. Causal (key j visible to query i when j <= i + Tk - Tq):
//                       tiles past the block's last visible key are not loaded. Keys and values
//                       are read with the geometry's strides (kv_head, kv_row): a KV cache of L
//                       positions, (B, H, L, D) or (L, B, H, D), is read in place up to kv_len.
//   attention_backward  D_i = rowsum(dout_i * out_i) first; then two kernels that recompute the
//                       probabilities from lse (p = exp(s - lse), never stored):
//                         dk/dv: one block per (head, 16 keys), 8 threads per key holding k, v,
//                           dk, dv slices; q / dout tiles of 16 queries through shared memory;
//                           dv += p dout, ds = p (dp - D), dk += ds q
//                         dq: one block per (head, 16 queries), k / v tiles through shared
//                           memory; dq += ds k
//                       Each output element is summed by one thread in a fixed order: no atomics,
//                       the same bits on every run.
//   bmm                 hg::gpu::gemm_strided (gemm.hip's tiled kernel) over the batch.
// Reductions over a query's 8 threads are shuffles with lane masks 4, 2, 1: the 8 threads are
// aligned lanes of one warp at both warp widths (32 and 64), so nothing assumes a width.
// Head sizes D <= 256 (8 x 32 registers per thread); larger D raises NotImplementedError.
// Vendor (vendor/*.cpp): attention composed of rocBLAS / cuBLAS strided-batched SGEMM and the
// MIOpen / cuDNN softmax (MIOpen's MHA problem API has no fp32 causal path); bmm as
// rocblas_sgemm_strided_batched / cublasSgemmStridedBatched.
// Test: PYTHONPATH=python python3 -m pytest -q tests/ops/test_attention.py tests/ops/test_bmm.py -m gpu
#include <type_traits>

#include "gpu_kernels.h"
#include "kernels_elementwise.h"

namespace hg::gpu {
namespace {

constexpr int kGroup = 8;                  // threads per query (or key) row
constexpr int kRows = 16;                  // rows per block
constexpr int kBlock = kGroup * kRows;     // 128 threads
constexpr int kTile = 16;                  // keys (or queries) per shared-memory tile
constexpr int64_t kMaxD = int64_t(kGroup) * 32;

__device__ inline float group_sum(float v) {
  v += HG_SHFL_XOR(v, 4);
  v += HG_SHFL_XOR(v, 2);
  v += HG_SHFL_XOR(v, 1);
  return v;
}

// Copies rows [r0, r0 + n) of x (rows of D floats) into dst (n x D); zero-fills rows n..kTile.
__device__ inline void load_tile(const float* __restrict__ x, int64_t r0, int n, int64_t D,
                                 float* __restrict__ dst) {
  const int64_t total = int64_t(kTile) * D, have = int64_t(n) * D;
  const float* src = x + r0 * D;
  for (int64_t e = threadIdx.x; e < total; e += blockDim.x) dst[e] = e < have ? src[e] : 0.f;
}

// load_tile for rows `ld` floats apart (the forward's keys and values: a KV cache read in place,
// e.g. position-major (L, B, H, D) with ld = B * H * D).
__device__ inline void load_tile_strided(const float* __restrict__ x, int64_t ld, int64_t r0, int n,
                                         int64_t D, float* __restrict__ dst) {
  if (ld == D) return load_tile(x, r0, n, D, dst);
  const int64_t total = int64_t(kTile) * D;
  for (int64_t e = threadIdx.x; e < total; e += blockDim.x) {
    const int64_t r = e / D, d = e - r * D;
    dst[e] = r < n ? x[(r0 + r) * ld + d] : 0.f;
  }
}

template <int DP>
__global__ void __launch_bounds__(kBlock)
attention_forward_kernel(AttentionGeometry g, int64_t qblocks, const float* __restrict__ q,
                         const float* __restrict__ k, const float* __restrict__ v,
                         float* __restrict__ out, float* __restrict__ lse) {
  extern __shared__ float smem[];
  const int64_t D = g.D, Tq = g.Tq, Tk = g.Tk;
  float* Ks = smem;
  float* Vs = smem + kTile * D;
  const int64_t bh = blockIdx.x / qblocks, q0 = (blockIdx.x % qblocks) * kRows;
  const int row = threadIdx.x / kGroup, sub = threadIdx.x % kGroup;
  const int64_t i = q0 + row;
  const bool valid = i < Tq;
  float qr[DP], o[DP];
#pragma unroll
  for (int t = 0; t < DP; ++t) {
    const int64_t d = sub + int64_t(t) * kGroup;
    qr[t] = valid && d < D ? q[(bh * Tq + i) * D + d] * g.scale : 0.f;
    o[t] = 0.f;
  }
  const int64_t off = Tk - Tq;
  const int64_t last = imin(Tq, q0 + kRows) - 1;
  const int64_t kend = g.causal ? imin(Tk, last + off + 1) : Tk;
  const int64_t lim = g.causal ? i + off + 1 : Tk;  // keys j < lim are visible to query i
  float m = -INFINITY, l = 0.f;
  for (int64_t j0 = 0; j0 < kend; j0 += kTile) {
    const int n = int(imin<int64_t>(kTile, kend - j0));
    __syncthreads();  // the previous tile is consumed
    load_tile_strided(k + bh * g.kv_head, g.kv_row, j0, n, D, Ks);
    load_tile_strided(v + bh * g.kv_head, g.kv_row, j0, n, D, Vs);
    __syncthreads();
    float s[kTile];
    float mt = -INFINITY;
#pragma unroll
    for (int jj = 0; jj < kTile; ++jj) {
      float part = 0.f;
#pragma unroll
      for (int t = 0; t < DP; ++t) {
        const int64_t d = sub + int64_t(t) * kGroup;
        if (d < D) part += qr[t] * Ks[jj * D + d];
      }
      const float sv = group_sum(part);
      s[jj] = valid && jj < n && j0 + jj < lim ? sv : -INFINITY;
      mt = fmaxf(mt, s[jj]);
    }
    const float m_new = fmaxf(m, mt);
    if (m_new == -INFINITY) continue;  // nothing visible yet (padding rows)
    const float alpha = expf(m - m_new);
    l *= alpha;
#pragma unroll
    for (int t = 0; t < DP; ++t) o[t] *= alpha;
#pragma unroll
    for (int jj = 0; jj < kTile; ++jj) {
      const float p = s[jj] == -INFINITY ? 0.f : expf(s[jj] - m_new);
      l += p;
#pragma unroll
      for (int t = 0; t < DP; ++t) {
        const int64_t d = sub + int64_t(t) * kGroup;
        if (d < D) o[t] += p * Vs[jj * D + d];
      }
    }
    m = m_new;
  }
  if (!valid) return;
  const float inv = 1.f / l;
#pragma unroll
  for (int t = 0; t < DP; ++t) {
    const int64_t d = sub + int64_t(t) * kGroup;
    if (d < D) out[(bh * Tq + i) * D + d] = o[t] * inv;
  }
  if (sub == 0) lse[bh * Tq + i] = m + logf(l);
}

__global__ void attention_row_dot(int64_t rows, int64_t D, const float* __restrict__ a,
                                  const float* __restrict__ b, float* __restrict__ y) {
  for (int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; r < rows;
       r += int64_t(gridDim.x) * blockDim.x) {
    float acc = 0.f;
    for (int64_t c = 0; c < D; ++c) acc += a[r * D + c] * b[r * D + c];
    y[r] = acc;
  }
}

// dq for (head, 16 queries): k / v tiles in shared memory.
template <int DP>
__global__ void __launch_bounds__(kBlock)
attention_dq_kernel(AttentionGeometry g, int64_t qblocks, const float* __restrict__ q,
                    const float* __restrict__ k, const float* __restrict__ v,
                    const float* __restrict__ dout, const float* __restrict__ lse,
                    const float* __restrict__ Dsum, float* __restrict__ dq) {
  extern __shared__ float smem[];
  const int64_t D = g.D, Tq = g.Tq, Tk = g.Tk;
  float* Ks = smem;
  float* Vs = smem + kTile * D;
  const int64_t bh = blockIdx.x / qblocks, q0 = (blockIdx.x % qblocks) * kRows;
  const int row = threadIdx.x / kGroup, sub = threadIdx.x % kGroup;
  const int64_t i = q0 + row;
  const bool valid = i < Tq;
  float qr[DP], dor[DP], acc[DP];
#pragma unroll
  for (int t = 0; t < DP; ++t) {
    const int64_t d = sub + int64_t(t) * kGroup;
    const bool in = valid && d < D;
    qr[t] = in ? q[(bh * Tq + i) * D + d] * g.scale : 0.f;
    dor[t] = in ? dout[(bh * Tq + i) * D + d] : 0.f;
    acc[t] = 0.f;
  }
  const float li = valid ? lse[bh * Tq + i] : 0.f;
  const float di = valid ? Dsum[bh * Tq + i] : 0.f;
  const int64_t off = Tk - Tq;
  const int64_t last = imin(Tq, q0 + kRows) - 1;
  const int64_t kend = g.causal ? imin(Tk, last + off + 1) : Tk;
  const int64_t lim = g.causal ? i + off + 1 : Tk;
  for (int64_t j0 = 0; j0 < kend; j0 += kTile) {
    const int n = int(imin<int64_t>(kTile, kend - j0));
    __syncthreads();
    load_tile(k + bh * Tk * D, j0, n, D, Ks);
    load_tile(v + bh * Tk * D, j0, n, D, Vs);
    __syncthreads();
#pragma unroll 4
    for (int jj = 0; jj < kTile; ++jj) {
      float ps = 0.f, pd = 0.f;
#pragma unroll
      for (int t = 0; t < DP; ++t) {
        const int64_t d = sub + int64_t(t) * kGroup;
        if (d < D) {
          ps += qr[t] * Ks[jj * D + d];
          pd += dor[t] * Vs[jj * D + d];
        }
      }
      const float s = group_sum(ps), dp = group_sum(pd);
      const bool vis = valid && jj < n && j0 + jj < lim;
      const float ds = vis ? expf(s - li) * (dp - di) : 0.f;
#pragma unroll
      for (int t = 0; t < DP; ++t) {
        const int64_t d = sub + int64_t(t) * kGroup;
        if (d < D) acc[t] += ds * Ks[jj * D + d];
      }
    }
  }
  if (!valid) return;
#pragma unroll
  for (int t = 0; t < DP; ++t) {
    const int64_t d = sub + int64_t(t) * kGroup;
    if (d < D) dq[(bh * Tq + i) * D + d] = acc[t] * g.scale;
  }
}

// dk, dv for (head, 16 keys): q / dout tiles (and their lse, D) in shared memory.
template <int DP>
__global__ void __launch_bounds__(kBlock)
attention_dkdv_kernel(AttentionGeometry g, int64_t kblocks, const float* __restrict__ q,
                      const float* __restrict__ k, const float* __restrict__ v,
                      const float* __restrict__ dout, const float* __restrict__ lse,
                      const float* __restrict__ Dsum, float* __restrict__ dk,
                      float* __restrict__ dv) {
  extern __shared__ float smem[];
  const int64_t D = g.D, Tq = g.Tq, Tk = g.Tk;
  float* Qs = smem;
  float* Os = smem + kTile * D;       // dout tile
  float* Ls = smem + 2 * kTile * D;   // lse tile
  float* Ds = Ls + kTile;             // D tile
  const int64_t bh = blockIdx.x / kblocks, k0 = (blockIdx.x % kblocks) * kRows;
  const int row = threadIdx.x / kGroup, sub = threadIdx.x % kGroup;
  const int64_t j = k0 + row;
  const bool valid = j < Tk;
  float kr[DP], vr[DP], dka[DP], dva[DP];
#pragma unroll
  for (int t = 0; t < DP; ++t) {
    const int64_t d = sub + int64_t(t) * kGroup;
    const bool in = valid && d < D;
    kr[t] = in ? k[(bh * Tk + j) * D + d] * g.scale : 0.f;
    vr[t] = in ? v[(bh * Tk + j) * D + d] : 0.f;
    dka[t] = dva[t] = 0.f;
  }
  const int64_t off = Tk - Tq;
  // The first query that sees key k0 (causal), rounded down to a tile.
  const int64_t first = g.causal ? (k0 - off > 0 ? (k0 - off) / kTile * kTile : 0) : 0;
  for (int64_t i0 = first; i0 < Tq; i0 += kTile) {
    const int n = int(imin<int64_t>(kTile, Tq - i0));
    __syncthreads();
    load_tile(q + bh * Tq * D, i0, n, D, Qs);
    load_tile(dout + bh * Tq * D, i0, n, D, Os);
    if (threadIdx.x < kTile) {
      Ls[threadIdx.x] = threadIdx.x < n ? lse[bh * Tq + i0 + threadIdx.x] : 0.f;
      Ds[threadIdx.x] = threadIdx.x < n ? Dsum[bh * Tq + i0 + threadIdx.x] : 0.f;
    }
    __syncthreads();
#pragma unroll 4
    for (int ii = 0; ii < kTile; ++ii) {
      float ps = 0.f, pd = 0.f;
#pragma unroll
      for (int t = 0; t < DP; ++t) {
        const int64_t d = sub + int64_t(t) * kGroup;
        if (d < D) {
          ps += kr[t] * Qs[ii * D + d];
          pd += vr[t] * Os[ii * D + d];
        }
      }
      const float s = group_sum(ps), dp = group_sum(pd);
      const bool vis = valid && ii < n && (!g.causal || j <= i0 + ii + off);
      const float p = vis ? expf(s - Ls[ii]) : 0.f;
      const float ds = p * (dp - Ds[ii]);
#pragma unroll
      for (int t = 0; t < DP; ++t) {
        const int64_t d = sub + int64_t(t) * kGroup;
        if (d < D) {
          dva[t] += p * Os[ii * D + d];
          dka[t] += ds * Qs[ii * D + d];
        }
      }
    }
  }
  if (!valid) return;
#pragma unroll
  for (int t = 0; t < DP; ++t) {
    const int64_t d = sub + int64_t(t) * kGroup;
    if (d < D) {
      dk[(bh * Tk + j) * D + d] = dka[t] * g.scale;
      dv[(bh * Tk + j) * D + d] = dva[t];
    }
  }
}

// Calls f(std::integral_constant<int, DP>) with DP = ceil(D / 8) rounded up to a power of two.
template <class F>
void with_head_size(const char* op, int64_t D, F&& f) {
  if (D > kMaxD)
    fail(ErrorKind::not_implemented, op, ": the handwritten GPU kernel takes head sizes D <= ",
         kMaxD, ", got D=", D, "; use impl='vendor' (composed GEMM + softmax) for larger heads");
  if (D <= 8) f(std::integral_constant<int, 1>{});
  else if (D <= 16) f(std::integral_constant<int, 2>{});
  else if (D <= 32) f(std::integral_constant<int, 4>{});
  else if (D <= 64) f(std::integral_constant<int, 8>{});
  else if (D <= 128) f(std::integral_constant<int, 16>{});
  else f(std::integral_constant<int, 32>{});
}

unsigned grid_of(const char* op, int64_t blocks) {
  // AMD requires gridDim.x * blockDim.x < 2^32.
  HG_REQUIRE(blocks < (int64_t(1) << 32) / kBlock, op, ": ", blocks,
             " blocks of (head, 16 rows) are more than one GPU launch takes; use fewer heads");
  return static_cast<unsigned>(blocks);
}

void attention_gpu(const AttentionArgs& a) {
  const AttentionGeometry& g = a.g;
  const int64_t qblocks = (g.Tq + kRows - 1) / kRows;
  const unsigned grid = grid_of("attention", g.B * g.H * qblocks);
  const size_t smem = size_t(2 * kTile * g.D) * sizeof(float);
  with_head_size("attention", g.D, [&](auto dp) {
    constexpr int DP = decltype(dp)::value;
    attention_forward_kernel<DP><<<grid, kBlock, smem, current_stream()>>>(g, qblocks, a.q, a.k,
                                                                          a.v, a.out, a.lse);
    HG_LAUNCH_CHECK("attention_forward_kernel");
  });
}

void attention_backward_gpu(const AttentionBackwardArgs& a) {
  const AttentionGeometry& g = a.g;
  const hipStream_t st = current_stream();
  const int64_t rows = g.B * g.H * g.Tq;
  const int64_t qblocks = (g.Tq + kRows - 1) / kRows, kblocks = (g.Tk + kRows - 1) / kRows;
  const unsigned qgrid = grid_of("attention_backward", g.B * g.H * qblocks);
  const unsigned kgrid = grid_of("attention_backward", g.B * g.H * kblocks);
  Tensor Dsum = scratch(rows);
  attention_row_dot<<<blocks_for(rows), kThreads, 0, st>>>(rows, g.D, a.dout, a.out,
                                                           Dsum.data<float>());
  HG_LAUNCH_CHECK("attention_row_dot");
  const size_t smem_q = size_t(2 * kTile * g.D) * sizeof(float);
  const size_t smem_k = size_t(2 * kTile * g.D + 2 * kTile) * sizeof(float);
  with_head_size("attention_backward", g.D, [&](auto dp) {
    constexpr int DP = decltype(dp)::value;
    attention_dq_kernel<DP><<<qgrid, kBlock, smem_q, st>>>(g, qblocks, a.q, a.k, a.v, a.dout,
                                                           a.lse, Dsum.data<float>(), a.dq);
    HG_LAUNCH_CHECK("attention_dq_kernel");
    attention_dkdv_kernel<DP><<<kgrid, kBlock, smem_k, st>>>(g, kblocks, a.q, a.k, a.v, a.dout,
                                                             a.lse, Dsum.data<float>(), a.dk, a.dv);
    HG_LAUNCH_CHECK("attention_dkdv_kernel");
  });
}

void bmm_gpu(const BmmArgs& a) {
  GemmStrided g;
  g.trans_a = a.trans_a;
  g.trans_b = a.trans_b;
  g.M = a.M;
  g.N = a.N;
  g.K = a.K;
  g.batch = a.batch;
  g.alpha = a.alpha;
  g.a = a.a;
  g.lda = a.trans_a ? a.M : a.K;
  g.stride_a = a.M * a.K;
  g.b = a.b;
  g.ldb = a.trans_b ? a.K : a.N;
  g.stride_b = a.K * a.N;
  g.y = a.y;
  g.ldy = a.N;
  g.stride_y = a.M * a.N;
  gemm_strided(g);
}

// ---- the composed vendor variant's handwritten parts -----------------------------------------
// s (heads, Tq, Tk): entries of keys past a query's causal limit set to -inf.
__global__ void attention_causal_mask(int64_t total, int64_t Tq, int64_t Tk, float* __restrict__ s) {
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = e % Tk, i = (e / Tk) % Tq;
    if (j > i + (Tk - Tq)) s[e] = -INFINITY;
  }
}

// lse[r] = log sum_j exp(s[r, j]), one warp per row.
__global__ void attention_rows_lse(int64_t rows, int64_t cols, const float* __restrict__ s,
                                   float* __restrict__ lse) {
  const int lane = threadIdx.x % warpSize;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / warpSize);
  for (int64_t r = int64_t(blockIdx.x) * (blockDim.x / warpSize) + threadIdx.x / warpSize; r < rows;
       r += warps) {
    const float* row = s + r * cols;
    float m = -INFINITY;
    for (int64_t j = lane; j < cols; j += warpSize) m = fmaxf(m, row[j]);
    m = warp_max(m);
    float acc = 0.f;
    for (int64_t j = lane; j < cols; j += warpSize) acc += expf(row[j] - m);
    acc = warp_allsum(acc);
    if (lane == 0) lse[r] = m + logf(acc);
  }
}

GemmStrided batched(bool ta, bool tb, int64_t M, int64_t N, int64_t K, int64_t batch, float alpha,
                    const float* a, const float* b, float* y) {
  GemmStrided g;
  g.trans_a = ta;
  g.trans_b = tb;
  g.M = M, g.N = N, g.K = K, g.batch = batch, g.alpha = alpha;
  g.a = a, g.lda = ta ? M : K, g.stride_a = M * K;
  g.b = b, g.ldb = tb ? K : N, g.stride_b = K * N;
  g.y = y, g.ldy = N, g.stride_y = M * N;
  return g;
}

// s = scale q k^T (masked when causal); k's keys kv_row apart, heads kv_head apart.
Tensor composed_scores(const AttentionGeometry& g, const float* q, const float* k,
                       const ComposedAttentionOps& ops) {
  const int64_t heads = g.B * g.H, total = heads * g.Tq * g.Tk;
  Tensor s = scratch(total);
  GemmStrided qk = batched(false, true, g.Tq, g.Tk, g.D, heads, g.scale, q, k, s.data<float>());
  qk.ldb = g.kv_row;
  qk.stride_b = g.kv_head;
  ops.gemm(qk);
  if (g.causal) {
    attention_causal_mask<<<blocks_for(total), kThreads, 0, current_stream()>>>(total, g.Tq, g.Tk,
                                                                               s.data<float>());
    HG_LAUNCH_CHECK("attention_causal_mask");
  }
  return s;
}

}  // namespace

void attention_composed(const AttentionArgs& a, const ComposedAttentionOps& ops) {
  const AttentionGeometry& g = a.g;
  const int64_t heads = g.B * g.H, rows = heads * g.Tq;
  Tensor s = composed_scores(g, a.q, a.k, ops);
  attention_rows_lse<<<blocks_for(rows, kThreads / 32), kThreads, 0, current_stream()>>>(
      rows, g.Tk, s.data<float>(), a.lse);
  HG_LAUNCH_CHECK("attention_rows_lse");
  Tensor p = scratch(rows * g.Tk);
  ops.softmax(s.data<float>(), p.data<float>(), rows, g.Tk);
  GemmStrided pv = batched(false, false, g.Tq, g.D, g.Tk, heads, 1.f, p.data<float>(), a.v, a.out);
  pv.ldb = g.kv_row;
  pv.stride_b = g.kv_head;
  ops.gemm(pv);
}

void attention_backward_composed(const AttentionBackwardArgs& a, const ComposedAttentionOps& ops) {
  const AttentionGeometry& g = a.g;
  const int64_t heads = g.B * g.H, rows = heads * g.Tq;
  Tensor s = composed_scores(g, a.q, a.k, ops);
  Tensor p = scratch(rows * g.Tk);
  ops.softmax(s.data<float>(), p.data<float>(), rows, g.Tk);
  // dv = p^T dout; dp = dout v^T (into s); ds = softmax backward * scale; dq = ds k; dk = ds^T q
  ops.gemm(batched(true, false, g.Tk, g.D, g.Tq, heads, 1.f, p.data<float>(), a.dout, a.dv));
  ops.gemm(batched(false, true, g.Tq, g.Tk, g.D, heads, 1.f, a.dout, a.v, s.data<float>()));
  Tensor ds = scratch(rows * g.Tk);
  ops.softmax_backward(p.data<float>(), s.data<float>(), ds.data<float>(), rows, g.Tk, g.scale);
  ops.gemm(batched(false, false, g.Tq, g.D, g.Tk, heads, 1.f, ds.data<float>(), a.k, a.dq));
  ops.gemm(batched(true, false, g.Tk, g.D, g.Tq, heads, 1.f, ds.data<float>(), a.q, a.dk));
}

}  // namespace hg::gpu

HG_REGISTER_KERNEL(attention_op, gpu, handwritten, "gpu.attention_flash", &hg::gpu::attention_gpu);
HG_REGISTER_KERNEL(attention_backward_op, gpu, handwritten, "gpu.attention_backward_flash",
                   &hg::gpu::attention_backward_gpu);
HG_REGISTER_KERNEL(bmm_op, gpu, handwritten, "gpu.bmm_gemm_tiled", &hg::gpu::bmm_gpu);
