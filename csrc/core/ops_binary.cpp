// Front end of the broadcasting binary ops (add, sub, mul, div): NumPy's broadcasting rule, the
// collapse of y's axes into the few the kernels walk (ops_graph.h, BinaryArgs), the in-place case
// (out is a or b), dispatch.
#include "checks.h"

namespace hg {

namespace {
constexpr BinaryKind kAllBinary[] = {BinaryKind::add, BinaryKind::sub, BinaryKind::mul,
                                     BinaryKind::div};

// out is the operand t itself (same storage, offset and shape: each element is read before the
// kernel writes it), or does not touch it at all.
bool out_is(const Tensor& out, const Tensor& t) {
  return out.storage() == t.storage() && out.raw() == t.raw() && out.shape() == t.shape();
}
}  // namespace

const char* binary_name(BinaryKind k) {
  switch (k) {
    case BinaryKind::add: return "add";
    case BinaryKind::sub: return "sub";
    case BinaryKind::mul: return "mul";
    case BinaryKind::div: return "div";
  }
  return "?";
}

BinaryKind parse_binary(const std::string& kind) {
  std::string known;
  for (BinaryKind k : kAllBinary) {
    if (kind == binary_name(k)) return k;
    known += std::string(known.empty() ? "'" : ", '") + binary_name(k) + "'";
  }
  fail(ErrorKind::value, "binary: kind must be one of ", known, "; got '", kind, "'");
}

Tensor binary(const Tensor& a, const Tensor& b, BinaryKind kind, Impl impl, const Tensor* out) {
  const char* op = "binary";
  require_f32(op, "a", a);
  require_f32(op, "b", b);
  const Device dev = require_same_device(op, {{"a", &a}, {"b", &b}});
  const int ra = int(a.dim()), rb = int(b.dim()), rank = std::max(ra, rb);
  HG_REQUIRE(rank <= kMaxGraphRank, op, ": a ", shape_str(a.shape()), " and b ",
             shape_str(b.shape()), " have up to ", rank, " axes; at most ", kMaxGraphRank,
             " are supported");
  // Right-aligned shapes, y's shape, and each operand's contiguous strides (0 where broadcast).
  int64_t sa[kMaxGraphRank], sb[kMaxGraphRank], ys[kMaxGraphRank], stride_a[kMaxGraphRank],
      stride_b[kMaxGraphRank];
  Shape y_shape(rank);
  for (int d = 0; d < rank; ++d) {
    sa[d] = d < rank - ra ? 1 : a.size(d - (rank - ra));
    sb[d] = d < rank - rb ? 1 : b.size(d - (rank - rb));
    HG_REQUIRE(sa[d] == sb[d] || sa[d] == 1 || sb[d] == 1, op, ": a ", shape_str(a.shape()),
               " and b ", shape_str(b.shape()), " do not broadcast: axis ", d - rank, " has ", sa[d],
               " and ", sb[d], " (each axis must match or be 1 in one of them)");
    ys[d] = y_shape[d] = std::max(sa[d], sb[d]);
    if (sa[d] == 0 || sb[d] == 0) ys[d] = y_shape[d] = 0;
  }
  int64_t pa = 1, pb = 1;
  for (int d = rank - 1; d >= 0; --d) {
    stride_a[d] = sa[d] == 1 ? 0 : pa;
    stride_b[d] = sb[d] == 1 ? 0 : pb;
    pa *= sa[d];
    pb *= sb[d];
  }
  Tensor y;
  if (out && out->defined()) {
    for (const auto& [name, t] : {std::pair<const char*, const Tensor*>{"a", &a}, {"b", &b}}) {
      HG_REQUIRE(!out->overlaps(*t) || (out_is(*out, *t) && t->shape() == y_shape), op,
                 ": out must not overlap ", name, " unless it is ", name,
                 " itself with the result's shape ", shape_str(y_shape), " (in place)");
    }
    y = output_tensor(op, out, y_shape, dev, {});
  } else {
    y = empty(y_shape, DType::f32, dev);
  }
  if (y.numel() == 0) return y;
  BinaryArgs args;
  args.kind = kind;
  args.n = y.numel();
  int nd = 0;
  for (int d = 0; d < rank; ++d) {
    if (ys[d] == 1) continue;
    // merge axis d into the previous kept axis when both operands step through them alike
    if (nd > 0 && args.a_stride[nd - 1] == stride_a[d] * ys[d] &&
        args.b_stride[nd - 1] == stride_b[d] * ys[d]) {
      args.shape[nd - 1] *= ys[d];
      args.a_stride[nd - 1] = stride_a[d];
      args.b_stride[nd - 1] = stride_b[d];
      continue;
    }
    args.shape[nd] = ys[d];
    args.a_stride[nd] = stride_a[d];
    args.b_stride[nd] = stride_b[d];
    ++nd;
  }
  if (nd == 0) {  // one element
    args.shape[0] = 1;
    nd = 1;
  }
  args.ndim = nd;
  args.a = a.data<float>();
  args.b = b.data<float>();
  args.y = y.data<float>();
  std::string key = cat("kind=", binary_name(kind), ",y=(");
  for (int d = 0; d < nd; ++d)
    key += cat(d ? "," : "", args.shape[d], ":", args.a_stride[d], "/", args.b_stride[d]);
  binary_op().run(dev, impl, args, key + ")");
  return y;
}

}  // namespace hg
