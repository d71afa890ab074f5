"""Moving attention heads between layouts, as ops on the tensors' device (no NumPy):

    rows      (B, T, C)         what the linear layers read and write, C = H * hd
    heads     (B, H, T, hd)     what ops.attention reads
    cache     (L, B, H, hd)     the KV cache: position-major, so the first n positions are one
                                contiguous block and a decoding step appends at an offset

Each move is one `ops.permute` (a contiguous copy); `narrow` views a range of the first axis.
"""

from __future__ import annotations

from .. import ops
from ..tensor import Tensor, empty


def narrow(t: Tensor, start: int, length: int) -> Tensor:
    """A view of t[start:start + length] along the first axis (shares t's storage)."""
    return t.narrow(int(start), int(length))


def split_qkv(qkv: Tensor, n_head: int) -> tuple[Tensor, Tensor, Tensor]:
    """(B, T, 3C) with q, k, v side by side -> q, k, v (B, H, T, hd)."""
    b, t, c3 = qkv.shape
    hd = c3 // 3 // n_head
    p = ops.permute(qkv.reshape(b, t, 3, n_head, hd), (2, 0, 3, 1, 4))  # (3, B, H, T, hd)
    return tuple(narrow(p, i, 1).reshape(b, n_head, t, hd) for i in range(3))  # type: ignore


def merge_qkv(dq: Tensor, dk: Tensor, dv: Tensor) -> Tensor:
    """The inverse of split_qkv: three (B, H, T, hd) -> (B, T, 3C)."""
    b, h, t, hd = dq.shape
    stacked = empty((3, b, h, t, hd), device=dq.device)
    for i, g in enumerate((dq, dk, dv)):
        narrow(stacked, i, 1).copy_(g.reshape(1, b, h, t, hd))
    return ops.permute(stacked, (1, 3, 0, 2, 4)).reshape(b, t, 3 * h * hd)


def merge_heads(y: Tensor) -> Tensor:
    """(B, H, T, hd) -> (B, T, H * hd)."""
    b, h, t, hd = y.shape
    return ops.permute(y, (0, 2, 1, 3)).reshape(b, t, h * hd)


def split_heads(x: Tensor, n_head: int) -> Tensor:
    """(B, T, C) -> (B, H, T, C / H)."""
    b, t, c = x.shape
    return ops.permute(x.reshape(b, t, n_head, c // n_head), (0, 2, 1, 3))


def split_qkv_positions(qkv: Tensor, n_head: int) -> tuple[Tensor, Tensor, Tensor]:
    """(B, T, 3C) -> q (B, H, T, hd) and the new keys and values (T, B, H, hd), the cache's
    layout (decoding)."""
    b, t, c3 = qkv.shape
    hd = c3 // 3 // n_head
    p = ops.permute(qkv.reshape(b, t, 3, n_head, hd), (2, 1, 0, 3, 4))  # (3, T, B, H, hd)
    q, k, v = (narrow(p, i, 1).reshape(t, b, n_head, hd) for i in range(3))
    q = q.reshape(b, n_head, 1, hd) if t == 1 else ops.permute(q, (1, 2, 0, 3))
    return q, k, v


def cached_heads(cache: Tensor, n: int, out: Tensor) -> Tensor:
    """The first n positions of a cache (L, B, H, hd) as (B, H, n, hd), written into a prefix of
    `out` (a scratch buffer of at least that size)."""
    _, b, h, hd = cache.shape
    return ops.permute(narrow(cache, 0, n), (1, 2, 0, 3), out=out.prefix_view([b, h, n, hd]))
