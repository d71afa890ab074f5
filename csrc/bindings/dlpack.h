// The DLPack ABI (v0.8 "dltensor" capsule), written from the DLPack specification.
#pragma once
#include <cstdint>

extern "C" {
enum HgDLDeviceType : int32_t { kHgDLCPU = 1, kHgDLCUDA = 2, kHgDLCUDAHost = 3, kHgDLROCM = 10 };
enum HgDLTypeCode : uint8_t { kHgDLInt = 0, kHgDLUInt = 1, kHgDLFloat = 2 };
struct HgDLDevice {
  int32_t device_type;
  int32_t device_id;
};
struct HgDLDataType {
  uint8_t code;
  uint8_t bits;
  uint16_t lanes;
};
struct HgDLTensor {
  void* data;
  HgDLDevice device;
  int32_t ndim;
  HgDLDataType dtype;
  int64_t* shape;
  int64_t* strides;
  uint64_t byte_offset;
};
struct HgDLPackVersion {
  uint32_t major;
  uint32_t minor;
};
constexpr uint64_t kHgDLFlagReadOnly = 1ull << 0;
struct HgDLManagedTensor {
  HgDLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(HgDLManagedTensor* self);
};
struct HgDLManagedTensorVersioned {
  HgDLPackVersion version;
  void* manager_ctx;
  void (*deleter)(HgDLManagedTensorVersioned* self);
  uint64_t flags;
  HgDLTensor dl_tensor;
};
}
