// The ops of graph plans (the inference engine's DAG executor and ONNX import): elementwise binary
// ops with NumPy broadcasting, and the data-movement and reduction ops between layers (concat,
// split, transpose, reduce_mean, pad2d). Declared like every op (ops.h): argument structs with
// checked, resolved sizes; front ends in core/ops_binary.cpp and core/ops_shape.cpp.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace hg {

// The most axes a broadcast, transpose or reduction takes (ONNX vision models need 4, attention 5).
constexpr int kMaxGraphRank = 6;

// ---- Binary: y = a (kind) b with NumPy broadcasting ---------------------------------------------
enum class BinaryKind : int8_t { add, sub, mul, div };
BinaryKind parse_binary(const std::string& kind);  // ValueError naming the known kinds
const char* binary_name(BinaryKind k);
// y's shape after the front end drops its size-1 axes and merges neighbouring axes that both
// operands step through alike: `ndim` axes (1 <= ndim <= 6), and per axis each operand's stride
// in elements (0 along an axis the operand is broadcast over). Same-shape operands are one axis
// with strides (1, 1); NCHW * (1, C, 1, 1) is (N, C, H*W) with b's strides (0, 1, 0).
// The innermost stride of each operand is 0 or 1. y may be a or b itself (same storage and
// offset) where that operand has y's shape: each element is read before it is written.
struct BinaryArgs {
  BinaryKind kind = BinaryKind::add;
  int ndim = 1;
  int64_t n = 0;  // y's elements
  int64_t shape[kMaxGraphRank] = {};
  int64_t a_stride[kMaxGraphRank] = {}, b_stride[kMaxGraphRank] = {};
  const float* a = nullptr;
  const float* b = nullptr;
  float* y = nullptr;
};
Tensor binary(const Tensor& a, const Tensor& b, BinaryKind kind, Impl impl,
              const Tensor* out = nullptr);

// ---- Block copies: concat and split ---------------------------------------------------------------
// One strided 2-D copy: `rows` rows of `len` floats from src (rows `src_ld` apart) to dst (rows
// `dst_ld` apart). concat is one block per input (rows = the product of the axes before `axis`,
// len = its extent along axis times the product of the axes after), each landing at its column
// offset in y; split is one block per output, read from its column offset in x. No block
// overlaps another's destination, and no destination overlaps a source.
struct CopyBlock {
  const float* src = nullptr;
  float* dst = nullptr;
  int64_t len = 0, src_ld = 0, dst_ld = 0;
};
struct BlockCopyArgs {
  int64_t rows = 0;
  const CopyBlock* blocks = nullptr;  // host memory, `count` entries (len > 0 each)
  int64_t count = 0;
};
Tensor concat(const std::vector<Tensor>& tensors, int64_t axis, Impl impl,
              const Tensor* out = nullptr);
std::vector<Tensor> split(const Tensor& x, int64_t axis, const std::vector<int64_t>& sizes, Impl impl);

// ---- Transpose: y = x with its axes permuted (a contiguous copy) ----------------------------------
// After the front end drops size-1 axes and merges input axes that stay neighbours in order:
// y has `ndim` axes of `shape`, and y's axis d steps through x by `x_stride[d]` elements.
struct TransposeArgs {
  int ndim = 1;
  int64_t n = 0;
  int64_t shape[kMaxGraphRank] = {};
  int64_t x_stride[kMaxGraphRank] = {};
  const float* x = nullptr;
  float* y = nullptr;
};
Tensor transpose(const Tensor& x, const std::vector<int64_t>& perm, Impl impl,
                 const Tensor* out = nullptr);

// ---- reduce_mean: y = the mean of x over `axes` ---------------------------------------------------
// The front end drops size-1 axes and merges neighbours; the kept axes (`kept_ndim`, in order,
// with x's strides) index y's elements, the reduced axes (`red_ndim` >= 1) the `count` elements
// averaged for each. A kept_ndim of 0 is a full reduction (one output).
struct ReduceMeanArgs {
  int kept_ndim = 0, red_ndim = 1;
  int64_t n = 0, count = 1;  // outputs, elements per output
  int64_t kept_shape[kMaxGraphRank] = {}, kept_stride[kMaxGraphRank] = {};
  int64_t red_shape[kMaxGraphRank] = {}, red_stride[kMaxGraphRank] = {};
  const float* x = nullptr;
  float* y = nullptr;
};
Tensor reduce_mean(const Tensor& x, const std::vector<int64_t>& axes, bool keepdims, Impl impl,
                   const Tensor* out = nullptr);

// ---- pad2d: NCHW, pads (top, left, bottom, right) >= 0 filled with `value` -----------------------
struct Pad2dArgs {
  int64_t planes = 0, H = 0, W = 0, top = 0, left = 0, bottom = 0, right = 0;
  float value = 0.f;
  const float* x = nullptr;  // (planes, H, W)
  float* y = nullptr;        // (planes, top + H + bottom, left + W + right)
};
Tensor pad2d(const Tensor& x, const std::vector<int64_t>& pads, float value, Impl impl,
             const Tensor* out = nullptr);

}  // namespace hg
