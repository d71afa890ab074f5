"""Concatenation and splitting of contiguous tensors along one axis, for nn.Concat and the
engine's concat / split steps.

ops.concat / ops.split (the `graphops` ops) do it in one native call where this hipgrad has
them. Otherwise, and for a split into given (planned) output tensors, which ops.split does not
take, each piece is copied with Tensor.copy_ between row views: a tensor of shape (A, C, B)
split along C is, per outer index a, a contiguous run of C * B elements, so a piece is A
contiguous copies (one when A == 1). Exact (plain copies) on every device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .. import ops
from ..tensor import Tensor, empty


def norm_axis(axis: int, rank: int, what: str) -> int:
    """`axis` in [-rank, rank) as a non-negative axis, or a ValueError naming `what`."""
    a = int(axis)
    if not -rank <= a < rank:
        raise ValueError(f"{what}: axis {axis} is out of range for a {rank}-D input")
    return a + rank if a < 0 else a


def _rows(t: Tensor, axis: int) -> tuple[Tensor, int]:
    """t as (outer, run) rows: outer = prod(shape[:axis]), run = the elements per outer index."""
    outer = math.prod(t.shape[:axis])
    return t.reshape(outer, t.numel() // max(outer, 1)), outer


def _copy_runs(dst: Tensor, src: Tensor, axis: int, offset: int) -> None:
    """dst[..., offset:offset + src.shape[axis], ...] = src along `axis` (row by row)."""
    inner = math.prod(dst.shape[axis + 1:])
    d, outer = _rows(dst, axis)
    s, _ = _rows(src, axis)
    run, start = src.shape[axis] * inner, offset * inner
    for o in range(outer):
        d.narrow(o, 1).reshape(-1).narrow(start, run).copy_(s.narrow(o, 1).reshape(-1))


def _take_runs(dst: Tensor, src: Tensor, axis: int, offset: int) -> None:
    """dst = src[..., offset:offset + dst.shape[axis], ...] along `axis` (row by row)."""
    inner = math.prod(src.shape[axis + 1:])
    d, outer = _rows(dst, axis)
    s, _ = _rows(src, axis)
    run, start = dst.shape[axis] * inner, offset * inner
    for o in range(outer):
        d.narrow(o, 1).reshape(-1).copy_(s.narrow(o, 1).reshape(-1).narrow(start, run))


def concat_shape(shapes: Sequence[Sequence[int]], axis: int, what: str) -> tuple[int, ...]:
    """The shape of the concatenation, or a ValueError naming `what` and the shapes."""
    first = tuple(shapes[0])
    a = norm_axis(axis, len(first), what)
    for s in shapes[1:]:
        if len(s) != len(first) or any(u != v for i, (u, v) in enumerate(zip(s, first)) if i != a):
            raise ValueError(f"{what}: inputs of shapes {[tuple(s) for s in shapes]} differ outside "
                             f"axis {axis}")
    return first[:a] + (sum(int(s[a]) for s in shapes),) + first[a + 1:]


def concat(tensors: Sequence[Tensor], axis: int, out: Tensor | None = None) -> Tensor:
    """The tensors joined along `axis` (into `out` where given)."""
    native = getattr(ops, "concat", None)
    if native is not None:
        return native(list(tensors), axis, out=out)
    shape = concat_shape([t.shape for t in tensors], axis, "concat")
    a = norm_axis(axis, len(shape), "concat")
    if out is None:
        out = empty(list(shape), device=tensors[0].device)
    offset = 0
    for t in tensors:
        _copy_runs(out, t, a, offset)
        offset += t.shape[a]
    return out


def split(x: Tensor, axis: int, sizes: Sequence[int], outs: Sequence[Tensor] | None = None) -> list[Tensor]:
    """x cut along `axis` into pieces of `sizes` (written into `outs` where given)."""
    a = norm_axis(axis, len(x.shape), "split")
    if sum(sizes) != x.shape[a]:
        raise ValueError(f"split: sizes {list(sizes)} do not add up to axis {axis} of shape {tuple(x.shape)}")
    native = getattr(ops, "split", None)
    if outs is None and native is not None:
        return list(native(x, axis, list(sizes)))
    pieces, offset = [], 0
    for i, n in enumerate(sizes):
        shape = list(x.shape)
        shape[a] = int(n)
        piece = outs[i] if outs is not None else empty(shape, device=x.device)
        _take_runs(piece, x, a, offset)
        pieces.append(piece)
        offset += int(n)
    return pieces
