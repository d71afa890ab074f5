"""Pooling over NCHW planes and Flatten."""

from __future__ import annotations

import math
from typing import Any

from .. import ops
from .._args import flag
from ..engine.steps import Step, int_pair
from ..ops._common import pair
from ..tensor import Tensor, int_arg
from .module import Module

# exported as hipgrad.nn.<name>
__all__ = ["AvgPool2d", "Flatten", "MaxPool2d"]


class _Pool2d(Module):
    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0,
                 ceil_mode: bool = False) -> None:
        super().__init__()
        name = type(self).__name__
        self.kernel_size = tuple(pair(kernel_size, "kernel_size", name, 1))
        self.stride = self.kernel_size if stride is None else tuple(pair(stride, "stride", name, 1))
        self.padding = tuple(pair(padding, "padding", name, 0))
        self.ceil_mode = flag(ceil_mode, f"{name}: ceil_mode")
        self.count_include_pad = True

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"ceil_mode={self.ceil_mode}")

    step_kind = ""  # maxpool / avgpool

    def to_steps(self, name: str) -> list[Step]:
        """One maxpool / avgpool step; its attrs carry ceil_mode and count_include_pad (the
        graph contract's pool attrs, which the engine's pool executor passes on)."""
        k = int_pair(self.kernel_size)
        stride = k if self.stride is None else int_pair(self.stride)
        return [Step(self.step_kind, name, attrs={
            "kernel": k, "stride": stride, "padding": int_pair(self.padding),
            "ceil_mode": self.ceil_mode, "count_include_pad": self.count_include_pad})]


class MaxPool2d(_Pool2d):
    """Max over each window; backward routes dy to the argmax the forward recorded."""

    step_kind = "maxpool"

    def forward(self, x: Tensor) -> Tensor:
        y, argmax = ops.max_pool2d(x, self.kernel_size, stride=self.stride, padding=self.padding,
                                   ceil_mode=self.ceil_mode, impl=self.impl)
        self._save(argmax, tuple(x.shape))
        return y

    def backward(self, dy: Tensor) -> Tensor:
        argmax, x_shape = self._take_saved()
        return ops.max_pool2d_backward(dy, argmax, x_shape, impl=self.impl)


class AvgPool2d(_Pool2d):
    """Mean over each window, padding counted as zeros (count_include_pad=True, PyTorch's
    default) or not counted; ceil_mode as hipgrad.ops.avg_pool2d."""

    step_kind = "avgpool"

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0,
                 ceil_mode: bool = False, count_include_pad: bool = True) -> None:
        super().__init__(kernel_size, stride, padding, ceil_mode)
        self.count_include_pad = flag(count_include_pad, "AvgPool2d: count_include_pad")

    def extra_repr(self) -> str:
        return super().extra_repr() + f", count_include_pad={self.count_include_pad}"

    def forward(self, x: Tensor) -> Tensor:
        y = ops.avg_pool2d(x, self.kernel_size, stride=self.stride, padding=self.padding,
                           ceil_mode=self.ceil_mode, count_include_pad=self.count_include_pad,
                           impl=self.impl)
        self._save(tuple(x.shape))
        return y

    def backward(self, dy: Tensor) -> Tensor:
        (x_shape,) = self._take_saved()
        return ops.avg_pool2d_backward(dy, x_shape, self.kernel_size, stride=self.stride,
                                       padding=self.padding, ceil_mode=self.ceil_mode,
                                       count_include_pad=self.count_include_pad, impl=self.impl)


class Flatten(Module):
    """Merge dims start_dim..end_dim into one (a view): (N, C, H, W) -> (N, C*H*W) by default."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = int_arg(start_dim, "Flatten: start_dim")
        self.end_dim = int_arg(end_dim, "Flatten: end_dim")

    def forward(self, x: Tensor) -> Tensor:
        shape = tuple(x.shape)
        start = self.start_dim + len(shape) if self.start_dim < 0 else self.start_dim
        end = self.end_dim + len(shape) if self.end_dim < 0 else self.end_dim
        if not 0 <= start <= end < len(shape):
            raise ValueError(f"Flatten: start_dim={self.start_dim}, end_dim={self.end_dim} do not "
                             f"fit an input of shape {shape}")
        self._save(shape)
        return x.reshape(*shape[:start], math.prod(shape[start:end + 1]), *shape[end + 1:])

    def backward(self, dy: Tensor) -> Tensor:
        (shape,) = self._take_saved()
        return dy.reshape(*shape)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"

    def to_steps(self, name: str) -> list[Step]:
        dims = {} if (self.start_dim, self.end_dim) == (1, -1) else {"start_dim": self.start_dim,
                                                                     "end_dim": self.end_dim}
        return [Step("flatten", name, attrs=dims)]
