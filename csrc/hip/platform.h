// One source for AMD and NVIDIA. On AMD (hipcc/clang: __HIPCC__ or __HIP__) this includes the HIP
// runtime; on NVIDIA (nvcc, or a host file of the CUDA build: HIPGRAD_GPU_CUDA) it includes the
// CUDA runtime and maps the HIP names hipgrad uses onto CUDA. Kernels never branch on the vendor
// except through the names below:
//   HG_SHFL_XOR(v, mask), HG_SHFL_DOWN(v, delta), HG_SHFL(v, lane)  -- full-warp shuffles at the
//                                                    native width;
//   warpSize (device builtin)                      -- 64 on gfx9/CDNA, 32 on RDNA and NVIDIA;
//   HG_UNROLL_TILE_K                               -- unroll directive of a tile's inner k loop.
// Reductions must be correct at 32 and 64 lanes: loop `for (int o = warpSize / 2; o > 0; o /= 2)`.
// Launches use <<<grid, block, shmem, stream>>> (both compilers accept it) followed by
// HG_LAUNCH_CHECK("kernel_name"); every runtime call goes through HG_GPU_CHECK(call).
#pragma once

#if defined(HIPGRAD_GPU_SIM)
// The simulated device (csrc/hip/sim): host C++ that models HIP's execution on the CPU. It is an
// AMD flavour for the code here (gcnArchName, no vendor libraries).
#define HIPGRAD_PLATFORM_AMD 1
#define HIPGRAD_PLATFORM_SIM 1
#include "sim/sim_runtime.h"
#if defined(HIPGRAD_SIM_DEVICE_CODE)
#include "sim/sim_device.h"
#endif
#define HG_SHFL_XOR(v, mask) __shfl_xor((v), (mask))
#define HG_SHFL_DOWN(v, delta) __shfl_down((v), (delta))
#define HG_SHFL(v, lane) __shfl((v), (lane))
#define HG_GPU_LIBRARY "HIP (simulated)"
#define HG_UNROLL_TILE_K

#elif defined(__HIPCC__) || defined(__HIP__) || defined(HIPGRAD_GPU_HIP)
#define HIPGRAD_PLATFORM_AMD 1
#include <hip/hip_runtime.h>
#define HG_SHFL_XOR(v, mask) __shfl_xor((v), (mask))
#define HG_SHFL_DOWN(v, delta) __shfl_down((v), (delta))
#define HG_SHFL(v, lane) __shfl((v), (lane))
#define HG_GPU_LIBRARY "HIP"
// Unrolling of a register-blocked tile's k loop (gemm_tile.h). Fully unrolled, hip-clang hoists
// every shared-memory read of the slice and runs out of VGPRs (scratch spills); by 2 it does not.
#define HG_UNROLL_TILE_K _Pragma("unroll 2")

#elif defined(__CUDACC__) || defined(HIPGRAD_GPU_CUDA)
#define HIPGRAD_PLATFORM_NVIDIA 1
#include <cuda_runtime.h>
#define HG_SHFL_XOR(v, mask) __shfl_xor_sync(0xffffffffu, (v), (mask))
#define HG_SHFL_DOWN(v, delta) __shfl_down_sync(0xffffffffu, (v), (delta))
#define HG_SHFL(v, lane) __shfl_sync(0xffffffffu, (v), (lane))
#define HG_GPU_LIBRARY "CUDA"
#define HG_UNROLL_TILE_K _Pragma("unroll")

#define hipError_t cudaError_t
#define hipSuccess cudaSuccess
#define hipErrorOutOfMemory cudaErrorMemoryAllocation
#define hipErrorNoDevice cudaErrorNoDevice
#define hipErrorInsufficientDriver cudaErrorInsufficientDriver
#define hipGetErrorString cudaGetErrorString
#define hipGetErrorName cudaGetErrorName
#define hipGetLastError cudaGetLastError
#define hipPeekAtLastError cudaPeekAtLastError
#define hipMalloc cudaMalloc
#define hipFree cudaFree
#define hipMemcpy cudaMemcpy
#define hipMemcpyAsync cudaMemcpyAsync
#define hipMemcpyHostToDevice cudaMemcpyHostToDevice
#define hipMemcpyDeviceToHost cudaMemcpyDeviceToHost
#define hipMemcpyDeviceToDevice cudaMemcpyDeviceToDevice
#define hipMemcpyDefault cudaMemcpyDefault
#define hipMemset cudaMemset
#define hipMemsetAsync cudaMemsetAsync
#define hipMemGetInfo cudaMemGetInfo
#define hipStream_t cudaStream_t
#define hipStreamCreate cudaStreamCreate
#define hipStreamCreateWithFlags cudaStreamCreateWithFlags
#define hipStreamNonBlocking cudaStreamNonBlocking
#define hipStreamDestroy cudaStreamDestroy
#define hipStreamSynchronize cudaStreamSynchronize
#define hipStreamWaitEvent cudaStreamWaitEvent
#define hipEvent_t cudaEvent_t
#define hipEventCreate cudaEventCreate
#define hipEventCreateWithFlags cudaEventCreateWithFlags
#define hipEventDisableTiming cudaEventDisableTiming
#define hipEventRecord cudaEventRecord
#define hipEventSynchronize cudaEventSynchronize
#define hipEventElapsedTime cudaEventElapsedTime
#define hipEventDestroy cudaEventDestroy
#define hipGetDeviceCount cudaGetDeviceCount
#define hipSetDevice cudaSetDevice
#define hipGetDevice cudaGetDevice
#define hipDeviceSynchronize cudaDeviceSynchronize
#define hipDeviceProp_t cudaDeviceProp
#define hipGetDeviceProperties cudaGetDeviceProperties
#define hipRuntimeGetVersion cudaRuntimeGetVersion
#define hipDriverGetVersion cudaDriverGetVersion

#else
#error "csrc/hip/platform.h needs hipcc (AMD) or nvcc / HIPGRAD_GPU_CUDA (NVIDIA)"
#endif

#include "../core/errors.h"

namespace hg::gpu {

// Throws hg::BackendError naming the runtime call, file:line and the runtime's own message.
[[noreturn]] void throw_runtime_error(hipError_t status, const char* call, const char* location);
// The one stream per device that all hipgrad work is queued on; -1: the current device's (the
// dispatcher makes the op's device current before a kernel runs).
hipStream_t stream(int device = -1);
// HIPGRAD_SYNC_DEBUG=1: synchronize after each launch so an asynchronous fault names its kernel.
bool sync_debug();

}  // namespace hg::gpu

#define HG_GPU_CHECK(call)                                                          \
  do {                                                                              \
    hipError_t hg_status_ = (call);                                                 \
    if (hg_status_ != hipSuccess) ::hg::gpu::throw_runtime_error(hg_status_, #call, HG_LOCATION); \
  } while (0)

// After every kernel launch: a bad configuration is caught here, at the launch.
#define HG_LAUNCH_CHECK(kernel_name)                                                     \
  do {                                                                                   \
    hipError_t hg_status_ = hipGetLastError();                                           \
    if (hg_status_ != hipSuccess)                                                        \
      ::hg::gpu::throw_runtime_error(hg_status_, "launch of " kernel_name, HG_LOCATION); \
    if (::hg::gpu::sync_debug()) {                                                       \
      hg_status_ = hipStreamSynchronize(::hg::gpu::stream());                            \
      if (hg_status_ != hipSuccess)                                                      \
        ::hg::gpu::throw_runtime_error(hg_status_, "kernel " kernel_name, HG_LOCATION);  \
    }                                                                                    \
  } while (0)
