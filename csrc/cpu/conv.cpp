// 2-D convolution on the CPU, lowered onto GEMM (NCHW, weights (K, C/groups, R, S)).
//   handwritten: im2col + hg::cpu::gemm_handwritten per group; depthwise (groups == C == K)
//                runs the direct kernels of conv_depthwise.cpp instead.
//   vendor:      im2col + OpenBLAS sgemm (hg::cpu::gemm_blas) per group. Why not oneDNN: it has
//                no C++ development package on PyPI that we could link, while im2col + BLAS
//                needs nothing beyond the OpenBLAS wheel we already ship, and on a CPU the
//                lowered GEMM is where nearly all of the time goes anyway.
//   alternate of the forward ("cpu.conv2d_im2col_gemm_unpacked", timed by impl="auto"): im2col +
//                the unpacked small-problem GEMM (gemm_unpacked.cpp) per group, depthwise too;
//                a LeNet layer's per-image GEMMs (e.g. 6 x 784 x 25) are too small to repay packing.
// The handwritten and vendor kernels share this file's drivers and im2col.cpp; only the GEMM they call differs.
// Per image n and group g (Cg = C/groups, Kg = K/groups, col_g = rows [g*Cg*R*S, ...) of
// im2col(x_n), a 1x1/stride-1/unpadded conv uses x_n itself as col):
//   forward:         y_ng  (Kg, PQ)     = w_g (Kg, CgRS) @ col_g (CgRS, PQ)   (+ bias, see below)
//   backward data:   dcol_g (CgRS, PQ)  = w_g^T @ dy_ng;          dx_n = col2im(dcol)
//   backward weight: dw_g  (Kg, CgRS)  += dy_ng (Kg, PQ) @ col_g^T, summed over the batch
// The bias is fused: y_n is filled with it and is the GEMM's C operand (beta = 1), so it is
// added while y is accumulated, with no pass over y afterwards.
// conv2d_bias_act (fused.cpp) runs the same forward with its bias + activation epilogue applied
// by the GEMM per strip of micro-tiles (handwritten) or per (image, group) block after the sgemm
// (vendor); its residual is the GEMM's C operand (beta = 1: y_n holds the residual first).
// Threading: see split_work().
// Narrow output planes (P*Q < kNarrowPlane, e.g. LeNet's 4x4 and 8x8) would make per-image
// GEMMs of a few columns, dominated by call and packing overhead; the forward then lowers B
// images side by side instead (forward_batched): col (C*R*S, B*P*Q), one GEMM per group into a
// scratch block, and each image's slice copied into y with its bias / epilogue.
// Test: PYTHONPATH=python python3 -m pytest -q tests/ops/test_conv.py
// Time: hg.ops.conv2d(x, w, impl="handwritten"|"vendor"); hg.ops.last_impl()["ms"]
#include <algorithm>
#include <memory>

#include "../core/checks.h"
#include "cpu_kernels.h"
#include "gemm_unpacked_kernel.h"
#include "im2col.h"

