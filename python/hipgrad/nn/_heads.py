"""Moving attention heads between layouts, as ops on the tensors' device (no NumPy on the data):

    rows      (B, T, C)         what the linear layers read and write, C = H * hd
    heads     (B, H, T, hd)     what ops.attention reads
    cache     (L, B, H, hd)     the KV cache: position-major, so a decoding step appends at an
                                offset (Tensor.narrow); ops.attention reads its first n positions
                                in place (kv_len=n, kv_layout="tbhd")

Every move keeps the last axis (hd, or C) whole, so it is a gather of rows: `ops.embedding`
with the row order as int64 indices. The indices are made once per (shape, order, device) and
kept (a decoding loop meets the same shapes again on every generation).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from .. import ops
from ..tensor import Tensor, empty, tensor

_INDICES: dict[tuple, Tensor] = {}
_MAX_INDICES = 4096


def _indices(key: tuple, device: str, make: Callable[[], np.ndarray]) -> Tensor:
    k = key + (device,)
    t = _INDICES.get(k)
    if t is None:
        if len(_INDICES) >= _MAX_INDICES:
            _INDICES.clear()
        t = _INDICES[k] = tensor(np.ascontiguousarray(make(), dtype=np.int64), device=device)
    return t


def gather_rows(x: Tensor, idx: Tensor, out: Tensor | None = None) -> Tensor:
    """Rows idx of x viewed as (rows, x.shape[-1]): (len(idx), x.shape[-1])."""
    width = int(x.shape[-1])
    table = x.reshape(int(x.numel()) // width, width)
    return ops.embedding(table, idx, impl="handwritten",
                         out=None if out is None else out.reshape(int(idx.shape[0]), width))


def permute(x: Tensor, dims: Sequence[int], out: Tensor | None = None) -> Tensor:
    """x with its axes in the order `dims` (the last axis stays last): a contiguous copy, or a
    view of x where only axes of size 1 move; with `out`, written there."""
    shape, dims = tuple(int(s) for s in x.shape), tuple(int(d) for d in dims)
    if dims[-1] != len(shape) - 1 or sorted(dims) != list(range(len(shape))):
        raise ValueError(f"permute: dims {dims} must reorder the axes of {shape} keeping the last")
    moved = [d for d in dims if shape[d] > 1]
    if moved == sorted(moved):         # only axes of size 1 move: the same bytes, no gather
        y = x.reshape(*(shape[d] for d in dims))
        return y if out is None else out.copy_(y)
    lead = shape[:-1]
    idx = _indices(("permute", shape, dims), x.device,
                   lambda: np.arange(math.prod(lead)).reshape(lead).transpose(dims[:-1]).reshape(-1))
    return gather_rows(x, idx, out).reshape(*(shape[d] for d in dims))


def narrow(t: Tensor, start: int, length: int) -> Tensor:
    """A view of t[start:start + length] along the first axis (shares t's storage)."""
    return t.narrow(int(start), int(length))


def split_qkv(qkv: Tensor, n_head: int) -> tuple[Tensor, Tensor, Tensor]:
    """(B, T, 3C) with q, k, v side by side -> q, k, v (B, H, T, hd)."""
    b, t, c3 = (int(s) for s in qkv.shape)
    hd = c3 // 3 // n_head
    p = permute(qkv.reshape(b, t, 3, n_head, hd), (2, 0, 3, 1, 4))  # (3, B, H, T, hd)
    return tuple(narrow(p, i, 1).reshape(b, n_head, t, hd) for i in range(3))  # type: ignore


def merge_qkv(dq: Tensor, dk: Tensor, dv: Tensor) -> Tensor:
    """The inverse of split_qkv: three (B, H, T, hd) -> (B, T, 3C)."""
    b, h, t, hd = (int(s) for s in dq.shape)
    stacked = empty((3, b, h, t, hd), device=dq.device)
    for i, g in enumerate((dq, dk, dv)):
        narrow(stacked, i, 1).copy_(g.reshape(1, b, h, t, hd))
    return permute(stacked, (1, 3, 0, 2, 4)).reshape(b, t, 3 * h * hd)


def merge_heads(y: Tensor) -> Tensor:
    """(B, H, T, hd) -> (B, T, H * hd)."""
    b, h, t, hd = (int(s) for s in y.shape)
    return permute(y, (0, 2, 1, 3)).reshape(b, t, h * hd)


def split_heads(x: Tensor, n_head: int) -> Tensor:
    """(B, T, C) -> (B, H, T, C / H)."""
    b, t, c = (int(s) for s in x.shape)
    return permute(x.reshape(b, t, n_head, c // n_head), (0, 2, 1, 3))


def split_qkv_positions(qkv: Tensor, n_head: int) -> tuple[Tensor, Tensor, Tensor]:
    """(B, T, 3C) -> q (B, H, T, hd) and the new keys and values (T, B, H, hd), the cache's
    layout (decoding)."""
    b, t, c3 = (int(s) for s in qkv.shape)
    hd = c3 // 3 // n_head
    p = permute(qkv.reshape(b, t, 3, n_head, hd), (2, 1, 0, 3, 4))  # (3, T, B, H, hd)
    q, k, v = (narrow(p, i, 1).reshape(t, b, n_head, hd) for i in range(3))
    q = q.reshape(b, n_head, 1, hd) if t == 1 else permute(q, (1, 2, 0, 3))
    return q, k, v


def last_positions(x: Tensor) -> Tensor:
    """(B, T, C) -> the last position of every row, (B, C)."""
    b, t, c = (int(s) for s in x.shape)
    idx = _indices(("last", b, t), x.device, lambda: np.arange(b) * t + (t - 1))
    return gather_rows(x, idx)
