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

ConvGeometry conv_geometry(const char* op, const Shape& x, const Shape& w, Pair stride,
                           Pair padding, Pair dilation, int64_t groups) {
  HG_REQUIRE(x.size() == 4, op, ": x must be 4-D (N, C, H, W), got shape ", shape_str(x));
  HG_REQUIRE(w.size() == 4, op, ": w must be 4-D (K, C/groups, R, S), got shape ", shape_str(w));
  require_pair(op, "stride", stride, 1);
  require_pair(op, "dilation", dilation, 1);
  require_pair(op, "padding", padding, 0);
  HG_REQUIRE(groups >= 1, op, ": groups must be >= 1, got ", groups);
  for (size_t i = 0; i < 4; ++i) {
    HG_REQUIRE(x[i] > 0, op, ": x must have non-zero sizes, got shape ", shape_str(x));
    HG_REQUIRE(w[i] > 0, op, ": w must have non-zero sizes, got shape ", shape_str(w));
  }
  HG_REQUIRE(x[1] % groups == 0, op, ": x has ", x[1], " channels, not divisible by groups=", groups);
  HG_REQUIRE(w[0] % groups == 0, op, ": w has ", w[0], " output channels, not divisible by groups=", groups);
  HG_REQUIRE(w[1] == x[1] / groups, op, ": w has ", w[1], " input channels per group but x has ",
             x[1] / groups, " (groups=", groups, ")");
  ConvGeometry g;
  g.N = x[0]; g.C = x[1]; g.H = x[2]; g.W = x[3];
  g.K = w[0]; g.R = w[2]; g.S = w[3];
  g.stride_h = stride[0]; g.stride_w = stride[1];
  g.pad_h = padding[0]; g.pad_w = padding[1];
  g.dil_h = dilation[0]; g.dil_w = dilation[1];
  g.groups = groups;
  const int64_t eff_r = g.dil_h * (g.R - 1) + 1, eff_s = g.dil_w * (g.S - 1) + 1;
  HG_REQUIRE(g.H + 2 * g.pad_h >= eff_r && g.W + 2 * g.pad_w >= eff_s, op,
             ": the kernel (", eff_r, "x", eff_s, " with dilation) is larger than the padded input (",
             g.H + 2 * g.pad_h, "x", g.W + 2 * g.pad_w, ")");
  g.P = (g.H + 2 * g.pad_h - eff_r) / g.stride_h + 1;
  g.Q = (g.W + 2 * g.pad_w - eff_s) / g.stride_w + 1;
  return g;
}

int32_t read_flag(const Tensor& flag) {
  int32_t value = 0;
  backend_for(flag.device()).copy(&value, Device{}, flag.raw(), flag.device(), sizeof(value));
  return value;
}

}  // namespace hg