namespace hg::cpu {

namespace {

using GemmFn = void (*)(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                        const float*, int64_t, float, float*, int64_t);

// How a GEMM routine threads: our handwritten GEMM uses parallel.h's pool; the BLAS has its own.
struct GemmRoutine {
  GemmFn fn;
  bool own_thread_pool;
};
constexpr GemmRoutine kHandwritten{&gemm_handwritten, false};
constexpr GemmRoutine kOpenBlas{&gemm_blas, true};
constexpr GemmRoutine kUnpacked{&gemm_unpacked, false};

// Below this many multiply-adds per image a GEMM is too small to split across threads well.
constexpr double kSmallImageMacs = double(1 << 21);
// OpenBLAS runs an sgemm with M*N*K up to 65536 * GEMM_MULTITHREAD_THRESHOLD (4) on the
// calling thread (interface/gemm.c); above that it wakes its own pool.
constexpr double kBlasSingleThreadMnk = 65536.0 * 4;

// How the images are spread over the CPU threads.
struct Split {
  int image_threads;     // > 1: each thread takes whole images, GEMMs single-threaded
  bool threaded_lowering;  // im2col/col2im of one image split over OpenMP threads
};

// One image per thread (its GEMM single-threaded: nested OpenMP is off) needs no
// synchronisation and keeps each thread's col buffer in its own cache. For our GEMM it is chosen
// when the images split evenly over the threads or are plentiful, or when one image's GEMM is
// too small to split; otherwise images go one at a time, lowering and GEMM threaded inside.
// The BLAS must not alternate with our OpenMP regions: its workers busy-wait after each call and
// would take the cores an OpenMP region needs, and called from several threads at once each call
// would claim the whole pool. So with the BLAS, images go over OpenMP threads only when each
// product is small enough to stay on the calling thread; otherwise the BLAS threads each
// product and the lowering stays on the calling thread.
Split split_work(int64_t units, double macs, int64_t groups, const GemmRoutine& gemm,
                 int T = available_threads()) {
  const int spread = int(std::min<int64_t>(T, units));
  if (T <= 1 || units <= 1) return {1, !gemm.own_thread_pool};
  if (gemm.own_thread_pool) return {macs <= kBlasSingleThreadMnk ? spread : 1, false};
  if (units % T == 0 || units >= 4 * T || macs * double(groups) < kSmallImageMacs)
    return {spread, false};
  return {1, true};
}

// The split for one image per unit (`macs`: one group's product for one image).
Split split_images(const ConvGeometry& g, const GemmRoutine& gemm, int T = available_threads()) {
  const double Cg = double(g.C / g.groups), Kg = double(g.K / g.groups);
  return split_work(g.N, Kg * Cg * double(g.R * g.S * g.P * g.Q), g.groups, gemm, T);
}

// Per-group GEMM sizes and per-image strides.
struct Lowered {
  int64_t Cg, Kg, PQ, HW, CRSg, col_size;
  bool identity;
  explicit Lowered(const ConvGeometry& g)
      : Cg(g.C / g.groups), Kg(g.K / g.groups), PQ(g.P * g.Q), HW(g.H * g.W),
        CRSg(Cg * g.R * g.S), col_size(g.C * g.R * g.S * g.P * g.Q),
        identity(im2col_is_identity(g)) {}
};

std::unique_ptr<float[]> scratch(int64_t n) {
  return std::unique_ptr<float[]>(new float[std::max<int64_t>(n, 1)]);
}

// The 32-bit-index BLAS takes every GEMM size as an int; checked here, before any parallel
// region (an exception must not leave one).
void require_blas_sizes(const ConvGeometry& g) {
  const Lowered L(g);
  const int64_t limit = 0x7fffffff;
  HG_REQUIRE(L.CRSg <= limit && L.PQ <= limit && L.Kg <= limit, "conv2d: a per-image GEMM of (",
             L.Kg, ", ", L.CRSg, ", ", L.PQ, ") exceeds the 32-bit BLAS; use impl='handwritten'");
}

// Calls image(n, col, threaded_lowering) for every unit n < N (an image, or a chunk of images
// in forward_batched): spread over the split's threads with a col buffer each, or one after the
// other.
template <class F>
void for_each_image(int64_t N, Split split, float* col, int64_t col_size, F&& image) {
  if (split.image_threads > 1) {
    parallel_for(N, split.image_threads,
                 [&](int64_t n) { image(n, col + parallel_slot() * col_size, false); });
  } else {
    for (int64_t n = 0; n < N; ++n) image(n, col, split.threaded_lowering);
  }
}

// Output planes with fewer pixels than this are lowered several images at a time.
constexpr int64_t kNarrowPlane = 256;

// Padded input planes up to this many pixels are small enough to copy whole (im2col_images).
constexpr int64_t kSmallPlane = 4096;

// y[i] = t[i] + add over a row of an output block.
void copy_row_plus(const float* __restrict t, float add, float* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = t[i] + add;
}
// y[i] = t[i] + r[i]; r may be y itself (each element is read before it is written).
void add_rows(const float* __restrict t, const float* r, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = t[i] + r[i];
}

// Images per forward GEMM: 1 for a wide output plane or a large input plane; otherwise enough
// images for ~kNarrowPlane columns.
int64_t images_per_gemm(const ConvGeometry& g) {
  const int64_t PQ = g.P * g.Q, padded = (g.H + 2 * g.pad_h) * (g.W + 2 * g.pad_w);
  if (PQ >= kNarrowPlane || padded > kSmallPlane || g.N <= 1 || PQ == 0) return 1;
  return std::min<int64_t>(g.N, (kNarrowPlane + PQ - 1) / PQ);
}

// The forward for narrow planes, B images at a time: their col blocks side by side in one col
// (C*R*S, B*PQ); per group one GEMM tmp (Kg, B*PQ) = w_g @ col_g; then each image's (Kg, PQ)
// slice of tmp is copied into y, adding the bias (conv2d) or the residual (conv2d_bias_act, read
// just before the same element of y is written, so it may be y itself), and the epilogue runs on
// it while it is in cache (conv2d_bias_act).
void forward_batched(const ConvForwardArgs& a, const GemmRoutine& routine, const FusedEpilogue* epi,
                     const float* residual, int64_t B) {
  const ConvGeometry& g = a.g;
  const Lowered L(g);
  const int64_t chunks = (g.N + B - 1) / B, ld = B * L.PQ;
  const double macs = double(L.Kg) * double(L.CRSg) * double(ld);  // one group, one chunk
  const Split split = split_work(chunks, macs, g.groups, routine);
  const int64_t col_size = g.C * g.R * g.S * ld, tmp_size = L.Kg * ld;
  const int64_t unit = col_size + tmp_size + B * (g.H + 2 * g.pad_h) * (g.W + 2 * g.pad_w);
  auto buf = scratch(unit * split.image_threads);
  std::unique_ptr<int32_t[]> taps(new int32_t[size_t(ld)]);
  im2col_images_taps(g, B, taps.get());
  for_each_image(chunks, split, buf.get(), unit, [&](int64_t chunk, float* col, bool) {
    float* tmp = col + col_size;
    const int64_t n0 = chunk * B, nb = std::min(B, g.N - n0);
    im2col_images(g, a.x + n0 * g.C * L.HW, nb, col, ld, tmp + tmp_size, taps.get());
    for (int64_t grp = 0; grp < g.groups; ++grp) {
      routine.fn(false, false, L.Kg, nb * L.PQ, L.CRSg, 1.f, a.w + grp * L.Kg * L.CRSg, L.CRSg,
                 col + grp * L.CRSg * ld, ld, 0.f, tmp, ld);
      GemmEpilogue e{epi ? *epi : FusedEpilogue{}, /*bias_per_row=*/true};
      if (epi && epi->bias) e.op.bias = epi->bias + grp * L.Kg;
      for (int64_t b = 0; b < nb; ++b) {
        const int64_t block = ((n0 + b) * g.K + grp * L.Kg) * L.PQ;
        float* yb = a.y + block;
        for (int64_t k = 0; k < L.Kg; ++k) {
          const float* t = tmp + k * ld + b * L.PQ;
          if (residual) {
            add_rows(t, residual + block + k * L.PQ, yb + k * L.PQ, L.PQ);
          } else {
            copy_row_plus(t, a.bias ? a.bias[grp * L.Kg + k] : 0.f, yb + k * L.PQ, L.PQ);
          }
        }
        if (epi) apply_epilogue(e, 0, 0, L.Kg, L.PQ, yb, L.PQ);
      }
    }
  });
}

// y = conv(x, w) (+ bias). With `epi` (conv2d_bias_act), y_ng = act(w_g @ col_g + bias_g) per
// (image, group): our GEMM applies it per strip of micro-tiles (gemm_handwritten_epilogue);
// after the BLAS, one pass over the group's block, which was just written (apply_epilogue).
// With a `residual` (conv2d_bias_act), y_n starts as it (copied unless it is y itself) and the
// GEMM accumulates onto it (beta = 1) before the epilogue.
void forward_lowered(const ConvForwardArgs& a, const GemmRoutine& routine,
                     const FusedEpilogue* epi = nullptr, const float* residual = nullptr) {
  const ConvGeometry& g = a.g;
  if (const int64_t B = images_per_gemm(g); B > 1)
    return forward_batched(a, routine, epi, residual, B);
  const GemmFn gemm = routine.fn;
  const Lowered L(g);
  const Split split = split_images(g, routine);
  const int64_t col_size = L.identity ? 0 : L.col_size;
  auto col = scratch(col_size * split.image_threads);
  for_each_image(g.N, split, col.get(), col_size, [&](int64_t n, float* colbuf, bool threaded) {
    const float* xn = a.x + n * g.C * L.HW;
    if (!L.identity) im2col(g, xn, colbuf, threaded);
    const float* cols = L.identity ? xn : colbuf;
    float* yn = a.y + n * g.K * L.PQ;
    if (a.bias) {
      for (int64_t k = 0; k < g.K; ++k) std::fill(yn + k * L.PQ, yn + (k + 1) * L.PQ, a.bias[k]);
    }
    const float beta = residual ? 1.f : 0.f;
    if (residual && residual + n * g.K * L.PQ != yn) {
      std::copy(residual + n * g.K * L.PQ, residual + (n + 1) * g.K * L.PQ, yn);
    }
    for (int64_t grp = 0; grp < g.groups; ++grp) {
      const float* wg = a.w + grp * L.Kg * L.CRSg;
      const float* cg = cols + grp * L.CRSg * L.PQ;
      float* yg = yn + grp * L.Kg * L.PQ;
      if (!epi) {
        gemm(false, false, L.Kg, L.PQ, L.CRSg, 1.f, wg, L.CRSg, cg, L.PQ, a.bias ? 1.f : 0.f, yg,
             L.PQ);
        continue;
      }
      GemmEpilogue e{*epi, /*bias_per_row=*/true};
      if (epi->bias) e.op.bias = epi->bias + grp * L.Kg;
      if (gemm == &gemm_handwritten) {
        gemm_handwritten_epilogue(false, false, L.Kg, L.PQ, L.CRSg, wg, L.CRSg, cg, L.PQ, yg,
                                  L.PQ, e, beta);
      } else {
        gemm(false, false, L.Kg, L.PQ, L.CRSg, 1.f, wg, L.CRSg, cg, L.PQ, beta, yg, L.PQ);
        apply_epilogue(e, 0, 0, L.Kg, L.PQ, yg, L.PQ);
      }
    }
  });
}

void backward_data_lowered(const ConvBackwardDataArgs& a, const GemmRoutine& routine) {
  const ConvGeometry& g = a.g;
  const GemmFn gemm = routine.fn;
  const Lowered L(g);
  const Split split = split_images(g, routine);
  const int64_t col_size = L.identity ? 0 : L.col_size;
  auto col = scratch(col_size * split.image_threads);
  for_each_image(g.N, split, col.get(), col_size, [&](int64_t n, float* dcol, bool threaded) {
    const float* dyn = a.dy + n * g.K * L.PQ;
    float* dxn = a.dx + n * g.C * L.HW;
    float* out = L.identity ? dxn : dcol;  // identity: dcol is dx_n itself
    for (int64_t grp = 0; grp < g.groups; ++grp) {
      gemm(true, false, L.CRSg, L.PQ, L.Kg, 1.f, a.w + grp * L.Kg * L.CRSg, L.CRSg,
           dyn + grp * L.Kg * L.PQ, L.PQ, 0.f, out + grp * L.CRSg * L.PQ, L.PQ);
    }
    if (!L.identity) col2im(g, dcol, dxn, threaded);
  });
}

// The images are cut into T contiguous runs, T from the configured thread count (not from what
// the pool can get right now), so the summation order and the result depend on set_num_threads
// alone. Each run is summed into its own dw (run 0 straight into a.dw, the others into partial
// buffers) by whichever thread claims it, then the partials are added into a.dw in run order.
void backward_weight_lowered(const ConvBackwardWeightArgs& a, const GemmRoutine& routine) {
  const ConvGeometry& g = a.g;
  const GemmFn gemm = routine.fn;
  const Lowered L(g);
  const Split split = split_images(g, routine, in_parallel() ? 1 : num_threads());
  const int T = split.image_threads;
  const int workers = std::min(T, available_threads());
  const int64_t col_size = L.identity ? 0 : L.col_size;
  const int64_t dw_size = g.K * L.CRSg;
  auto col = scratch(col_size * T);
  auto partial = scratch(dw_size * (T - 1));
  auto image = [&](int64_t n, float* colbuf, float* dw, float beta, bool threaded) {
    const float* xn = a.x + n * g.C * L.HW;
    if (!L.identity) im2col(g, xn, colbuf, threaded);
    const float* cols = L.identity ? xn : colbuf;
    const float* dyn = a.dy + n * g.K * L.PQ;
    for (int64_t grp = 0; grp < g.groups; ++grp) {
      gemm(false, true, L.Kg, L.CRSg, L.PQ, 1.f, dyn + grp * L.Kg * L.PQ, L.PQ,
           cols + grp * L.CRSg * L.PQ, L.PQ, beta, dw + grp * L.Kg * L.CRSg, L.CRSg);
    }
  };
  if (T == 1) {
    for (int64_t n = 0; n < g.N; ++n) {
      image(n, col.get(), a.dw, n == 0 ? 0.f : 1.f, split.threaded_lowering);
    }
    return;
  }
  parallel_tasks(T, workers, [&](int64_t t) {
    const int64_t n0 = g.N * t / T, n1 = g.N * (t + 1) / T;  // T <= N: never empty
    float* dw = t == 0 ? a.dw : partial.get() + (t - 1) * dw_size;
    float* colbuf = col.get() + parallel_slot() * col_size;
    for (int64_t n = n0; n < n1; ++n) image(n, colbuf, dw, n == n0 ? 0.f : 1.f, false);
  });
  const float* __restrict parts = partial.get();
  float* __restrict out = a.dw;
  parallel_range(dw_size, workers, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      float sum = out[i];
      for (int u = 0; u < T - 1; ++u) sum += parts[u * dw_size + i];
      out[i] = sum;
    }
  }, 16);
}

