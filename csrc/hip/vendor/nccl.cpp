// NCCL (NVIDIA, HIPGRAD_HAVE_NCCL: nccl.h) / RCCL (AMD, HIPGRAD_HAVE_RCCL: rccl/rccl.h) wrapper:
// collectives over GPU buffers for hipgrad.distributed. The two libraries share one API (RCCL
// takes hipStream_t where NCCL takes cudaStream_t; platform.h maps the names), so this one file
// serves both:
//   unique_id   ncclGetUniqueId on rank 0 (128 bytes; hipgrad.distributed broadcasts it over MPI)
//   create      ncclCommInitRank on every rank with its GPU current (blocks until all joined)
//   all_reduce  ncclAllReduce in place, ncclSum or ncclAvg
//   broadcast   ncclBroadcast in place from `root`
// Ordering: each call runs on the communicator's own stream, after an event recorded on
// hipgrad's stream of the device (everything queued before, e.g. the backward that wrote the
// gradients, is done first), and hipgrad's stream then waits on an event recorded after the
// collective (later kernels read the result). The host does not block.
// Every status is checked: a failed call throws hg::BackendError ("NCCL" / "RCCL", status, the
// call, file:line, ncclGetErrorString). Registered as hg::gpu_collectives() (core/collectives.h);
// without either library the file registers nothing and the build fact gpu.vendor.nccl says
// "not found" (GPU tensors are then staged through host memory and MPI).
// Compile-checked against the real headers only (no GPU here): see VENDOR_NOTES.md / README.
#include "../../core/build_facts.h"
#include "../../core/checks.h"
#include "../../core/collectives.h"
#include "../runtime.h"

#if HIPGRAD_HAVE_NCCL || HIPGRAD_HAVE_RCCL
#if HIPGRAD_HAVE_RCCL
#include <rccl/rccl.h>
#define HG_NCCL_LIB "RCCL"
#else
#include <nccl.h>
#define HG_NCCL_LIB "NCCL"
#endif

#include <cstring>

#define HG_NCCL_CHECK(call)                                                                  \
  do {                                                                                       \
    const ncclResult_t hg_st_ = (call);                                                      \
    if (hg_st_ != ncclSuccess)                                                               \
      throw ::hg::BackendError(HG_NCCL_LIB, static_cast<long long>(hg_st_), #call,           \
                               HG_LOCATION, ncclGetErrorString(hg_st_));                     \
  } while (0)

namespace hg::gpu {
namespace {

ncclDataType_t nccl_type(const Tensor& t, bool avg) {
  const char* op = avg ? "all_reduce_ (op='avg')" : "collective";
  switch (t.dtype()) {
    case DType::f32: return ncclFloat32;
    case DType::i64: HG_REQUIRE(!avg, op, ": needs a float tensor, got int64"); return ncclInt64;
    case DType::i32: HG_REQUIRE(!avg, op, ": needs a float tensor, got int32"); return ncclInt32;
    case DType::i8: HG_REQUIRE(!avg, op, ": needs a float tensor, got int8"); return ncclInt8;
    case DType::u8: HG_REQUIRE(!avg, op, ": needs a float tensor, got uint8"); return ncclUint8;
  }
  fail(ErrorKind::type, op, ": unsupported dtype");
}

class NcclComm final : public GpuComm {
 public:
  NcclComm(const std::string& id, int nranks, int rank, int device)
      : rank_(rank), size_(nranks), device_(device) {
    HG_REQUIRE(id.size() == sizeof(ncclUniqueId), "distributed: the " HG_NCCL_LIB " unique id must be ",
               sizeof(ncclUniqueId), " bytes, got ", id.size());
    HG_REQUIRE(nranks >= 1 && rank >= 0 && rank < nranks, "distributed: rank ", rank,
               " is not in [0, ", nranks, ")");
    ncclUniqueId uid;
    std::memcpy(&uid, id.data(), sizeof(uid));
    DeviceGuard guard(device);
    HG_GPU_CHECK(hipStreamCreateWithFlags(&comm_stream_, hipStreamNonBlocking));
    HG_GPU_CHECK(hipEventCreateWithFlags(&before_, hipEventDisableTiming));
    HG_GPU_CHECK(hipEventCreateWithFlags(&after_, hipEventDisableTiming));
    HG_NCCL_CHECK(ncclCommInitRank(&comm_, nranks, uid, rank));
  }
  ~NcclComm() override {
    DeviceGuard guard(device_);
    if (comm_) ncclCommDestroy(comm_);  // errors at teardown are not reported
    if (after_) (void)hipEventDestroy(after_);
    if (before_) (void)hipEventDestroy(before_);
    if (comm_stream_) (void)hipStreamDestroy(comm_stream_);
  }

