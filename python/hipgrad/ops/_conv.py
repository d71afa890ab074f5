"""2-D convolution (NCHW, weights (K, C/groups, R, S)) with its two backward ops, and the bias
helpers shared with linear layers.

Output size as PyTorch: P = (H + 2*pad_h - dil_h*(R-1) - 1) // stride_h + 1, likewise Q.
stride, padding and dilation take an int or an (h, w) pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._native import _C
from ..tensor import Tensor, int_arg
from . import _common

# the ops of this family, exported as hipgrad.ops.<name>
__all__ = ["bias_add", "bias_backward", "conv2d", "conv2d_backward_data", "conv2d_backward_weight"]

IntOrPair = int | Sequence[int]


def _hyper(op: str, stride: Any, padding: Any, dilation: Any, groups: Any) -> tuple:
    """stride, padding, dilation as [h, w] pairs and groups as an int, each checked by type."""
    return (_common.pair(stride, "stride", op), _common.pair(padding, "padding", op),
            _common.pair(dilation, "dilation", op), int_arg(groups, f"{op}: groups"))


def conv2d(x: Any, w: Any, bias: Any = None, *, stride: IntOrPair = 1, padding: IntOrPair = 0,
           dilation: IntOrPair = 1, groups: int = 1, impl: str = "auto",
           out: Tensor | None = None) -> Tensor:
    """y (N, K, P, Q) = conv2d(x (N, C, H, W), w (K, C/groups, R, S)) + bias (K,) or None.
    With `out`, y is written there (see _common.out_arg) and `out` is returned."""
    t = _common.tensors("conv2d", x=x, w=w, bias=bias, optional=("bias",))
    hyper = _hyper("conv2d", stride, padding, dilation, groups)
    return _C.ops.conv2d(t["x"], t["w"], t["bias"], *hyper, _common.impl_arg(impl, "conv2d"),
                         _common.out_arg(out, "conv2d"))


def conv2d_backward_data(dy: Any, w: Any, x_shape: Sequence[int], *, stride: IntOrPair = 1,
                         padding: IntOrPair = 0, dilation: IntOrPair = 1, groups: int = 1,
                         impl: str = "auto") -> Tensor:
    """dx (x_shape = (N, C, H, W)): the gradient of conv2d with respect to x, for dy (N, K, P, Q)
    and w (K, C/groups, R, S)."""
    op = "conv2d_backward_data"
    t = _common.tensors(op, dy=dy, w=w)
    shape = _common.shape_arg(x_shape, "x_shape", op, 4)
    hyper = _hyper(op, stride, padding, dilation, groups)
    return _C.ops.conv2d_backward_data(t["dy"], t["w"], shape, *hyper, _common.impl_arg(impl, op))


def conv2d_backward_weight(dy: Any, x: Any, w_shape: Sequence[int], *, stride: IntOrPair = 1,
                           padding: IntOrPair = 0, dilation: IntOrPair = 1, groups: int = 1,
                           impl: str = "auto") -> Tensor:
    """dw (w_shape = (K, C/groups, R, S)): the gradient of conv2d with respect to w, summed over
    the batch, for dy (N, K, P, Q) and x (N, C, H, W)."""
    op = "conv2d_backward_weight"
    t = _common.tensors(op, dy=dy, x=x)
    shape = _common.shape_arg(w_shape, "w_shape", op, 4)
    hyper = _hyper(op, stride, padding, dilation, groups)
    return _C.ops.conv2d_backward_weight(t["dy"], t["x"], shape, *hyper,
                                         _common.impl_arg(impl, op))


def bias_add(x: Any, bias: Any, impl: str = "auto", *, out: Tensor | None = None) -> Tensor:
    """x (N, C, ...) + bias (C,) broadcast over axis 1; x has 2 or more dimensions.
    With `out`, the sum is written there (see _common.out_arg) and `out` is returned."""
    t = _common.tensors("bias_add", x=x, bias=bias)
    return _C.ops.bias_add(t["x"], t["bias"], _common.impl_arg(impl, "bias_add"),
                           _common.out_arg(out, "bias_add"))


def bias_backward(dy: Any, impl: str = "auto") -> Tensor:
    """db (C,): dy (N, C, ...) summed over every axis but 1."""
    t = _common.tensors("bias_backward", dy=dy)
    return _C.ops.bias_backward(t["dy"], _common.impl_arg(impl, "bias_backward"))
