// Front ends of the data-movement and reduction ops of graph plans: concat, split, transpose,
// reduce_mean, pad2d. Axes may be negative (counted from the end, as NumPy); every check names
// the argument. Size-1 axes are dropped and neighbouring axes merged before dispatch, so the
// kernels see the fewest axes that describe the copy or reduction (ops_graph.h).
#include <algorithm>

#include "checks.h"

namespace hg {

namespace {

// axis in [-rank, rank), as an index in [0, rank).
int64_t resolve_axis(const char* op, const char* arg, int64_t axis, int64_t rank) {
  HG_REQUIRE(axis >= -rank && axis < rank, op, ": ", arg, " must be in [", -rank, ", ", rank,
             ") for a ", rank, "-D tensor, got ", axis);
  return axis < 0 ? axis + rank : axis;
}

int64_t product(const Shape& s, int64_t begin, int64_t end) {
  int64_t p = 1;
  for (int64_t d = begin; d < end; ++d) p *= s[d];
  return p;
}

// Contiguous strides of a shape.
std::vector<int64_t> strides_of(const Shape& s) {
  std::vector<int64_t> st(s.size());
  int64_t p = 1;
  for (int64_t d = int64_t(s.size()) - 1; d >= 0; --d) {
    st[d] = p;
    p *= s[d];
  }
  return st;
}

// Appends axis (size, stride) to (shape, stride, nd), dropping size 1 and merging it into the
// previous axis when that one steps over exactly this one.
void push_axis(int64_t size, int64_t stride, int64_t* shape, int64_t* strides, int* nd) {
  if (size == 1) return;
  if (*nd > 0 && strides[*nd - 1] == stride * size) {
    shape[*nd - 1] *= size;
    strides[*nd - 1] = stride;
    return;
  }
  shape[*nd] = size;
  strides[*nd] = stride;
  ++*nd;
}

std::string blocks_key(int64_t rows, const std::vector<CopyBlock>& blocks) {
  std::string key = cat("rows=", rows, ",len=(");
  for (size_t i = 0; i < blocks.size(); ++i) key += cat(i ? "," : "", blocks[i].len);
  return key + ")";
}

}  // namespace

Tensor concat(const std::vector<Tensor>& tensors, int64_t axis, Impl impl, const Tensor* out) {
  const char* op = "concat";
  HG_REQUIRE(!tensors.empty(), op, ": tensors must hold at least one tensor");
  const Tensor& first = tensors[0];
  for (size_t i = 0; i < tensors.size(); ++i) require_f32(op, cat("tensors[", i, "]").c_str(), tensors[i]);
  const int64_t rank = first.dim();
  HG_REQUIRE(rank >= 1, op, ": tensors must have at least one axis, tensors[0] is a scalar");
  const int64_t ax = resolve_axis(op, "axis", axis, rank);
  const Device dev = first.device();
  Shape y_shape = first.shape();
  y_shape[ax] = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    HG_REQUIRE(t.device() == dev, op, ": tensors[", i, "] is on ", t.device().str(),
               " but tensors[0] is on ", dev.str());
    bool same = t.dim() == rank;
    for (int64_t d = 0; same && d < rank; ++d) same = d == ax || t.size(d) == first.size(d);
    HG_REQUIRE(same, op, ": tensors[", i, "] has shape ", shape_str(t.shape()),
               " but must match tensors[0] ", shape_str(first.shape()),
               " on every axis except axis ", ax);
    y_shape[ax] = checked_add(op, "the concatenated axis", y_shape[ax], t.size(ax));
  }
  checked_count(op, "the output", {shape_numel(y_shape)});
  if (out && out->defined()) {
    for (size_t i = 0; i < tensors.size(); ++i)
      HG_REQUIRE(!out->overlaps(tensors[i]), op, ": out must not overlap tensors[", i,
                 "] (the op does not run in place)");
  }
  Tensor y = output_tensor(op, out, y_shape, dev, {});
  if (y.numel() == 0) return y;
  const int64_t rows = product(y_shape, 0, ax), inner = product(y_shape, ax + 1, rank);
  const int64_t total = y_shape[ax] * inner;
  std::vector<CopyBlock> blocks;
  int64_t col = 0;
  for (const Tensor& t : tensors) {
    const int64_t len = t.size(ax) * inner;
    if (len > 0) blocks.push_back({t.data<float>(), y.data<float>() + col, len, len, total});
    col += len;
  }
  BlockCopyArgs args{rows, blocks.data(), int64_t(blocks.size())};
  concat_op().run(dev, impl, args, blocks_key(rows, blocks));
  return y;
}