void conv2d_forward_handwritten(const ConvForwardArgs& a) {
  if (depthwise_direct(a.g)) conv2d_depthwise_forward(a);
  else forward_lowered(a, kHandwritten);
}
void conv2d_backward_data_handwritten(const ConvBackwardDataArgs& a) {
  if (depthwise_direct(a.g)) conv2d_depthwise_backward_data(a);
  else backward_data_lowered(a, kHandwritten);
}
void conv2d_backward_weight_handwritten(const ConvBackwardWeightArgs& a) {
  if (depthwise_direct(a.g)) conv2d_depthwise_backward_weight(a);
  else backward_weight_lowered(a, kHandwritten);
}
void conv2d_forward_unpacked(const ConvForwardArgs& a) { forward_lowered(a, kUnpacked); }
// Winograd where it applies (conv_winograd.cpp), else the default kernel.
void conv2d_forward_winograd(const ConvForwardArgs& a) {
  if (!conv2d_winograd_forward(a)) conv2d_forward_handwritten(a);
}
void conv2d_backward_data_winograd(const ConvBackwardDataArgs& a) {
  if (!conv2d_winograd_backward_data(a)) conv2d_backward_data_handwritten(a);
}
void conv2d_backward_weight_winograd(const ConvBackwardWeightArgs& a) {
  if (!conv2d_winograd_backward_weight(a)) conv2d_backward_weight_handwritten(a);
}
// Direct where it applies (conv_direct.cpp), else the default kernel.
void conv2d_forward_direct(const ConvForwardArgs& a) {
  if (!conv2d_direct_forward(a)) conv2d_forward_handwritten(a);
}
void conv2d_backward_weight_direct(const ConvBackwardWeightArgs& a) {
  if (!conv2d_direct_backward_weight(a)) conv2d_backward_weight_handwritten(a);
}
void conv2d_backward_data_direct(const ConvBackwardDataArgs& a) {
  if (!conv2d_direct_backward_data(a)) conv2d_backward_data_handwritten(a);
}
void conv2d_forward_direct_kvec(const ConvForwardArgs& a) {
  if (!conv2d_direct_kvec_forward(a)) conv2d_forward_handwritten(a);
}
void conv2d_backward_weight_direct_kvec(const ConvBackwardWeightArgs& a) {
  if (!conv2d_direct_kvec_backward_weight(a)) conv2d_backward_weight_handwritten(a);
}
void conv2d_backward_weight_direct_taps(const ConvBackwardWeightArgs& a) {
  if (!conv2d_taps_backward_weight(a)) conv2d_backward_weight_handwritten(a);
}
void conv2d_forward_vendor(const ConvForwardArgs& a) {
  require_blas_sizes(a.g);
  forward_lowered(a, kOpenBlas);
}
void conv2d_backward_data_vendor(const ConvBackwardDataArgs& a) {
  require_blas_sizes(a.g);
  backward_data_lowered(a, kOpenBlas);
}
void conv2d_backward_weight_vendor(const ConvBackwardWeightArgs& a) {
  require_blas_sizes(a.g);
  backward_weight_lowered(a, kOpenBlas);
}

}  // namespace

