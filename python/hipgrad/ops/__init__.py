"""The op contract: every op takes hg.Tensors (NumPy arrays are treated as CPU tensors), returns
new tensors on the inputs' device, and accepts impl="auto"|"handwritten"|"vendor"."""

from __future__ import annotations

from .._native import _C
from ._gemm import gemm
from ._quant import qconv2d, qgemm, quantize


def last_impl() -> dict:
    """What the latest op call on this thread ran: op, impl (kernel name), key, device, ms."""
    return _C.last_run()


__all__ = ["gemm", "last_impl", "qconv2d", "qgemm", "quantize"]
