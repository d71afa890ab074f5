"""Argument normalisation shared by the op wrappers; the checks of shapes live in the C++ front ends."""

from __future__ import annotations

from typing import Any, Sequence

from .._args import flag, real
from ..tensor import Tensor, as_tensor, int_arg, is_int

IMPLS = ("auto", "handwritten", "vendor")


def pair(value: Any, name: str, op: str, minimum: int | None = None) -> list[int]:
    """An int or an (h, w) pair as [h, w]; with `minimum`, each entry at least that."""
    if is_int(value):
        value = (value, value)
    elif not (isinstance(value, Sequence) and len(value) == 2 and all(map(is_int, value))):
        raise TypeError(f"{op}: {name} must be an int or an (h, w) pair of ints, got {value!r}")
    out = [int_arg(v, f"{op}: {name}") for v in value]
    if minimum is not None and min(out) < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {tuple(out)}")
    return out


def impl_arg(impl: str, op: str) -> str:
    if not isinstance(impl, str) or impl not in IMPLS:
        raise ValueError(f"{op}: impl must be one of {IMPLS}, got {impl!r}")
    return impl


def shape_arg(shape: Any, name: str, op: str, ndim: int) -> list[int]:
    try:
        entries = list(shape)
    except TypeError:
        entries = None
    if entries is None or not all(map(is_int, entries)):
        raise TypeError(f"{op}: {name} must be a sequence of {ndim} ints, got {shape!r}")
    if len(entries) != ndim:
        raise ValueError(f"{op}: {name} must have {ndim} entries, got {tuple(entries)}")
    return [int_arg(s, f"{op}: {name}") for s in entries]


def tensors(op: str, *, optional: tuple[str, ...] = (), **named: Any) -> dict[str, Tensor | None]:
    """Each argument as a Tensor (NumPy arrays become CPU tensors). None stays None for the
    names in `optional` and is refused for the others (a TypeError naming the argument)."""
    return {k: (None if v is None and k in optional else as_tensor(v, f"{op}: {k}"))
            for k, v in named.items()}


def out_arg(out: Any, op: str) -> Tensor | None:
    """The `out=` argument of an op: None (a new output is allocated) or an hg.Tensor that the op
    overwrites (float32, on the inputs' device, of the output's exact shape, not overlapping any
    input; the native front end checks those and names `out`). Returns the tensor written."""
    if out is None or isinstance(out, Tensor):
        return out
    raise TypeError(f"{op}: out must be an hg.Tensor or None, got {type(out).__name__}")
