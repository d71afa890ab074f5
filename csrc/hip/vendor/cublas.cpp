// cuBLAS wrapper (NVIDIA builds with HIPGRAD_HAVE_CUBLAS): gpu vendor kernels of gemm and qgemm.
//   gpu.cublas_sgemm  y = alpha op(a) op(b) + beta c, row-major, as one cublasSgemm on the
//                     column-major transposes (y^T = op(b)^T op(a)^T: operands swapped, m = N,
//                     n = M); with c, c is first copied into y and cuBLAS applies beta to it.
//   gpu.cublas_gemm_ex_int8+epilogue  qgemm: acc^T = wq xq^T as one cublasGemmEx (CUDA_R_8I
//                     inputs, CUDA_R_32I output, CUBLAS_COMPUTE_32I; "TN": wq transposed) into
//                     scratch memory, then hipgrad's epilogue kernel (dequantize, bias,
//                     activation). Only where the int8 kernels' rules hold (K and N multiples of
//                     4, 4-byte aligned xq and wq); other shapes run gpu.qgemm_int8_tiled.
//   gpu.cublas_sgemm+epilogue_pass  linear_bias_act: that sgemm (y = x w^T), then bias + activation
//                     in one handwritten pass over y (fused.hip's fused_epilogue_pass).
// One handle per device, created on first use and bound to hipgrad's stream of that device at
// every call. Math: CUBLAS_DEFAULT_MATH (full FP32, no TF32) unless HIPGRAD_ALLOW_TF32=1, which
// selects CUBLAS_TF32_TENSOR_OP_MATH. Every status is checked and thrown as hg::BackendError
// ("cuBLAS", status, call, file:line, cublasGetStatusString).
//
// Test:  PYTHONPATH=python python3 -m pytest -q tests/ops/test_gemm.py   (device gpu, impl vendor)
// Bench: python3 bench/bench_gemm.py --device gpu
#include "../../core/build_facts.h"
#include "../gpu_kernels.h"
#include "../kernels_elementwise.h"
#include "../runtime.h"

#if HIPGRAD_HAVE_CUBLAS
#include <cublas_v2.h>

#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#define HG_CUBLAS_CHECK(call)                                                                  \
  do {                                                                                         \
    const cublasStatus_t hg_st_ = (call);                                                      \
    if (hg_st_ != CUBLAS_STATUS_SUCCESS)                                                       \
      throw ::hg::BackendError("cuBLAS", static_cast<long long>(hg_st_), #call, HG_LOCATION,  \
                               cublasGetStatusString(hg_st_));                                 \
  } while (0)

namespace hg::gpu {
namespace {

bool allow_tf32() {
  static const bool allowed = [] {
    const char* e = std::getenv("HIPGRAD_ALLOW_TF32");
    return e != nullptr && std::strcmp(e, "1") == 0;
  }();
  return allowed;
}

cublasHandle_t cublas_handle(int device) {
  static std::mutex mu;
  static std::map<int, cublasHandle_t> handles;  // kept for the process: destroying them at exit
                                                 // could run after the CUDA runtime has shut down
  std::lock_guard<std::mutex> lock(mu);
  auto it = handles.find(device);
  if (it == handles.end()) {
    cublasHandle_t h = nullptr;
    HG_CUBLAS_CHECK(cublasCreate(&h));
    HG_CUBLAS_CHECK(cublasSetMathMode(h, allow_tf32() ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    it = handles.emplace(device, h).first;
  }
  HG_CUBLAS_CHECK(cublasSetStream(it->second, stream(device)));
  return it->second;
}

void gemm_cublas(const GemmArgs& g) {
  const int64_t lda = std::max<int64_t>(g.lda, 1), ldb = std::max<int64_t>(g.ldb, 1);
  const int64_t ldy = std::max<int64_t>(g.ldy, 1);
  HG_REQUIRE(g.M <= INT_MAX && g.N <= INT_MAX && g.K <= INT_MAX && lda <= INT_MAX && ldb <= INT_MAX &&
                 ldy <= INT_MAX,
             "gemm: cuBLAS takes 32-bit sizes; got M=", g.M, ", N=", g.N, ", K=", g.K);
  const int device = current_device();
  cublasHandle_t h = cublas_handle(device);
  float beta = 0.f;
  if (g.c != nullptr) {
    HG_GPU_CHECK(cudaMemcpy2DAsync(g.y, size_t(ldy) * sizeof(float), g.c, size_t(g.N) * sizeof(float),
                                   size_t(g.N) * sizeof(float), size_t(g.M), cudaMemcpyDeviceToDevice,
                                   stream(device)));
    beta = g.beta;
  }
  const cublasOperation_t op_b = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_a = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  HG_CUBLAS_CHECK(cublasSgemm(h, op_b, op_a, int(g.N), int(g.M), int(g.K), &g.alpha, g.b, int(ldb), g.a,
                              int(lda), &beta, g.y, int(ldy)));
}

bool int8_gemm_fits(const QGemmArgs& a) {
  const auto aligned4 = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 4 == 0; };
  return a.K % 4 == 0 && a.N % 4 == 0 && aligned4(a.xq) && aligned4(a.wq) && a.M <= INT_MAX &&
         a.N <= INT_MAX && a.K <= INT_MAX;
}

void qgemm_cublas(const QGemmArgs& a) {
  if (!int8_gemm_fits(a)) return qgemm_handwritten(a);
  const int device = current_device();
  cublasHandle_t h = cublas_handle(device);
  Scratch acc(size_t(a.M) * size_t(a.N) * sizeof(int32_t));
  int32_t* c = reinterpret_cast<int32_t*>(acc.floats());
  const int32_t one = 1, zero = 0;
  HG_CUBLAS_CHECK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, int(a.N), int(a.M), int(a.K), &one, a.wq,
                               CUDA_R_8I, int(a.K), a.xq, CUDA_R_8I, int(a.K), &zero, c, CUDA_R_32I,
                               int(a.N), CUBLAS_COMPUTE_32I, CUBLAS_GEMM_DEFAULT));
  qgemm_epilogue_handwritten(a, c);
}

// linear_bias_act: y = x w^T by the same sgemm (the gemm op with trans_b), then bias +
// activation as one handwritten pass over y (cuBLAS has no epilogue for them).
void linear_bias_act_cublas(const LinearBiasActArgs& a) {
  GemmArgs g;
  g.trans_b = true;
  g.M = a.M, g.N = a.N, g.K = a.K;
  g.a = a.x, g.lda = a.K;
  g.b = a.w, g.ldb = a.K;
  g.y = a.y, g.ldy = a.N;
  gemm_cublas(g);
  fused_epilogue_pass(a.epi, a.y, a.M, a.N, 1);
}

}  // namespace
}  // namespace hg::gpu

