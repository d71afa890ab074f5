// rocBLAS wrapper (AMD builds with HIPGRAD_HAVE_ROCBLAS): gpu vendor kernels of gemm and qgemm.
//   gpu.rocblas_sgemm  y = alpha op(a) op(b) + beta c, row-major, as one rocblas_sgemm on the
//                      column-major transposes (y^T = op(b)^T op(a)^T: operands swapped, m = N,
//                      n = M); with c, c is first copied into y and rocBLAS applies beta to it.
//   gpu.rocblas_gemm_ex_int8+epilogue  qgemm: acc^T = wq xq^T as one rocblas_gemm_ex (i8_r
//                      inputs, i32_r output and compute, unpacked int8, wq transposed) into
//                      scratch memory, then hipgrad's epilogue kernel (dequantize, bias,
//                      activation). Only where K and N are multiples of 4 and xq, wq 4-byte
//                      aligned (the int8 kernels' rules), and where this rocBLAS multiplies
//                      plain int8 on the device (rocblas_int8_unpacked); else gpu.qgemm_int8_tiled.
//   gpu.rocblas_sgemm+epilogue_pass  linear_bias_act: that sgemm (y = x w^T), then bias + activation
//                     in one handwritten pass over y (fused.hip's fused_epilogue_pass).
// One handle per device (created with that device current, as rocBLAS requires), bound to
// hipgrad's stream of that device at every call; pointer mode host; default math (full FP32).
// rocBLAS owns and grows its workspace itself. Every status is checked and thrown as
// hg::BackendError ("rocBLAS", status, call, file:line, rocblas_status_to_string).
//
// Test:  PYTHONPATH=python python3 -m pytest -q tests/ops/test_gemm.py   (device gpu, impl vendor)
// Bench: python3 bench/bench_gemm.py --device gpu
#include "../../core/build_facts.h"
#include "../gpu_kernels.h"
#include "../kernels_elementwise.h"
#include "../runtime.h"

#if HIPGRAD_HAVE_ROCBLAS
#if __has_include(<rocblas/rocblas.h>)
#include <rocblas/rocblas.h>
#else
#include <rocblas.h>
#endif

#include <climits>
#include <cstdint>
#include <map>
#include <mutex>

#define HG_ROCBLAS_CHECK(call)                                                                 \
  do {                                                                                         \
    const rocblas_status hg_st_ = (call);                                                      \
    if (hg_st_ != rocblas_status_success)                                                      \
      throw ::hg::BackendError("rocBLAS", static_cast<long long>(hg_st_), #call, HG_LOCATION, \
                               rocblas_status_to_string(hg_st_));                              \
  } while (0)

