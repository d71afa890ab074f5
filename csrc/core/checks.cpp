#include "checks.h"

namespace hg {

void require_dtype(const char* op, const char* arg, const Tensor& t, DType dtype) {
  HG_REQUIRE(t.defined(), op, ": ", arg, " is missing");
  HG_REQUIRE_TYPE(t.dtype() == dtype, op, ": ", arg, " must be ", dtype_name(dtype), ", got ",
                  dtype_name(t.dtype()));
}

void require_f32(const char* op, const char* arg, const Tensor& t, int ndim) {
  require_dtype(op, arg, t, DType::f32);
  HG_REQUIRE(ndim < 0 || t.dim() == ndim, op, ": ", arg, " must have ", ndim,
             " dimensions, got shape ", shape_str(t.shape()));
}

Device require_same_device(const char* op,
                           std::initializer_list<std::pair<const char*, const Tensor*>> args) {
  const char* first_name = nullptr;
  Device first;
  for (const auto& [name, t] : args) {
    if (!t || !t->defined()) continue;
    if (!first_name) {
      first_name = name;
      first = t->device();
    } else {
      HG_REQUIRE(t->device() == first, op, ": ", name, " is on ", t->device().str(), " but ",
                 first_name, " is on ", first.str(), "; move them to one device with .to()");
    }
  }
  return first;
}

void require_shape(const char* op, const char* arg, const Tensor& t, const Shape& expected) {
  HG_REQUIRE(t.shape() == expected, op, ": ", arg, " must have shape ", shape_str(expected),
             ", got ", shape_str(t.shape()));
}

void require_pair(const char* op, const char* arg, Pair p, int64_t minimum) {
  HG_REQUIRE(p[0] >= minimum && p[1] >= minimum, op, ": ", arg, " must be >= ", minimum,
             ", got (", p[0], ", ", p[1], ")");
}

int64_t checked_add(const char* op, const char* what, int64_t a, int64_t b) {
  int64_t r = 0;
  HG_REQUIRE(!__builtin_add_overflow(a, b, &r), op, ": ", what, ": ", a, " + ", b,
             " overflows a 64-bit int");
  return r;
}

int64_t checked_mul(const char* op, const char* what, int64_t a, int64_t b) {
  int64_t r = 0;
  HG_REQUIRE(!__builtin_mul_overflow(a, b, &r), op, ": ", what, ": ", a, " * ", b,
             " overflows a 64-bit int");
  return r;
}

int64_t checked_count(const char* op, const char* what, std::initializer_list<int64_t> factors) {
  int64_t n = 1;
  bool ok = true;
  std::string expr;
  for (int64_t f : factors) {
    expr += (expr.empty() ? "" : " * ") + std::to_string(f);
    ok = ok && f >= 0 && !__builtin_mul_overflow(n, f, &n);
  }
  for (int64_t f : factors)
    if (f == 0 && ok) return 0;
  HG_REQUIRE(ok && n <= kMaxElements, op, ": ", what, " needs ", expr,
             " elements, more than 2**59");
  return n;
}

Tensor output_tensor(const char* op, const Tensor* out, const Shape& shape, Device dev,
                     std::initializer_list<std::pair<const char*, const Tensor*>> inputs,
                     DType dtype) {
  if (!out || !out->defined()) return empty(shape, dtype, dev);
  require_dtype(op, "out", *out, dtype);
  HG_REQUIRE(out->device() == dev, op, ": out is on ", out->device().str(),
             " but the inputs are on ", dev.str());
  HG_REQUIRE(out->shape() == shape, op, ": out must have shape ", shape_str(shape), ", got ",
             shape_str(out->shape()));
  for (const auto& [name, t] : inputs)
    HG_REQUIRE(!t || !out->overlaps(*t), op, ": out must not overlap ", name,
               " (the op does not run in place)");
  return *out;
}

int32_t read_flag(const Tensor& flag) {
  int32_t value = 0;
  backend_for(flag.device()).copy(&value, Device{}, flag.raw(), flag.device(), sizeof(value));
  return value;
}

}  // namespace hg