HG_REGISTER_KERNEL(gemm_op, gpu, vendor, "gpu.cublas_sgemm", &hg::gpu::gemm_cublas);
HG_REGISTER_KERNEL(qgemm_op, gpu, vendor,
                   "gpu.cublas_gemm_ex_int8+epilogue (K or N not a multiple of 4, or unaligned "
                   "operands: gpu.qgemm_int8_tiled)",
                   &hg::gpu::qgemm_cublas);
HG_REGISTER_KERNEL(linear_bias_act_op, gpu, vendor, "gpu.cublas_sgemm+epilogue_pass",
                   &hg::gpu::linear_bias_act_cublas);
HG_REGISTER_VENDOR_LIBRARY(gpu, blas, nvidia, "cuBLAS", true);
static const bool hg_cublas_fact = hg::add_build_fact(
    "gpu.vendor.cublas", HG_STRINGIFY(CUBLAS_VER_MAJOR) "." HG_STRINGIFY(CUBLAS_VER_MINOR) "." HG_STRINGIFY(
                             CUBLAS_VER_PATCH));

// ---- strided-batched SGEMM: bmm, and the GEMMs of the composed attention (cudnn.cpp) -----------
namespace hg::gpu {

// Row-major y_b = alpha op(a_b) op(b_b) over the batch by the operand swap (column-major y^T =
// op(b)^T op(a)^T); c is not used (beta = 0).
void gemm_strided_cublas(const GemmStrided& g) {
  HG_REQUIRE(g.M <= INT_MAX && g.N <= INT_MAX && g.K <= INT_MAX && g.batch <= INT_MAX,
             "bmm: cuBLAS takes 32-bit sizes; got M=", g.M, ", N=", g.N, ", K=", g.K,
             ", batch=", g.batch);
  if (g.M == 0 || g.N == 0 || g.batch == 0) return;
  cublasHandle_t h = cublas_handle(current_device());
  const float beta = 0.f;
  const cublasOperation_t op_b = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_a = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  HG_CUBLAS_CHECK(cublasSgemmStridedBatched(
      h, op_b, op_a, int(g.N), int(g.M), int(g.K), &g.alpha, g.b, int(std::max<int64_t>(g.ldb, 1)),
      static_cast<long long>(g.stride_b), g.a, int(std::max<int64_t>(g.lda, 1)),
      static_cast<long long>(g.stride_a), &beta, g.y, int(std::max<int64_t>(g.ldy, 1)),
      static_cast<long long>(g.stride_y), int(g.batch)));
}

namespace {
void bmm_cublas(const BmmArgs& a) {
  GemmStrided g;
  g.trans_a = a.trans_a, g.trans_b = a.trans_b;
  g.M = a.M, g.N = a.N, g.K = a.K, g.batch = a.batch, g.alpha = a.alpha;
  g.a = a.a, g.lda = a.trans_a ? a.M : a.K, g.stride_a = a.M * a.K;
  g.b = a.b, g.ldb = a.trans_b ? a.K : a.N, g.stride_b = a.K * a.N;
  g.y = a.y, g.ldy = a.N, g.stride_y = a.M * a.N;
  gemm_strided_cublas(g);
}
}  // namespace
}  // namespace hg::gpu

HG_REGISTER_KERNEL(bmm_op, gpu, vendor, "gpu.cublas_sgemm_strided_batched", &hg::gpu::bmm_cublas);

#elif defined(HIPGRAD_PLATFORM_NVIDIA)
HG_REGISTER_VENDOR_LIBRARY(gpu, blas, nvidia, "cuBLAS", false);
static const bool hg_cublas_fact = hg::add_build_fact("gpu.vendor.cublas", "not found");
#endif