namespace hg::gpu {
namespace {

rocblas_handle rocblas_handle_for(int device) {
  static std::mutex mu;
  static std::map<int, rocblas_handle> handles;  // kept for the process (see cublas.cpp)
  std::lock_guard<std::mutex> lock(mu);
  auto it = handles.find(device);
  if (it == handles.end()) {
    rocblas_handle h = nullptr;
    HG_ROCBLAS_CHECK(rocblas_create_handle(&h));
    HG_ROCBLAS_CHECK(rocblas_set_pointer_mode(h, rocblas_pointer_mode_host));
    it = handles.emplace(device, h).first;
  }
  HG_ROCBLAS_CHECK(rocblas_set_stream(it->second, stream(device)));
  return it->second;
}

void gemm_rocblas(const GemmArgs& g) {
  const int64_t lda = std::max<int64_t>(g.lda, 1), ldb = std::max<int64_t>(g.ldb, 1);
  const int64_t ldy = std::max<int64_t>(g.ldy, 1);
  HG_REQUIRE(g.M <= INT_MAX && g.N <= INT_MAX && g.K <= INT_MAX && lda <= INT_MAX && ldb <= INT_MAX &&
                 ldy <= INT_MAX,
             "gemm: rocBLAS takes 32-bit sizes; got M=", g.M, ", N=", g.N, ", K=", g.K);
  const int device = current_device();
  rocblas_handle h = rocblas_handle_for(device);
  float beta = 0.f;
  if (g.c != nullptr) {
    HG_GPU_CHECK(hipMemcpy2DAsync(g.y, size_t(ldy) * sizeof(float), g.c, size_t(g.N) * sizeof(float),
                                  size_t(g.N) * sizeof(float), size_t(g.M), hipMemcpyDeviceToDevice,
                                  stream(device)));
    beta = g.beta;
  }
  const rocblas_operation op_b = g.trans_b ? rocblas_operation_transpose : rocblas_operation_none;
  const rocblas_operation op_a = g.trans_a ? rocblas_operation_transpose : rocblas_operation_none;
  HG_ROCBLAS_CHECK(rocblas_sgemm(h, op_b, op_a, rocblas_int(g.N), rocblas_int(g.M), rocblas_int(g.K),
                                 &g.alpha, g.b, rocblas_int(ldb), g.a, rocblas_int(lda), &beta, g.y,
                                 rocblas_int(ldy)));
}

// Whether rocblas_gemm_ex multiplies plain (unpacked) row-major int8 on this handle's device.
// rocBLAS 2.38 to 3.x report it with rocblas_query_int8_layout_flag: GPUs before gfx908 take only
// the packed int8x4 layout there (rocblas_gemm_flags_pack_int8x4). Before 2.38, flags 0 meant
// packed everywhere; from 4.0 unpacked is the only layout.
bool rocblas_int8_unpacked(rocblas_handle h) {
#if ROCBLAS_VERSION_MAJOR >= 4
  (void)h;
  return true;
#elif ROCBLAS_VERSION_MAJOR == 3 || (ROCBLAS_VERSION_MAJOR == 2 && ROCBLAS_VERSION_MINOR >= 38)
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wdeprecated-declarations"
  rocblas_gemm_flags flag = rocblas_gemm_flags_none;
  HG_ROCBLAS_CHECK(rocblas_query_int8_layout_flag(h, &flag));
  return flag != rocblas_gemm_flags_pack_int8x4;
#pragma clang diagnostic pop
#else
  (void)h;
  return false;
#endif
}

bool int8_gemm_fits(const QGemmArgs& a) {
  const auto aligned4 = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 4 == 0; };
  return a.K % 4 == 0 && a.N % 4 == 0 && aligned4(a.xq) && aligned4(a.wq) && a.M <= INT_MAX &&
         a.N <= INT_MAX && a.K <= INT_MAX;
}

void qgemm_rocblas(const QGemmArgs& a) {
  if (!int8_gemm_fits(a)) return qgemm_handwritten(a);
  const int device = current_device();
  rocblas_handle h = rocblas_handle_for(device);
  if (!rocblas_int8_unpacked(h)) return qgemm_handwritten(a);
  Scratch acc(size_t(a.M) * size_t(a.N) * sizeof(int32_t));
  int32_t* c = reinterpret_cast<int32_t*>(acc.floats());
  const int32_t one = 1, zero = 0;
  const rocblas_int m = rocblas_int(a.N), n = rocblas_int(a.M), k = rocblas_int(a.K);
  HG_ROCBLAS_CHECK(rocblas_gemm_ex(h, rocblas_operation_transpose, rocblas_operation_none, m, n, k, &one,
                                   a.wq, rocblas_datatype_i8_r, k, a.xq, rocblas_datatype_i8_r, k, &zero,
                                   c, rocblas_datatype_i32_r, m, c, rocblas_datatype_i32_r, m,
                                   rocblas_datatype_i32_r, rocblas_gemm_algo_standard, 0,
                                   rocblas_gemm_flags_none));
  qgemm_epilogue_handwritten(a, c);
}

// linear_bias_act: y = x w^T by the same sgemm (the gemm op with trans_b), then bias +
// activation as one handwritten pass over y (rocBLAS has no epilogue for them).
void linear_bias_act_rocblas(const LinearBiasActArgs& a) {
  GemmArgs g;
  g.trans_b = true;
  g.M = a.M, g.N = a.N, g.K = a.K;
  g.a = a.x, g.lda = a.K;
  g.b = a.w, g.ldb = a.K;
  g.y = a.y, g.ldy = a.N;
  gemm_rocblas(g);
  fused_epilogue_pass(a.epi, a.y, a.M, a.N, 1);
}

}  // namespace
}  // namespace hg::gpu

