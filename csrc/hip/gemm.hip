// GPU GEMM: y = alpha * op(a) @ op(b) + beta * c, row-major, float32, and its strided-batched
// form hg::gpu::gemm_strided (gpu_kernels.h), which other GPU kernels call.
//
// Kernels:
//   tiled (production, "gpu.gemm_tiled"): the main loop of gemm_tile.h. Each 256-thread block
//     computes a 128x128 tile of y (8x8 outputs per thread) or, for small or skinny problems
//     (tile::prefer_large decides), a 64x64 tile (4x4 per thread); slices of op(a) and op(b) (8
//     resp. 16 deep) are staged in shared memory, double buffered, loaded as float4 where the
//     operand's pointer and leading dimension allow. All four transpose cases; any M, N, K (edges
//     are zero-filled on load and masked on store).
//   gpu.gemm_tiled_128x128, gpu.gemm_tiled_64x64: the same kernel with its tile config fixed,
//     registered as alternates of the gemm op, so impl="auto" times both configs per shape
//     instead of trusting the heuristic (impl="handwritten" keeps the heuristic).
//   gpu.gemm_v0 (reference kernel): one thread per element of y, a plain loop over K, for
//     validating the tiled kernel and as the bench's baseline; runs only when forced by name.
// beta == 0 (or c == nullptr) never reads c.
//
// Test: PYTHONPATH=python pytest tests/ops/test_gemm.py tests/gpu (GPU params run where a device
// is visible). Bench: bench/bench_gemm.py (times gpu.gemm_v0 too).
#include <type_traits>

#include "../core/ops.h"
#include "gemm_tile.h"
#include "gpu_kernels.h"

namespace hg::gpu {
namespace {

constexpr int kV0Block = 16;

__global__ void __launch_bounds__(kV0Block * kV0Block) gemm_v0_kernel(GemmStrided g) {
  const int64_t n = int64_t(blockIdx.x) * kV0Block + threadIdx.x;
  const int64_t m = int64_t(blockIdx.y) * kV0Block + threadIdx.y;
  if (m >= g.M || n >= g.N) return;
  for (int64_t bt = blockIdx.z; bt < g.batch; bt += gridDim.z) {
    const float* a = g.a + bt * g.stride_a;
    const float* b = g.b + bt * g.stride_b;
    float acc = 0.f;
    for (int64_t k = 0; k < g.K; ++k) {
      const float av = g.trans_a ? a[k * g.lda + m] : a[m * g.lda + k];
      const float bv = g.trans_b ? b[n * g.ldb + k] : b[k * g.ldb + n];
      acc = fmaf(av, bv, acc);
    }
    float out = g.alpha * acc;
    if (g.c != nullptr) out += g.beta * g.c[bt * g.stride_c + m * g.ldc + n];
    g.y[bt * g.stride_y + m * g.ldy + n] = out;
  }
}

struct GemmEpilogue {
  float* y;
  int64_t ldy, stride_y;
  const float* c;  // nullptr: not read
  int64_t ldc, stride_c;
  float alpha, beta;
  bool vec;  // y (and c) rows aligned to float4

