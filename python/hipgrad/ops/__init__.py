"""The op contract: every op takes hg.Tensors (NumPy arrays are treated as CPU tensors), returns
new tensors on the inputs' device, and accepts impl="auto"|"handwritten"|"vendor"."""

from __future__ import annotations

from .._native import _C
from ._gemm import gemm
from ._layers import (add, add_, batch_norm, batch_norm_backward, dropout, dropout_backward,
                      embedding, embedding_backward, fill_)
from ._loss import (mse_loss, mse_loss_backward, softmax, softmax_cross_entropy,
                    softmax_cross_entropy_backward)
from ._optim import adam_step, sgd_step


def last_impl() -> dict:
    """What the latest op call on this thread ran: op, impl (kernel name), key, device, ms."""
    return _C.last_run()


__all__ = [
    "adam_step", "add", "add_", "batch_norm", "batch_norm_backward", "dropout", "dropout_backward",
    "embedding", "embedding_backward", "fill_", "gemm", "last_impl", "mse_loss",
    "mse_loss_backward", "sgd_step", "softmax", "softmax_cross_entropy",
    "softmax_cross_entropy_backward",
]
