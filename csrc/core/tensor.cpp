#include "tensor.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>

#include "device.h"

namespace hg {

size_t dtype_size(DType d) {
  switch (d) {
    case DType::f32: return 4;
    case DType::i64: return 8;
    case DType::i32: return 4;
    case DType::i8: return 1;
    case DType::u8: return 1;
  }
  return 1;
}

const char* dtype_name(DType d) {
  switch (d) {
    case DType::f32: return "float32";
    case DType::i64: return "int64";
    case DType::i32: return "int32";
    case DType::i8: return "int8";
    case DType::u8: return "uint8";
  }
  return "?";
}

std::string Device::str() const {
  return is_cpu() ? std::string("cpu") : "gpu:" + std::to_string(index);
}

Device Device::parse(const std::string& s) {
  if (s == "cpu") return Device{Kind::cpu, 0};
  if (s == "gpu" || s == "cuda" || s == "hip") return Device{Kind::gpu, 0};
  for (const char* prefix : {"gpu:", "cuda:", "hip:"}) {
    const size_t n = std::strlen(prefix);
    if (s.compare(0, n, prefix) == 0 && s.size() > n && s.size() < n + 4 &&
        s.find_first_not_of("0123456789", n) == std::string::npos) {
      return Device{Kind::gpu, std::stoi(s.substr(n))};
    }
  }
  fail(ErrorKind::value, "device must be 'cpu', 'gpu' or 'gpu:N', got '", s, "'");
}

std::string shape_str(const Shape& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) {
    out += std::to_string(s[i]);
    if (i + 1 < s.size() || s.size() == 1) out += ", ";
  }
  if (s.size() == 1) out.pop_back();
  return out + ")";
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

// The element count of a view's shape (dims already checked >= 0), refusing a product beyond
// int64 (it would wrap and pass the count comparison: a 1-element tensor "reshaped" to
// (7, 7905747460161236407) then sent a kernel out of bounds).
static int64_t view_numel(const Shape& shape, const char* what) {
  for (int64_t d : shape)
    if (d == 0) return 0;
  int64_t n = 1;
  for (int64_t d : shape)
    HG_REQUIRE(!__builtin_mul_overflow(n, d, &n), what, ": shape ", shape_str(shape),
               " holds more elements than a 64-bit count");
  return n;
}

static void check_shape(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    HG_REQUIRE(d >= 0, "shape ", shape_str(shape), " has a negative dimension");
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / 16 / d)
      fail(ErrorKind::memory, "shape ", shape_str(shape), " is too large to allocate");
    n *= d;
  }
}

Tensor empty(const Shape& shape, DType dtype, Device device) {
  check_shape(shape);
  const size_t nbytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  DeviceBackend& be = backend_for(device);
  void* p = be.allocate(nbytes, device.index);
  const int index = device.index;
  auto storage = std::make_shared<Storage>(p, nbytes, device,
                                           [&be, index](void* q) { be.deallocate(q, index); });
  return Tensor(std::move(storage), 0, shape, dtype);
}

Tensor zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.zero_();
  return t;
}

Tensor Tensor::reshape(const Shape& shape) const {
  Shape out = shape;
  int64_t infer = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      HG_REQUIRE(infer < 0, "reshape: only one dimension may be -1, got ", shape_str(shape));
      infer = static_cast<int64_t>(i);
    } else {
      HG_REQUIRE(out[i] >= 0, "reshape: shape ", shape_str(shape), " has a negative dimension");
    }
  }
  if (infer >= 0) {
    Shape rest = out;
    rest.erase(rest.begin() + infer);
    const int64_t known = view_numel(rest, "reshape");
    HG_REQUIRE(known > 0 && numel() % known == 0, "reshape: cannot infer -1 in ",
               shape_str(shape), " for a tensor of ", numel(), " elements");
    out[infer] = numel() / known;
  }
  const int64_t n = view_numel(out, "reshape");
  HG_REQUIRE(n == numel(), "reshape: shape ", shape_str(shape), " holds ", n,
             " elements but the tensor has ", numel(), " (shape ", shape_str(shape_), ")");
  return Tensor(storage_, offset_, out, dtype_);
}

Tensor Tensor::prefix_view(const Shape& shape) const {
  for (int64_t d : shape)
    HG_REQUIRE(d >= 0, "prefix_view: shape ", shape_str(shape), " has a negative dimension");
  const int64_t n = view_numel(shape, "prefix_view");
  HG_REQUIRE(n <= numel(), "prefix_view: shape ", shape_str(shape), " holds ",
             n, " elements but the buffer has only ", numel(), " (shape ",
             shape_str(shape_), ")");
  return Tensor(storage_, offset_, shape, dtype_);
}

Tensor Tensor::narrow(int64_t start, int64_t length) const {
  HG_REQUIRE(dim() >= 1, "narrow: a 0-d tensor has no first axis to narrow");
  HG_REQUIRE(start >= 0 && length >= 0 && start <= shape_[0] - length, "narrow: start ", start,
             " and length ", length, " must lie within the first axis of size ", shape_[0],
             " (shape ", shape_str(shape_), ")");
  Shape shape = shape_;
  shape[0] = length;
  const size_t row_bytes = static_cast<size_t>(numel() / std::max<int64_t>(shape_[0], 1)) * dtype_size(dtype_);
  return Tensor(storage_, offset_ + static_cast<size_t>(start) * row_bytes, shape, dtype_);
}

// By address, not Storage identity: two wraps of one buffer (borrow, from_dlpack) have separate
// Storage objects over the same bytes.
bool Tensor::overlaps(const Tensor& other) const {
  if (!defined() || !other.defined() || device() != other.device()) return false;
  if (nbytes() == 0 || other.nbytes() == 0) return false;
  const auto a = reinterpret_cast<uintptr_t>(raw()), b = reinterpret_cast<uintptr_t>(other.raw());
  return a < b + other.nbytes() && b < a + nbytes();
}

void Tensor::copy_from(const Tensor& src) {
  HG_REQUIRE(src.shape() == shape_ && src.dtype() == dtype_, "copy: source ",
             shape_str(src.shape()), " ", dtype_name(src.dtype()), " does not match destination ",
             shape_str(shape_), " ", dtype_name(dtype_));
  if (nbytes() == 0) return;
  const Device d = device(), s = src.device();
  DeviceBackend& be = d.is_gpu() ? backend_for(d) : backend_for(s);
  be.copy(raw(), d, src.raw(), s, nbytes());
}

Tensor Tensor::to(Device device) const {
  Tensor out = empty(shape_, dtype_, device);
  out.copy_from(*this);
  return out;
}

void Tensor::zero_() {
  if (nbytes() == 0) return;
  backend_for(device()).memset_zero(raw(), nbytes(), device().index);
}

}  // namespace hg
