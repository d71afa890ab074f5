// Kernels that check the simulated device itself (built only with HIPGRAD_GPU=sim, through the
// same rewrite as csrc/hip/*.hip). hg_sim_selftest(name, ...) runs one scenario and returns the
// launch's status; tests/gpu/test_sim.py calls it through ctypes.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "platform.h"

namespace {

__device__ float warp_sum_full(float v) {
  for (int o = warpSize / 2; o > 0; o /= 2) v += HG_SHFL_DOWN(v, o);
  return v;
}
// The classic wave32 assumption: on a 64-lane wavefront it sums only lanes 0..31 into lane 0.
__device__ float warp_sum_from16(float v) {
  for (int o = 16; o > 0; o /= 2) v += HG_SHFL_DOWN(v, o);
  return v;
}

__global__ void sim_warp_sum(float* out, bool from16) {
  const float v = float(threadIdx.x % warpSize + 1);
  const float s = from16 ? warp_sum_from16(v) : warp_sum_full(v);
  if (threadIdx.x % warpSize == 0) out[threadIdx.x / warpSize] = s;
}

// Every lane checks what each shuffle and vote returns against HIP's definition; out[0] counts
// the mismatches.
__global__ void sim_shuffle_rules(int* out) {
  const int lane = int(threadIdx.x) % warpSize, w = warpSize;
  int bad = 0;
  bad += __shfl_xor(lane, 5) != (lane ^ 5);
  bad += __shfl_down(lane, 3) != (lane + 3 < w ? lane + 3 : lane);
  bad += __shfl_up(lane, 3) != (lane >= 3 ? lane - 3 : lane);
  bad += __shfl(lane, 7, 16) != ((lane & ~15) + 7);
  bad += __shfl_xor(lane, 16, 16) != lane;  // outside the 16-lane segment: own value
  bad += __shfl_down(lane, 1, 8) != ((lane & 7) < 7 ? lane + 1 : lane);
  const unsigned long long b = __ballot(lane % 3 == 0);
  unsigned long long want = 0;
  for (int l = 0; l < w; ++l) if (l % 3 == 0) want |= 1ull << l;
  bad += b != want;
  bad += __any(lane == w - 1) != 1;
  bad += __all(lane < w - 1) != 0;
  bad += __syncthreads_count(1) != int(blockDim.x);
  bad += __syncthreads_or(threadIdx.x == 5) != 1;
  bad += __syncthreads_and(threadIdx.x != 5) != 0;
  atomicAdd(out, bad);
}

__global__ void sim_read_past_end(const float* p, int n, float* out) {
  if (threadIdx.x == 3) out[0] = p[n];
}

__global__ void sim_write_past_end(float* p, int n) {
  if (threadIdx.x == 0) p[n] = 1.f;
}

__global__ void sim_shared_past_end(float* out, int n) {
  extern __shared__ float dyn[];
  dyn[threadIdx.x] = 1.f;
  __syncthreads();
  if (threadIdx.x == 0) out[0] = dyn[n];
}

__global__ void sim_shared_too_big(float* out) {
  __shared__ float big[20000];
  big[threadIdx.x] = 1.f;
  out[0] = big[0];
}

// Lanes 0..31 wait at __syncthreads, lanes 32.. at a shuffle first: on a 64-lane wavefront the
// shuffle waits for lanes 0..31 (at the barrier), a deadlock; at 32 lanes both complete.
__global__ void sim_split_barrier(float* out) {
  float v = float(threadIdx.x);
  if (threadIdx.x < 32) {
    __syncthreads();
  } else {
    v = HG_SHFL_XOR(v, 1);
  }
  out[threadIdx.x] = v;
}

// Thread 0 writes shared memory that thread 1 reads with no barrier between: a race.
__global__ void sim_racy(float* out) {
  __shared__ float s[2];
  if (threadIdx.x == 0) s[0] = 42.f;
  if (threadIdx.x == 1) out[0] = s[0];
}

// Reads one element past a static __shared__ array (n = 4).
__global__ void sim_static_shared_past_end(float* out, int n) {
  __shared__ float a[4];
  if (threadIdx.x < 4) a[threadIdx.x] = 1.f;
  __syncthreads();
  if (threadIdx.x == 0) out[0] = a[n];
}

template <class F>
hipError_t run(F&& f) {
  (void)hipGetLastError();
  f();
  return hipGetLastError();
}

}  // namespace

// Returns the launch's status; result[0..] what the kernel computed; msg the error text.
extern "C" __attribute__((visibility("default"))) int hg_sim_selftest(const char* name, double* result,
                                                                       char* msg, int msg_len) {
  const std::string what = name;
  float* d = nullptr;
  const int n = 1000;
  if (hipMalloc(reinterpret_cast<void**>(&d), 1001 * sizeof(float)) != hipSuccess) return -1;
  float* out = nullptr;
  if (hipMalloc(reinterpret_cast<void**>(&out), 1024 * sizeof(float)) != hipSuccess) return -1;
  hipMemset(out, 0, 1024 * sizeof(float));
  hipError_t st = hipSuccess;
  if (what == "warp_sum" || what == "warp_sum_from16") {
    const bool from16 = what == "warp_sum_from16";
    st = run([&] { sim_warp_sum<<<1, 128>>>(out, from16); });
  } else if (what == "shuffle_rules") {
    st = run([&] { sim_shuffle_rules<<<2, 128>>>(reinterpret_cast<int*>(out)); });
  } else if (what == "read_past_end") {
    float* p = nullptr;
    hipMalloc(reinterpret_cast<void**>(&p), n * sizeof(float));
    st = run([&] { sim_read_past_end<<<1, 64>>>(p, n, out); });
    hipFree(p);
  } else if (what == "write_past_end") {
    float* p = nullptr;
    hipMalloc(reinterpret_cast<void**>(&p), 1001 * sizeof(float));  // 4004 bytes: slack to 4016
    st = run([&] { sim_write_past_end<<<1, 64>>>(p, 1001); });
    hipFree(p);
  } else if (what == "shared_past_end") {
    st = run([&] { sim_shared_past_end<<<1, 64, 64 * sizeof(float)>>>(out, 64); });
  } else if (what == "shared_too_big") {
    st = run([&] { sim_shared_too_big<<<1, 64>>>(out); });
  } else if (what == "split_barrier") {
    st = run([&] { sim_split_barrier<<<1, 64>>>(out); });
  } else if (what == "static_shared_past_end") {
    st = run([&] { sim_static_shared_past_end<<<1, 64>>>(out, 4); });
  } else if (what == "racy") {
    st = run([&] { sim_racy<<<1, 64>>>(out); });
  } else {
    std::snprintf(msg, size_t(msg_len), "no self-test named %s", name);
    return -1;
  }
  std::snprintf(msg, size_t(msg_len), "%s", st == hipSuccess ? "" : hipGetErrorString(st));
  std::vector<float> host(4);
  hipMemcpy(host.data(), out, 4 * sizeof(float), hipMemcpyDeviceToHost);
  for (int i = 0; i < 4; ++i) {
    if (what == "shuffle_rules") {
      int v;
      std::memcpy(&v, &host[size_t(i)], 4);
      result[i] = v;
    } else {
      result[i] = host[size_t(i)];
    }
  }
  hipFree(d);
  hipFree(out);
  return int(st);
}