  __device__ void operator()(int64_t batch, int, int64_t m, int64_t n, const float* v,
                             int count) const {
    float* dst = y + batch * stride_y + m * ldy + n;
    const float* src = c != nullptr ? c + batch * stride_c + m * ldc + n : nullptr;
    if (vec && count == 4) {
      float4 out = make_float4(alpha * v[0], alpha * v[1], alpha * v[2], alpha * v[3]);
      if (src != nullptr) {
        const float4 cv = *reinterpret_cast<const float4*>(src);
        out.x += beta * cv.x, out.y += beta * cv.y, out.z += beta * cv.z, out.w += beta * cv.w;
      }
      *reinterpret_cast<float4*>(dst) = out;
    } else {
#pragma unroll
      for (int i = 0; i < 4; ++i)
        if (i < count) dst[i] = alpha * v[i] + (src != nullptr ? beta * src[i] : 0.f);
    }
  }
};

bool rows_aligned(const void* p, int64_t ld, int64_t stride) {
  return tile::aligned16(p) && ld % 4 == 0 && stride % 4 == 0;
}

template <class Cfg, bool kTransA, bool kTransB>
void gemm_tiled(const GemmStrided& g) {
  using LoadA = std::conditional_t<kTransA, tile::LoadOContiguous<Cfg, Cfg::BM>,
                                   tile::LoadKContiguous<Cfg, Cfg::BM>>;
  using LoadB = std::conditional_t<kTransB, tile::LoadKContiguous<Cfg, Cfg::BN>,
                                   tile::LoadOContiguous<Cfg, Cfg::BN>>;
  const bool vec_a = rows_aligned(g.a, g.lda, g.stride_a);
  const bool vec_b = rows_aligned(g.b, g.ldb, g.stride_b);
  const typename LoadA::Params pa{g.a, g.lda, g.stride_a, g.M, vec_a};
  const typename LoadB::Params pb{g.b, g.ldb, g.stride_b, g.N, vec_b};
  const bool vec = rows_aligned(g.y, g.ldy, g.stride_y) &&
                   (g.c == nullptr || rows_aligned(g.c, g.ldc, g.stride_c));
  const GemmEpilogue epi{g.y, g.ldy, g.stride_y, g.c, g.ldc, g.stride_c, g.alpha, g.beta, vec};
  tile::Problem pr;
  pr.M = g.M, pr.N = g.N, pr.K = g.K, pr.nz = g.batch, pr.splits = 1, pr.k_chunk = g.K;
  tile::launch<Cfg, LoadA, LoadB>(pa, pb, epi, pr);
}

template <class Cfg>
void gemm_tiled_any(const GemmStrided& g) {
  if (!g.trans_a && !g.trans_b) gemm_tiled<Cfg, false, false>(g);
  else if (!g.trans_a) gemm_tiled<Cfg, false, true>(g);
  else if (!g.trans_b) gemm_tiled<Cfg, true, false>(g);
  else gemm_tiled<Cfg, true, true>(g);
}

// beta == 0 never reads c (BLAS semantics: c may hold NaN).
GemmStrided without_unused_c(GemmStrided g) {
  if (g.beta == 0.f) g.c = nullptr;
  return g;
}

GemmStrided strided_of(const GemmArgs& a) {
  GemmStrided g;
  g.trans_a = a.trans_a, g.trans_b = a.trans_b;
  g.M = a.M, g.N = a.N, g.K = a.K, g.batch = 1;
  g.alpha = a.alpha, g.beta = a.beta;
  g.a = a.a, g.lda = a.lda;
  g.b = a.b, g.ldb = a.ldb;
  g.c = a.c, g.ldc = a.N;
  g.y = a.y, g.ldy = a.ldy;
  return g;
}

void gemm_op_kernel(const GemmArgs& a) { gemm_strided(strided_of(a)); }
void gemm_op_kernel_v0(const GemmArgs& a) { gemm_strided_v0(strided_of(a)); }

// The tiled kernel with one tile config, whatever the heuristic would pick.
template <class Cfg>
void gemm_op_kernel_fixed(const GemmArgs& a) {
  const GemmStrided g = without_unused_c(strided_of(a));
  if (g.M == 0 || g.N == 0) return;
  gemm_tiled_any<Cfg>(g);
}

}  // namespace

void gemm_strided_v0(const GemmStrided& g0) {
  const GemmStrided g = without_unused_c(g0);
  if (g.M == 0 || g.N == 0 || g.batch == 0) return;
  const int64_t tiles_m = (g.M + kV0Block - 1) / kV0Block;
  const int64_t tiles_n = (g.N + kV0Block - 1) / kV0Block;
  HG_REQUIRE(tiles_m <= 65535, "gpu gemm v0: M = ", g.M, " exceeds the launch grid");
  const unsigned batches = unsigned(g.batch < 65535 ? g.batch : 65535);
  const dim3 grid(unsigned(tiles_n), unsigned(tiles_m), batches);
  gemm_v0_kernel<<<grid, dim3(kV0Block, kV0Block), 0, stream()>>>(g);
  HG_LAUNCH_CHECK("gemm_v0_kernel");
}

void gemm_strided(const GemmStrided& g0) {
  const GemmStrided g = without_unused_c(g0);
  if (g.M == 0 || g.N == 0 || g.batch == 0) return;
  if (tile::prefer_large(g.M, g.N, g.batch)) gemm_tiled_any<tile::Large>(g);
  else gemm_tiled_any<tile::Small>(g);
}

}  // namespace hg::gpu

HG_REGISTER_KERNEL(gemm_op, gpu, handwritten, "gpu.gemm_tiled", &hg::gpu::gemm_op_kernel);
HG_REGISTER_ALTERNATE(gemm_op, gpu, "gpu.gemm_tiled_128x128",
                      &hg::gpu::gemm_op_kernel_fixed<hg::gpu::tile::Large>);
HG_REGISTER_ALTERNATE(gemm_op, gpu, "gpu.gemm_tiled_64x64",
                      &hg::gpu::gemm_op_kernel_fixed<hg::gpu::tile::Small>);
HG_REGISTER_REFERENCE(gemm_op, gpu, "gpu.gemm_v0", &hg::gpu::gemm_op_kernel_v0);
