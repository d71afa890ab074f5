"""Argument normalisation shared by the op wrappers; the checks of shapes live in the C++ front ends."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..tensor import Tensor, as_tensor

IMPLS = ("auto", "handwritten", "vendor")


def pair(value: Any, name: str, op: str) -> list[int]:
    """An int or an (h, w) pair as [h, w]."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return [int(value), int(value)]
    if isinstance(value, Sequence) and len(value) == 2 and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
        return [int(value[0]), int(value[1])]
    raise TypeError(f"{op}: {name} must be an int or an (h, w) pair of ints, got {value!r}")


def impl_arg(impl: str, op: str) -> str:
    if impl not in IMPLS:
        raise ValueError(f"{op}: impl must be one of {IMPLS}, got {impl!r}")
    return impl


def shape_arg(shape: Any, name: str, op: str, ndim: int) -> list[int]:
    try:
        out = [int(s) for s in shape]
    except TypeError:
        raise TypeError(f"{op}: {name} must be a sequence of {ndim} ints, got {shape!r}") from None
    if len(out) != ndim:
        raise ValueError(f"{op}: {name} must have {ndim} entries, got {tuple(out)}")
    return out


def tensors(op: str, **named: Any) -> dict[str, Tensor]:
    """Each argument as a Tensor (NumPy arrays become CPU tensors); None stays None."""
    return {k: (None if v is None else as_tensor(v, f"{op}: {k}")) for k, v in named.items()}


def out_arg(out: Any, op: str) -> Tensor | None:
    """The `out=` argument of an op: None (a new output is allocated) or an hg.Tensor that the op
    overwrites (float32, on the inputs' device, of the output's exact shape, not overlapping any
    input; the native front end checks those and names `out`). Returns the tensor written."""
    if out is None or isinstance(out, Tensor):
        return out
    raise TypeError(f"{op}: out must be an hg.Tensor or None, got {type(out).__name__}")