  void all_reduce(Tensor& t, bool avg) override {
    const ncclDataType_t type = nccl_type(t, avg);
    if (t.numel() == 0) return;
    run([&](hipStream_t s) {
      HG_NCCL_CHECK(ncclAllReduce(t.raw(), t.raw(), size_t(t.numel()), type, avg ? ncclAvg : ncclSum,
                                  comm_, s));
    }, t);
  }

  void broadcast(Tensor& t, int root) override {
    HG_REQUIRE(root >= 0 && root < size_, "broadcast_: root must be a rank in 0..", size_ - 1,
               ", got ", root);
    const ncclDataType_t type = nccl_type(t, false);
    if (t.numel() == 0) return;
    run([&](hipStream_t s) {
      HG_NCCL_CHECK(ncclBroadcast(t.raw(), t.raw(), size_t(t.numel()), type, root, comm_, s));
    }, t);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int device() const override { return device_; }

 private:
  template <class F>
  void run(F&& call, const Tensor& t) {
    HG_REQUIRE(t.device().is_gpu() && t.device().index == device_, "distributed: the tensor is on ",
               t.device().str(), " but this rank's " HG_NCCL_LIB " communicator is on gpu:", device_);
    DeviceGuard guard(device_);
    const hipStream_t work = stream(device_);
    HG_GPU_CHECK(hipEventRecord(before_, work));               // what wrote t is queued before
    HG_GPU_CHECK(hipStreamWaitEvent(comm_stream_, before_, 0));
    call(comm_stream_);
    HG_GPU_CHECK(hipEventRecord(after_, comm_stream_));         // later kernels read the result
    HG_GPU_CHECK(hipStreamWaitEvent(work, after_, 0));
  }

  ncclComm_t comm_ = nullptr;
  hipStream_t comm_stream_ = nullptr;
  hipEvent_t before_ = nullptr, after_ = nullptr;
  int rank_, size_, device_;
};

std::string unique_id() {
  ncclUniqueId uid;
  HG_NCCL_CHECK(ncclGetUniqueId(&uid));
  return std::string(reinterpret_cast<const char*>(&uid), sizeof(uid));
}

std::unique_ptr<GpuComm> create(const std::string& id, int nranks, int rank, int device) {
  return std::make_unique<NcclComm>(id, nranks, rank, device);
}

const GpuCollectives& collectives() {
  static const GpuCollectives c{std::string(HG_NCCL_LIB " ") + std::to_string(NCCL_MAJOR) + "." +
                                    std::to_string(NCCL_MINOR) + "." + std::to_string(NCCL_PATCH),
                                &unique_id, &create};
  return c;
}

}  // namespace
}  // namespace hg::gpu

static const bool hg_nccl_registered = hg::register_gpu_collectives(&hg::gpu::collectives());
static const bool hg_nccl_fact = hg::add_build_fact(
    "gpu.vendor.nccl", std::string(HG_NCCL_LIB " ") + std::to_string(NCCL_MAJOR) + "." +
                           std::to_string(NCCL_MINOR) + "." + std::to_string(NCCL_PATCH));
#else
static const bool hg_nccl_fact = hg::add_build_fact("gpu.vendor.nccl", "not found");
#endif
