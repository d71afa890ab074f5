"""The op contract: every op takes hg.Tensors (NumPy arrays are treated as CPU tensors), returns
new tensors on the inputs' device, and accepts impl="auto"|"handwritten"|"vendor"."""

from __future__ import annotations

from .._native import _C
from ._activation import activation, activation_backward
from ._gemm import gemm
from ._pool import avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward


def last_impl() -> dict:
    """What the latest op call on this thread ran: op, impl (kernel name), key, device, ms."""
    return _C.last_run()


__all__ = [
    "activation", "activation_backward", "avg_pool2d", "avg_pool2d_backward", "gemm", "last_impl",
    "max_pool2d", "max_pool2d_backward",
]
