"""Elementwise binary ops with NumPy broadcasting, for graph plans: add, sub, mul, div."""

from __future__ import annotations

from typing import Any

from .._native import _C
from ..tensor import Tensor
from . import _common

# the ops of this family, exported as hipgrad.ops.<name>
__all__ = ["binary"]

KINDS = ("add", "sub", "mul", "div")


def binary(a: Any, b: Any, kind: str, *, impl: str = "auto", out: Tensor | None = None) -> Tensor:
    """y = a (kind) b, kind one of "add", "sub", "mul", "div", float32, with NumPy's broadcasting
    (shapes aligned from the right, each axis equal or 1 in one of them; at most 6 axes).

    y has the broadcast shape. With `out`, y is written there (see _common.out_arg); out may also
    be a or b itself when that operand already has y's shape (in place: y = a + b into a)."""
    if not isinstance(kind, str):
        raise TypeError(f"binary: kind must be a string, one of {KINDS}; got {kind!r}")
    t = _common.tensors("binary", a=a, b=b)
    return _C.ops.binary(t["a"], t["b"], kind, _common.impl_arg(impl, "binary"),
                         _common.out_arg(out, "binary"))
