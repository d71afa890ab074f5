// Collectives over GPU buffers (NCCL on NVIDIA, RCCL on AMD): an interface the vendor wrapper
// (csrc/hip/vendor/nccl.cpp) registers when the build found nccl.h / rccl/rccl.h, so that the
// bindings and hipgrad.distributed need no GPU headers. Rendezvous is the caller's: rank 0 asks
// for a unique id (128 bytes), sends it to the other ranks (hipgrad.distributed uses MPI), and
// every rank creates its communicator from it.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "tensor.h"

namespace hg {

class GpuComm {
 public:
  virtual ~GpuComm() = default;
  // In place over all ranks: sum, or mean (avg) on every rank. t: float32 / float64 / int32 /
  // int64 / int8 / uint8 (avg: floats only) on this communicator's GPU.
  virtual void all_reduce(Tensor& t, bool avg) = 0;
  // Rank root's t into t on every rank.
  virtual void broadcast(Tensor& t, int root) = 0;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual int device() const = 0;
};

struct GpuCollectives {
  std::string library;  // "NCCL 2.32.1" / "RCCL 2.22.3"
  std::string (*unique_id)() = nullptr;
  // After the other ranks got the id; blocks until all nranks joined. device: the GPU index.
  std::unique_ptr<GpuComm> (*create)(const std::string& id, int nranks, int rank, int device) = nullptr;
};

// The registered implementation, or nullptr (no NCCL/RCCL compiled in: GPU tensors are staged
// through host memory by the caller).
const GpuCollectives* gpu_collectives();
bool register_gpu_collectives(const GpuCollectives* c);

}  // namespace hg
