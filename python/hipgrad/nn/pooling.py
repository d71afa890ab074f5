"""Pooling over NCHW planes and Flatten."""

from __future__ import annotations

import math
from typing import Any

from .. import ops
from ..engine.steps import Step, int_pair
from ..ops._common import pair
from ..tensor import Tensor, int_arg
from .module import Module

# exported as hipgrad.nn.<name>
__all__ = ["AvgPool2d", "Flatten", "MaxPool2d"]


class _Pool2d(Module):
    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0) -> None:
        super().__init__()
        name = type(self).__name__
        self.kernel_size = tuple(pair(kernel_size, "kernel_size", name, 1))
        self.stride = self.kernel_size if stride is None else tuple(pair(stride, "stride", name, 1))
        self.padding = tuple(pair(padding, "padding", name, 0))

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    step_kind = ""  # maxpool / avgpool

    def to_steps(self, name: str) -> list[Step]:
        k = int_pair(self.kernel_size)
        stride = k if self.stride is None else int_pair(self.stride)
        return [Step(self.step_kind, name, attrs={"kernel": k, "stride": stride,
                                                  "padding": int_pair(self.padding)})]


class MaxPool2d(_Pool2d):
    """Max over each window; backward routes dy to the argmax the forward recorded."""

    step_kind = "maxpool"

    def forward(self, x: Tensor) -> Tensor:
        y, argmax = ops.max_pool2d(x, self.kernel_size, stride=self.stride, padding=self.padding,
                                     impl=self.impl)
        self._save(argmax, tuple(x.shape))
        return y

    def backward(self, dy: Tensor) -> Tensor:
        argmax, x_shape = self._take_saved()
        return ops.max_pool2d_backward(dy, argmax, x_shape, impl=self.impl)


class AvgPool2d(_Pool2d):
    """Mean over each window, padding counted as zeros (PyTorch's count_include_pad=True)."""

    step_kind = "avgpool"

    def forward(self, x: Tensor) -> Tensor:
        y = ops.avg_pool2d(x, self.kernel_size, stride=self.stride, padding=self.padding,
                           impl=self.impl)
        self._save(tuple(x.shape))
        return y

    def backward(self, dy: Tensor) -> Tensor:
        (x_shape,) = self._take_saved()
        return ops.avg_pool2d_backward(dy, x_shape, self.kernel_size, stride=self.stride,
                                       padding=self.padding, impl=self.impl)


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
