"""The op contract: every op takes hg.Tensors (NumPy arrays are treated as CPU tensors), returns
new tensors on the inputs' device, and accepts impl="auto"|"handwritten"|"vendor".
force_kernel(op, name) runs one candidate kernel by name (tests, benches)."""

from __future__ import annotations

from .._native import _C
from ._activation import activation, activation_backward
from ._attention import (attention, attention_backward, bmm, clip_grad_norm_, layer_norm,
                         layer_norm_backward, scale_, sum_squares)
from ._conv import bias_add, bias_backward, conv2d, conv2d_backward_data, conv2d_backward_weight
from ._force import force_kernel
from ._fused import conv2d_bias_act, linear_bias_act, linear_bias_act_packed, pack_linear_weight
from ._gemm import gemm
from ._layers import (add, add_, batch_norm, batch_norm_backward, dropout, dropout_backward,
                      embedding, embedding_backward, fill_)
from ._loss import (mse_loss, mse_loss_backward, softmax, softmax_cross_entropy,
                    softmax_cross_entropy_backward)
from ._optim import adam_step, sgd_step
from ._pool import avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward
from ._quant import qconv2d, qgemm, quantize


def last_impl() -> dict:
    """What the latest op call on this thread ran: op, impl (kernel name), key, device, ms."""
    return _C.last_run()


__all__ = [
    "activation", "activation_backward", "attention", "attention_backward", "bmm",
    "clip_grad_norm_", "layer_norm", "layer_norm_backward", "scale_", "sum_squares", "adam_step", "add", "add_", "avg_pool2d",
    "avg_pool2d_backward", "batch_norm", "batch_norm_backward", "bias_add", "bias_backward",
    "conv2d", "conv2d_backward_data", "conv2d_backward_weight", "conv2d_bias_act", "dropout",
    "dropout_backward", "embedding", "embedding_backward", "fill_", "force_kernel", "gemm",
    "last_impl", "linear_bias_act", "linear_bias_act_packed", "max_pool2d", "max_pool2d_backward",
    "mse_loss", "mse_loss_backward", "pack_linear_weight", "qconv2d", "qgemm", "quantize", "sgd_step", "softmax",
    "softmax_cross_entropy", "softmax_cross_entropy_backward",
]
