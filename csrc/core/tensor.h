// Tensor: a contiguous, row-major block of one dtype on one device, with shared ownership of its
// storage. Every op reads and writes contiguous tensors; views (reshape) share the storage.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "errors.h"

namespace hg {

enum class DType : int8_t { f32, i64, i32, i8, u8 };
size_t dtype_size(DType d);
const char* dtype_name(DType d);  // NumPy spelling: "float32", "int64", ...

struct Device {
  enum class Kind : int8_t { cpu, gpu };
  Kind kind = Kind::cpu;
  int index = 0;
  bool is_cpu() const { return kind == Kind::cpu; }
  bool is_gpu() const { return kind == Kind::gpu; }
  bool operator==(const Device& o) const { return kind == o.kind && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string str() const;  // "cpu" or "gpu:N"
  static Device parse(const std::string& s);  // "cpu", "gpu", "gpu:N"; ValueError otherwise
};

// A block of bytes owned through `release` (allocator free, or a DLPack producer's deleter).
struct Storage {
  void* data = nullptr;
  size_t nbytes = 0;
  Device device;
  std::function<void(void*)> release;
  Storage(void* d, size_t n, Device dev, std::function<void(void*)> r)
      : data(d), nbytes(n), device(dev), release(std::move(r)) {}
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  ~Storage() {
    if (release) release(data);
  }
};

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);  // "(2, 3, 4)"
int64_t shape_numel(const Shape& s);

class Tensor {
 public:
  Tensor() = default;
  Tensor(std::shared_ptr<Storage> storage, size_t offset, Shape shape, DType dtype)
      : storage_(std::move(storage)), offset_(offset), shape_(std::move(shape)), dtype_(dtype) {}

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int64_t dim() const { return static_cast<int64_t>(shape_.size()); }
  int64_t size(int64_t i) const { return shape_.at(i < 0 ? i + dim() : i); }
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device : Device{}; }
  const std::shared_ptr<Storage>& storage() const { return storage_; }
  size_t offset() const { return offset_; }

  void* raw() const { return static_cast<char*>(storage_->data) + offset_; }
  template <class T>
  T* data() const { return static_cast<T*>(raw()); }

  Tensor reshape(const Shape& shape) const;  // same storage; -1 infers one dimension
  // A view of this tensor's first shape_numel(shape) elements with `shape` (same storage and
  // dtype): how a preallocated buffer serves as the output of ops of smaller sizes.
  Tensor prefix_view(const Shape& shape) const;
  // A view of entries [start, start + length) along the first axis (same storage, an offset):
  // contiguous, so ops read it and write into it (out=) like any tensor.
  Tensor narrow(int64_t start, int64_t length) const;
  // Whether the bytes of this tensor and `other` overlap (same device, intersecting addresses).
  bool overlaps(const Tensor& other) const;
  Tensor to(Device device) const;            // a copy on `device` (a copy even when equal)
  Tensor clone() const { return to(device()); }
  void copy_from(const Tensor& src);         // same shape and dtype, any devices
  void zero_();

 private:
  std::shared_ptr<Storage> storage_;
  size_t offset_ = 0;
  Shape shape_;
  DType dtype_ = DType::f32;
};

Tensor empty(const Shape& shape, DType dtype, Device device);
Tensor zeros(const Shape& shape, DType dtype, Device device);

}  // namespace hg