void conv2d_bias_act_lowered(const ConvBiasActArgs& a, bool vendor) {
  ConvForwardArgs c;
  c.g = a.g;
  c.x = a.x;
  c.w = a.w;
  c.y = a.y;
  if (vendor) require_blas_sizes(a.g);
  forward_lowered(c, vendor ? kOpenBlas : kHandwritten, &a.epi, a.residual);
}

}  // namespace hg::cpu

HG_REGISTER_KERNEL(conv2d_forward_op, cpu, handwritten, "cpu.conv2d_im2col_gemm|depthwise_direct",
                   &hg::cpu::conv2d_forward_handwritten);
HG_REGISTER_ALTERNATE(conv2d_forward_op, cpu, "cpu.conv2d_im2col_gemm_unpacked",
                      &hg::cpu::conv2d_forward_unpacked);
HG_REGISTER_ALTERNATE(conv2d_forward_op, cpu, "cpu.conv2d_winograd_f2x3|im2col_gemm",
                      &hg::cpu::conv2d_forward_winograd);
HG_REGISTER_ALTERNATE(conv2d_backward_data_op, cpu, "cpu.conv2d_winograd_f2x3|gemm_col2im",
                      &hg::cpu::conv2d_backward_data_winograd);
HG_REGISTER_ALTERNATE(conv2d_forward_op, cpu, "cpu.conv2d_direct_flat|im2col_gemm",
                      &hg::cpu::conv2d_forward_direct);