std::vector<Tensor> split(const Tensor& x, int64_t axis, const std::vector<int64_t>& sizes,
                          Impl impl) {
  const char* op = "split";
  require_f32(op, "x", x);
  const int64_t rank = x.dim();
  HG_REQUIRE(rank >= 1, op, ": x must have at least one axis, got a scalar");
  const int64_t ax = resolve_axis(op, "axis", axis, rank);
  HG_REQUIRE(!sizes.empty(), op, ": sizes must hold at least one size");
  int64_t sum = 0;
  for (int64_t s : sizes) {
    HG_REQUIRE(s >= 0, op, ": sizes must be >= 0, got ", s);
    sum = checked_add(op, "the sum of sizes", sum, s);
  }
  HG_REQUIRE(sum == x.size(ax), op, ": sizes must add up to x's extent along axis ", ax, " (",
             x.size(ax), " for x ", shape_str(x.shape()), "), they add up to ", sum);
  const Device dev = x.device();
  const int64_t rows = product(x.shape(), 0, ax), inner = product(x.shape(), ax + 1, rank);
  const int64_t total = x.size(ax) * inner;
  std::vector<Tensor> outs;
  std::vector<CopyBlock> blocks;
  int64_t col = 0;
  for (int64_t s : sizes) {
    Shape shape = x.shape();
    shape[ax] = s;
    outs.push_back(empty(shape, DType::f32, dev));
    const int64_t len = s * inner;
    if (len > 0 && rows > 0) {
      blocks.push_back({x.data<float>() + col, outs.back().data<float>(), len, total, len});
    }
    col += len;
  }
  if (blocks.empty()) return outs;
  BlockCopyArgs args{rows, blocks.data(), int64_t(blocks.size())};
  split_op().run(dev, impl, args, blocks_key(rows, blocks));
  return outs;
}

Tensor transpose(const Tensor& x, const std::vector<int64_t>& perm, Impl impl, const Tensor* out) {
  const char* op = "transpose";
  require_f32(op, "x", x);
  const int64_t rank = x.dim();
  HG_REQUIRE(rank <= kMaxGraphRank, op, ": x has ", rank, " axes; at most ", kMaxGraphRank,
             " are supported");
  HG_REQUIRE(int64_t(perm.size()) == rank, op, ": perm must have one entry per axis of x ",
             shape_str(x.shape()), " (", rank, "), got ", perm.size());
  std::vector<bool> seen(rank, false);
  Shape y_shape(rank);
  const std::vector<int64_t> xs = strides_of(x.shape());
  TransposeArgs args;
  int nd = 0;
  for (int64_t d = 0; d < rank; ++d) {
    HG_REQUIRE(perm[d] >= 0 && perm[d] < rank && !seen[perm[d]], op,
               ": perm must be a permutation of 0 .. ", rank - 1, ", got entry ", perm[d],
               " at position ", d);
    seen[perm[d]] = true;
    y_shape[d] = x.size(perm[d]);
    push_axis(y_shape[d], xs[perm[d]], args.shape, args.x_stride, &nd);
  }
  const Device dev = x.device();
  Tensor y = output_tensor(op, out, y_shape, dev, {{"x", &x}});
  if (y.numel() == 0) return y;
  if (nd == 0) {
    args.shape[0] = 1;
    args.x_stride[0] = 1;
    nd = 1;
  }
  args.ndim = nd;
  args.n = y.numel();
  args.x = x.data<float>();
  args.y = y.data<float>();
  std::string key = "y=(";
  for (int d = 0; d < nd; ++d) key += cat(d ? "," : "", args.shape[d], ":", args.x_stride[d]);
  transpose_op().run(dev, impl, args, key + ")");
  return y;
}

