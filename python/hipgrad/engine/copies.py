"""Splitting a tensor along one axis into given (planned) tensors, which ops.split (it allocates
its pieces) does not do, and the axis helper nn.Concat shares.

A tensor of shape (A, C, B) split along C is, per outer index a, a contiguous run of C * B
elements, so each piece is A contiguous copies (Tensor.copy_ between row views; one copy when
A == 1): plain copies, exact on every device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..tensor import Tensor


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


def split_into(x: Tensor, axis: int, outs: Sequence[Tensor]) -> list[Tensor]:
    """x cut along `axis` into `outs` (their sizes along it add up to x's); returns `outs`."""
    a = norm_axis(axis, len(x.shape), "split")
    inner = math.prod(x.shape[a + 1:])
    src, outer = _rows(x, a)
    offset = 0
    for piece in outs:
        dst, _ = _rows(piece, a)
        run = piece.shape[a] * inner
        for o in range(outer):
            dst.narrow(o, 1).reshape(-1).copy_(src.narrow(o, 1).reshape(-1).narrow(offset, run))
        offset += run
    return list(outs)
