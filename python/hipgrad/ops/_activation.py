"""Elementwise activations and their backward: relu, leaky_relu, sigmoid, tanh, gelu (erf),
gelu_tanh (PyTorch's approximate='tanh'), elu, relu6, hardsigmoid (PyTorch's: clip(x/6 + 1/2,
0, 1)) and hardswish (x * hardsigmoid(x))."""

from __future__ import annotations

from typing import Any

from .._native import _C
from ..tensor import Tensor
from . import _common

# the ops of this family, exported as hipgrad.ops.<name>
__all__ = ["activation", "activation_backward"]

KINDS = ("relu", "leaky_relu", "sigmoid", "tanh", "gelu", "gelu_tanh", "elu", "relu6",
         "hardsigmoid", "hardswish")


def _kind(kind: Any, op: str) -> str:
    if not isinstance(kind, str):
        raise TypeError(f"{op}: kind must be a string, one of {KINDS}; got {kind!r}")
    return kind  # unknown names are rejected by the native front end, which lists the kinds


def activation(x: Any, kind: str, *, alpha: float = 0.01, impl: str = "auto",
               out: Tensor | None = None) -> Tensor:
    """y = f(x) elementwise, any shape; alpha is leaky_relu's negative slope and elu's alpha.
    With `out`, y is written there (see _common.out_arg) and `out` is returned."""
    t = _common.tensors("activation", x=x)
    return _C.ops.activation(t["x"], _kind(kind, "activation"),
                             _common.real(alpha, "activation: alpha", f32=True),
                             _common.impl_arg(impl, "activation"),
                             _common.out_arg(out, "activation"))


def activation_backward(dy: Any, x: Any, y: Any, kind: str, *, alpha: float = 0.01,
                        impl: str = "auto") -> Tensor:
    """dx = dy * f'(x), with dy, x and y = activation(x, kind) of one shape."""
    op = "activation_backward"
    t = _common.tensors(op, dy=dy, x=x, y=y)
    return _C.ops.activation_backward(t["dy"], t["x"], t["y"], _kind(kind, op),
                                      _common.real(alpha, f"{op}: alpha", f32=True),
                                      _common.impl_arg(impl, op))
