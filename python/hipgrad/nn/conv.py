"""Conv2d: NCHW cross-correlation with PyTorch's weight layout (K, C/groups, R, S) and init;
ConvTranspose2d: its transpose (PyTorch's layer, weight (C_in, C_out/groups, R, S)), built from
the same three conv ops."""

from __future__ import annotations

from typing import Any

from .. import ops
from ..engine.steps import Step, host_copy, int_pair
from ..ops._common import pair
from .._args import flag
from ..tensor import Tensor, int_arg, tensor
from . import init
from .module import Module, Parameter, accumulate_grad

# exported as hipgrad.nn.<name>
__all__ = ["Conv2d", "ConvTranspose2d"]


class Conv2d(Module):
    """x (N, C, H, W) -> y (N, K, P, Q); the bias is fused into the forward op."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, groups: int = 1, bias: bool = True) -> None:
        super().__init__()
        in_channels, out_channels, groups = (int_arg(in_channels, "Conv2d: in_channels"),
                                             int_arg(out_channels, "Conv2d: out_channels"),
                                             int_arg(groups, "Conv2d: groups"))
        if in_channels <= 0 or out_channels <= 0 or groups <= 0:
            raise ValueError(f"Conv2d: in_channels, out_channels and groups must be positive, got "
                             f"{in_channels}, {out_channels}, {groups}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: groups={groups} must divide in_channels={in_channels} and "
                             f"out_channels={out_channels}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.groups = int(groups)
        self.kernel_size = tuple(pair(kernel_size, "kernel_size", "Conv2d", 1))
        self.stride = tuple(pair(stride, "stride", "Conv2d", 1))
        self.padding = tuple(pair(padding, "padding", "Conv2d", 0))
        self.dilation = tuple(pair(dilation, "dilation", "Conv2d", 1))
        bias = flag(bias, "Conv2d: bias")
        shape = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        self.weight = Parameter(tensor(init.kaiming_uniform(shape)))
        self.bias = Parameter(tensor(init.bias_uniform(self.out_channels, shape))) if bias else None

    def _geometry(self) -> dict[str, Any]:
        return {"stride": self.stride, "padding": self.padding, "dilation": self.dilation,
                "groups": self.groups}

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"Conv2d: x must have shape (N, {self.in_channels}, H, W), got "
                             f"{tuple(x.shape)}")
        bias = None if self.bias is None else self.bias.data
        y = ops.conv2d(x, self.weight.data, bias, **self._geometry(), impl=self.impl)
        self._save(x)
        return y

    def backward(self, dy: Tensor) -> Tensor:
        (x,) = self._take_saved()
        geometry = self._geometry()
        if self.weight.requires_grad:
            accumulate_grad(self.weight, ops.conv2d_backward_weight(
                dy, x, self.weight.shape, **geometry, impl=self.impl))
        if self.bias is not None and self.bias.requires_grad:
            accumulate_grad(self.bias, ops.bias_backward(dy, impl=self.impl))
        return ops.conv2d_backward_data(dy, self.weight.data, tuple(x.shape), **geometry,
                                        impl=self.impl)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + ("" if self.bias is not None else ", bias=False")

    def to_steps(self, name: str) -> list[Step]:
        arrays = {"weight": host_copy(self.weight)}
        if self.bias is not None:
            arrays["bias"] = host_copy(self.bias)
        return [Step("conv", name, arrays=arrays, attrs={"stride": int_pair(self.stride),
                                                         "padding": int_pair(self.padding),
                                                         "dilation": int_pair(self.dilation),
                                                         "groups": int(self.groups)})]


class ConvTranspose2d(Module):
    """x (N, C_in, H, W) -> y (N, C_out, H_out, W_out), PyTorch's ConvTranspose2d:
    H_out = (H - 1) * stride - 2 * padding + dilation * (R - 1) + output_padding + 1, weight
    (C_in, C_out/groups, R, S). The forward is conv2d_backward_data with that weight read as a
    conv weight (K = C_in) and the bias added; the backward is that conv's forward (dx) and its
    backward_weight with x in the role of dy (dw). output_padding must be below the stride
    (PyTorch also allows it below the dilation, which this conv pairing cannot express)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, output_padding: Any = 0, groups: int = 1, bias: bool = True,
                 dilation: Any = 1) -> None:
        super().__init__()
        op = "ConvTranspose2d"
        in_channels, out_channels, groups = (int_arg(in_channels, f"{op}: in_channels"),
                                             int_arg(out_channels, f"{op}: out_channels"),
                                             int_arg(groups, f"{op}: groups"))
        if in_channels <= 0 or out_channels <= 0 or groups <= 0:
            raise ValueError(f"{op}: in_channels, out_channels and groups must be positive, got "
                             f"{in_channels}, {out_channels}, {groups}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{op}: groups={groups} must divide in_channels={in_channels} and "
                             f"out_channels={out_channels}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = tuple(pair(kernel_size, "kernel_size", op, 1))
        self.stride = tuple(pair(stride, "stride", op, 1))
        self.padding = tuple(pair(padding, "padding", op, 0))
        self.output_padding = tuple(pair(output_padding, "output_padding", op, 0))
        self.dilation = tuple(pair(dilation, "dilation", op, 1))
        if any(o >= s for o, s in zip(self.output_padding, self.stride)):
            raise ValueError(f"{op}: output_padding {self.output_padding} must be below the stride "
                             f"{self.stride}")
        bias = flag(bias, f"{op}: bias")
        shape = (in_channels, out_channels // groups, *self.kernel_size)
        self.weight = Parameter(tensor(init.kaiming_uniform(shape)))
        self.bias = Parameter(tensor(init.bias_uniform(out_channels, shape))) if bias else None

    def _geometry(self) -> dict[str, Any]:
        return {"stride": self.stride, "padding": self.padding, "dilation": self.dilation,
                "groups": self.groups}

    def output_shape(self, x_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        """The output shape for an input of `x_shape` (N, C_in, H, W)."""
        hw = [(n - 1) * s - 2 * p + d * (k - 1) + o + 1 for n, s, p, d, k, o in
              zip(x_shape[2:], self.stride, self.padding, self.dilation, self.kernel_size,
                  self.output_padding)]
        if min(hw) < 1:
            raise ValueError(f"ConvTranspose2d: an input of {tuple(x_shape)} gives an empty output "
                             f"{tuple(hw)} (padding {self.padding} too large)")
        return (int(x_shape[0]), self.out_channels, hw[0], hw[1])

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"ConvTranspose2d: x must have shape (N, {self.in_channels}, H, W), "
                             f"got {tuple(x.shape)}")
        y = ops.conv2d_backward_data(x, self.weight.data, self.output_shape(tuple(x.shape)),
                                     **self._geometry(), impl=self.impl)
        if self.bias is not None:
            y = ops.bias_add(y, self.bias.data, impl=self.impl)
        self._save(x)
        return y

    def backward(self, dy: Tensor) -> Tensor:
        (x,) = self._take_saved()
        geometry = self._geometry()
        if self.weight.requires_grad:  # the conv dy -> x: x is its output gradient, dy its input
            accumulate_grad(self.weight, ops.conv2d_backward_weight(
                x, dy, self.weight.shape, **geometry, impl=self.impl))
        if self.bias is not None and self.bias.requires_grad:
            accumulate_grad(self.bias, ops.bias_backward(dy, impl=self.impl))
        return ops.conv2d(dy, self.weight.data, None, **geometry, impl=self.impl)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        for name, default in (("padding", (0, 0)), ("output_padding", (0, 0)), ("dilation", (1, 1))):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + ("" if self.bias is not None else ", bias=False")

    def to_steps(self, name: str) -> list[Step]:
        arrays = {"weight": host_copy(self.weight)}
        if self.bias is not None:
            arrays["bias"] = host_copy(self.bias)
        return [Step("conv_transpose", name, arrays=arrays, attrs={
            "stride": int_pair(self.stride), "padding": int_pair(self.padding),
            "dilation": int_pair(self.dilation), "groups": int(self.groups),
            "output_padding": int_pair(self.output_padding)})]
