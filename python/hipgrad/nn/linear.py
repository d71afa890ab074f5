"""Linear: y = x W^T + b with PyTorch's layout (W is (out, in)) and default initialisation."""

from __future__ import annotations

import math

from .. import ops
from .._args import flag
from ..engine.steps import Step, host_copy
from ..tensor import Tensor, int_arg, tensor
from . import init
from .module import Module, Parameter, accumulate_grad

# exported as hipgrad.nn.<name>
__all__ = ["Linear"]


class Linear(Module):
    """x (..., in_features) -> y (..., out_features); gemm(trans_b=True) then bias_add."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        in_features, out_features = (int_arg(in_features, "Linear: in_features"),
                                     int_arg(out_features, "Linear: out_features"))
        if in_features <= 0 or out_features <= 0:
            raise ValueError(f"Linear: in_features and out_features must be positive, got "
                             f"{in_features} and {out_features}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        bias = flag(bias, "Linear: bias")
        shape = (self.out_features, self.in_features)
        self.weight = Parameter(tensor(init.kaiming_uniform(shape)))
        self.bias = Parameter(tensor(init.bias_uniform(self.out_features, shape))) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        shape = tuple(x.shape)
        if len(shape) < 1 or shape[-1] != self.in_features:
            raise ValueError(f"Linear: x must have shape (..., {self.in_features}), got {shape}")
        rows = math.prod(shape[:-1])
        x2 = x if len(shape) == 2 else x.reshape(rows, self.in_features)
        y = ops.gemm(x2, self.weight.data, trans_b=True, impl=self.impl)
        if self.bias is not None:
            y = ops.bias_add(y, self.bias.data, impl=self.impl)
        self._save(x2, shape)
        return y if len(shape) == 2 else y.reshape(*shape[:-1], self.out_features)

    def backward(self, dy: Tensor) -> Tensor:
        x2, shape = self._take_saved()
        expected = shape[:-1] + (self.out_features,)
        if tuple(dy.shape) != expected:
            raise ValueError(f"Linear.backward: dy must have shape {expected}, got "
                             f"{tuple(dy.shape)}")
        dy2 = dy if len(shape) == 2 else dy.reshape(x2.shape[0], self.out_features)
        if self.weight.requires_grad:
            accumulate_grad(self.weight, ops.gemm(dy2, x2, trans_a=True, impl=self.impl))
        if self.bias is not None and self.bias.requires_grad:
            accumulate_grad(self.bias, ops.bias_backward(dy2, impl=self.impl))
        dx = ops.gemm(dy2, self.weight.data, impl=self.impl)
        return dx if len(shape) == 2 else dx.reshape(*shape)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")

    def to_steps(self, name: str) -> list[Step]:
        arrays = {"weight": host_copy(self.weight)}
        if self.bias is not None:
            arrays["bias"] = host_copy(self.bias)
        return [Step("linear", name, arrays=arrays)]
