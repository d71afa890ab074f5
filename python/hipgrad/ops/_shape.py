"""The data-movement and reduction ops of graph plans: concat, split, transpose, reduce_mean and
pad2d. Each result is a new contiguous float32 tensor; axes may be negative (from the end)."""

from __future__ import annotations

from typing import Any, Sequence

from .._args import real
from .._native import _C
from ..tensor import Tensor, as_tensor, int_arg, is_int
from . import _common

# the ops of this family, exported as hipgrad.ops.<name>
__all__ = ["concat", "pad2d", "reduce_mean", "split", "transpose"]


def _ints(value: Any, name: str, op: str) -> list[int]:
    if is_int(value) or not isinstance(value, Sequence) or not all(map(is_int, value)):
        raise TypeError(f"{op}: {name} must be a sequence of ints, got {value!r}")
    return [int_arg(v, f"{op}: {name}") for v in value]


def _axis(value: Any, op: str) -> int:
    if not is_int(value):
        raise TypeError(f"{op}: axis must be an int, got {value!r}")
    return int_arg(value, f"{op}: axis")


def concat(tensors: Any, axis: int, *, impl: str = "auto", out: Tensor | None = None) -> Tensor:
    """The tensors joined along `axis`: same rank, same extents on every other axis."""
    if not isinstance(tensors, Sequence) or isinstance(tensors, (str, bytes)):
        got = "None" if tensors is None else type(tensors).__name__
        raise TypeError(f"concat: tensors must be a hipgrad Tensor list (a sequence of tensors), "
                        f"got {got}")
    items = [as_tensor(x, f"concat: tensors[{i}]") for i, x in enumerate(tensors)]
    return _C.ops.concat(items, _axis(axis, "concat"), _common.impl_arg(impl, "concat"),
                         _common.out_arg(out, "concat"))


def split(x: Any, axis: int, sizes: Sequence[int], *, impl: str = "auto") -> list[Tensor]:
    """x cut along `axis` into len(sizes) contiguous copies of those extents (they must add up
    to x's extent along axis)."""
    t = _common.tensors("split", x=x)
    return list(_C.ops.split(t["x"], _axis(axis, "split"), _ints(sizes, "sizes", "split"),
                             _common.impl_arg(impl, "split")))


def transpose(x: Any, perm: Sequence[int], *, impl: str = "auto",
              out: Tensor | None = None) -> Tensor:
    """y with y.shape[d] = x.shape[perm[d]] (NumPy's x.transpose(perm)), as a contiguous copy;
    at most 6 axes."""
    t = _common.tensors("transpose", x=x)
    return _C.ops.transpose(t["x"], _ints(perm, "perm", "transpose"),
                            _common.impl_arg(impl, "transpose"), _common.out_arg(out, "transpose"))


def reduce_mean(x: Any, axes: Any = None, *, keepdims: bool = False, impl: str = "auto",
                out: Tensor | None = None) -> Tensor:
    """The mean of x over `axes` (an int, a sequence of ints, or None for every axis); with
    keepdims the reduced axes stay as size 1. Sums in double on the CPU, float on GPUs."""
    t = _common.tensors("reduce_mean", x=x)
    if axes is None:
        axes = list(range(t["x"].ndim))
    elif is_int(axes):
        axes = [axes]
    return _C.ops.reduce_mean(t["x"], _ints(axes, "axes", "reduce_mean"),
                              _common.flag(keepdims, "reduce_mean: keepdims"),
                              _common.impl_arg(impl, "reduce_mean"),
                              _common.out_arg(out, "reduce_mean"))


def pad2d(x: Any, pads: Sequence[int], *, value: float = 0.0, impl: str = "auto",
          out: Tensor | None = None) -> Tensor:
    """x (N, C, H, W) padded by pads = (top, left, bottom, right) >= 0 with `value` (any float32,
    -inf included): y (N, C, top + H + bottom, left + W + right)."""
    t = _common.tensors("pad2d", x=x)
    p = _ints(pads, "pads", "pad2d")
    if len(p) != 4:
        raise ValueError(f"pad2d: pads must be (top, left, bottom, right), got {tuple(p)}")
    return _C.ops.pad2d(t["x"], p, real(value, "pad2d: value", finite=False, f32=True),
                        _common.impl_arg(impl, "pad2d"), _common.out_arg(out, "pad2d"))