HG_REGISTER_KERNEL(gemm_op, gpu, vendor, "gpu.rocblas_sgemm", &hg::gpu::gemm_rocblas);
HG_REGISTER_KERNEL(qgemm_op, gpu, vendor,
                   "gpu.rocblas_gemm_ex_int8+epilogue (K or N not a multiple of 4, or unaligned "
                   "operands: gpu.qgemm_int8_tiled)",
                   &hg::gpu::qgemm_rocblas);
HG_REGISTER_KERNEL(linear_bias_act_op, gpu, vendor, "gpu.rocblas_sgemm+epilogue_pass",
                   &hg::gpu::linear_bias_act_rocblas);
HG_REGISTER_VENDOR_LIBRARY(gpu, blas, amd, "rocBLAS", true);
static const bool hg_rocblas_fact = hg::add_build_fact(
    "gpu.vendor.rocblas", HG_STRINGIFY(ROCBLAS_VERSION_MAJOR) "." HG_STRINGIFY(
                              ROCBLAS_VERSION_MINOR) "." HG_STRINGIFY(ROCBLAS_VERSION_PATCH));

// ---- strided-batched SGEMM: bmm, and the GEMMs of the composed attention (miopen.cpp) ----------
namespace hg::gpu {

// Row-major y_b = alpha op(a_b) op(b_b) over the batch by the operand swap (column-major y^T =
// op(b)^T op(a)^T); c is not used (beta = 0).
void gemm_strided_rocblas(const GemmStrided& g) {
  HG_REQUIRE(g.M <= INT_MAX && g.N <= INT_MAX && g.K <= INT_MAX && g.batch <= INT_MAX,
             "bmm: rocBLAS takes 32-bit sizes; got M=", g.M, ", N=", g.N, ", K=", g.K,
             ", batch=", g.batch);
  if (g.M == 0 || g.N == 0 || g.batch == 0) return;
  rocblas_handle h = rocblas_handle_for(current_device());
  const float beta = 0.f;
  const rocblas_operation op_b = g.trans_b ? rocblas_operation_transpose : rocblas_operation_none;
  const rocblas_operation op_a = g.trans_a ? rocblas_operation_transpose : rocblas_operation_none;
  HG_ROCBLAS_CHECK(rocblas_sgemm_strided_batched(
      h, op_b, op_a, rocblas_int(g.N), rocblas_int(g.M), rocblas_int(g.K), &g.alpha, g.b,
      rocblas_int(std::max<int64_t>(g.ldb, 1)), g.stride_b, g.a,
      rocblas_int(std::max<int64_t>(g.lda, 1)), g.stride_a, &beta, g.y,
      rocblas_int(std::max<int64_t>(g.ldy, 1)), g.stride_y, rocblas_int(g.batch)));
}

namespace {
void bmm_rocblas(const BmmArgs& a) {
  GemmStrided g;
  g.trans_a = a.trans_a, g.trans_b = a.trans_b;
  g.M = a.M, g.N = a.N, g.K = a.K, g.batch = a.batch, g.alpha = a.alpha;
  g.a = a.a, g.lda = a.trans_a ? a.M : a.K, g.stride_a = a.M * a.K;
  g.b = a.b, g.ldb = a.trans_b ? a.K : a.N, g.stride_b = a.K * a.N;
  g.y = a.y, g.ldy = a.N, g.stride_y = a.M * a.N;
  gemm_strided_rocblas(g);
}
}  // namespace
}  // namespace hg::gpu

HG_REGISTER_KERNEL(bmm_op, gpu, vendor, "gpu.rocblas_sgemm_strided_batched", &hg::gpu::bmm_rocblas);

#elif defined(HIPGRAD_PLATFORM_AMD)
HG_REGISTER_VENDOR_LIBRARY(gpu, blas, amd, "rocBLAS", false);
static const bool hg_rocblas_fact = hg::add_build_fact("gpu.vendor.rocblas", "not found");
#endif