Tensor reduce_mean(const Tensor& x, const std::vector<int64_t>& axes, bool keepdims, Impl impl,
                   const Tensor* out) {
  const char* op = "reduce_mean";
  require_f32(op, "x", x);
  const int64_t rank = x.dim();
  HG_REQUIRE(rank >= 1 && rank <= kMaxGraphRank, op, ": x must have 1 to ", kMaxGraphRank,
             " axes, got shape ", shape_str(x.shape()));
  HG_REQUIRE(!axes.empty(), op, ": axes must name at least one axis");
  std::vector<bool> reduced(rank, false);
  for (int64_t a : axes) {
    const int64_t d = resolve_axis(op, "axes", a, rank);
    HG_REQUIRE(!reduced[d], op, ": axes names axis ", d, " twice");
    reduced[d] = true;
  }
  ReduceMeanArgs args;
  Shape y_shape;
  const std::vector<int64_t> xs = strides_of(x.shape());
  int kept = 0, red = 0;
  for (int64_t d = 0; d < rank; ++d) {
    if (reduced[d]) {
      args.count *= x.size(d);
      if (keepdims) y_shape.push_back(1);
      push_axis(x.size(d), xs[d], args.red_shape, args.red_stride, &red);
    } else {
      y_shape.push_back(x.size(d));
      push_axis(x.size(d), xs[d], args.kept_shape, args.kept_stride, &kept);
    }
  }
  HG_REQUIRE(args.count > 0 || shape_numel(y_shape) == 0, op, ": the reduced axes of x ",
             shape_str(x.shape()), " hold no elements, so the mean is undefined");
  const Device dev = x.device();
  Tensor y = output_tensor(op, out, y_shape, dev, {{"x", &x}});
  if (y.numel() == 0) return y;
  if (red == 0) {  // every reduced axis has size 1: one element per output
    args.red_shape[0] = 1;
    args.red_stride[0] = 1;
    red = 1;
  }
  args.kept_ndim = kept;
  args.red_ndim = red;
  args.n = y.numel();
  args.x = x.data<float>();
  args.y = y.data<float>();
  std::string key = "kept=(";
  for (int d = 0; d < kept; ++d) key += cat(d ? "," : "", args.kept_shape[d], ":", args.kept_stride[d]);
  key += "),red=(";
  for (int d = 0; d < red; ++d) key += cat(d ? "," : "", args.red_shape[d], ":", args.red_stride[d]);
  reduce_mean_op().run(dev, impl, args, key + ")");
  return y;
}

Tensor pad2d(const Tensor& x, const std::vector<int64_t>& pads, float value, Impl impl,
             const Tensor* out) {
  const char* op = "pad2d";
  require_f32(op, "x", x, 4);
  HG_REQUIRE(pads.size() == 4, op, ": pads must be (top, left, bottom, right), got ", pads.size(),
             " entries");
  for (int64_t p : pads)
    HG_REQUIRE(p >= 0, op, ": pads (top, left, bottom, right) must be >= 0, got (", pads[0], ", ",
               pads[1], ", ", pads[2], ", ", pads[3], ")");
  Pad2dArgs args;
  args.planes = x.size(0) * x.size(1);
  args.H = x.size(2);
  args.W = x.size(3);
  args.top = pads[0], args.left = pads[1], args.bottom = pads[2], args.right = pads[3];
  const int64_t Ho = checked_add(op, "the padded height", checked_add(op, "the padded height", args.H, args.top), args.bottom);
  const int64_t Wo = checked_add(op, "the padded width", checked_add(op, "the padded width", args.W, args.left), args.right);
  checked_count(op, "the output (N, C, H + top + bottom, W + left + right)",
                {x.size(0), x.size(1), Ho, Wo});
  const Device dev = x.device();
  Tensor y = output_tensor(op, out, {x.size(0), x.size(1), Ho, Wo}, dev, {{"x", &x}});
  if (y.numel() == 0) return y;
  args.value = value;
  args.x = x.data<float>();
  args.y = y.data<float>();
  pad2d_op().run(dev, impl, args,
                 cat("planes=", args.planes, ",H=", args.H, ",W=", args.W, ",pads=", args.top, ",",
                     args.left, ",", args.bottom, ",", args.right));
  return y;
}

}  // namespace hg
