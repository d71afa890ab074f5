// Shared argument checks for op front ends: each names the op, the argument and the expected form.
#pragma once
#include <initializer_list>
#include <utility>

#include "ops.h"

namespace hg {

// `t` is a float32 tensor with `ndim` dimensions (ndim < 0: any).
void require_f32(const char* op, const char* arg, const Tensor& t, int ndim = -1);
void require_dtype(const char* op, const char* arg, const Tensor& t, DType dtype);
// All defined tensors of `args` live on one device; returns it.
Device require_same_device(const char* op,
                           std::initializer_list<std::pair<const char*, const Tensor*>> args);
void require_shape(const char* op, const char* arg, const Tensor& t, const Shape& expected);
void require_pair(const char* op, const char* arg, Pair p, int64_t minimum);

// Overflow-checked arithmetic for every size derived from user integers (kernel, stride,
// padding, dilation, shapes): the exact result, or a ValueError "<op>: <what> ..." naming the
// argument(s) the size comes from. Element counts are further held to kMaxElements, so that
// byte sizes and byte offsets of any dtype stay within int64 in every kernel.
constexpr int64_t kMaxElements = int64_t(1) << 59;
int64_t checked_add(const char* op, const char* what, int64_t a, int64_t b);
int64_t checked_mul(const char* op, const char* what, int64_t a, int64_t b);
// The product of `factors` (each >= 0) as an element count <= kMaxElements.
int64_t checked_count(const char* op, const char* what, std::initializer_list<int64_t> factors);
// Checks a convolution's shapes and hyper-parameters and returns its geometry (output size
// included); `x`/`w` name the arguments (or the shapes standing in for them) in messages.
// Defined in ops_conv.cpp; the quantized convolution uses it too.
ConvGeometry conv_geometry(const char* op, const char* x, const Shape& xs, const char* w,
                           const Shape& ws, Pair stride, Pair padding, Pair dilation, int64_t groups);

// The output of an op: a new tensor, or `*out` when the caller passes one (the `out=` argument):
// it must be a `dtype` (float32 unless said) tensor on `dev` with exactly `shape` and must not
// overlap any of `inputs` (ValueError/TypeError naming `out` otherwise). Returned tensors share
// out's storage.
Tensor output_tensor(const char* op, const Tensor* out, const Shape& shape, Device dev,
                     std::initializer_list<std::pair<const char*, const Tensor*>> inputs,
                     DType dtype = DType::f32);

// A kernel-written one-element error flag (label/index range) read back to the host.
int32_t read_flag(const Tensor& flag);

}  // namespace hg