HG_REGISTER_ALTERNATE(conv2d_backward_weight_op, cpu, "cpu.conv2d_direct_flat|im2col_gemm",
                      &hg::cpu::conv2d_backward_weight_direct);
HG_REGISTER_ALTERNATE(conv2d_forward_op, cpu, "cpu.conv2d_direct_kvec|im2col_gemm",
                      &hg::cpu::conv2d_forward_direct_kvec);
HG_REGISTER_ALTERNATE(conv2d_backward_weight_op, cpu, "cpu.conv2d_direct_kvec|im2col_gemm",
                      &hg::cpu::conv2d_backward_weight_direct_kvec);
HG_REGISTER_ALTERNATE(conv2d_backward_data_op, cpu, "cpu.conv2d_direct|gemm_col2im",
                      &hg::cpu::conv2d_backward_data_direct);
HG_REGISTER_ALTERNATE(conv2d_backward_weight_op, cpu, "cpu.conv2d_winograd_f2x3|im2col_gemm",
                      &hg::cpu::conv2d_backward_weight_winograd);
HG_REGISTER_KERNEL(conv2d_backward_data_op, cpu, handwritten,
                   "cpu.conv2d_gemm_col2im|depthwise_direct",
                   &hg::cpu::conv2d_backward_data_handwritten);
HG_REGISTER_KERNEL(conv2d_backward_weight_op, cpu, handwritten,
                   "cpu.conv2d_im2col_gemm|depthwise_direct",
                   &hg::cpu::conv2d_backward_weight_handwritten);
HG_REGISTER_KERNEL(conv2d_forward_op, cpu, vendor, "cpu.conv2d_im2col_openblas",
                   &hg::cpu::conv2d_forward_vendor);
HG_REGISTER_KERNEL(conv2d_backward_data_op, cpu, vendor, "cpu.conv2d_openblas_col2im",
                   &hg::cpu::conv2d_backward_data_vendor);
HG_REGISTER_KERNEL(conv2d_backward_weight_op, cpu, vendor, "cpu.conv2d_im2col_openblas",
                   &hg::cpu::conv2d_backward_weight_vendor);
HG_REGISTER_ALTERNATE(conv2d_backward_weight_op, cpu, "cpu.conv2d_direct_taps|im2col_gemm",
                      &hg::cpu::conv2d_backward_weight_direct_taps);
