"""2-D max and average pooling over NCHW tensors, PyTorch (and ONNX) semantics: floor or ceil
mode, padding at most half the kernel, max pooling pads with -inf, average pooling counts the
padding in the divisor (count_include_pad=True) or not.

ceil_mode: P = ceil((H + 2*ph - kh) / sh) + 1, less one when that last window would start in the
bottom padding (likewise Q); the last windows may reach past the padding. Average divisors: a
window's extent inside the padded input (count_include_pad, kh*kw in floor mode) or its number
of input elements."""

from __future__ import annotations

from typing import Any

from .._native import _C
from ..tensor import Tensor
from . import _common

# the ops of this family, exported as hipgrad.ops.<name>
__all__ = ["avg_pool2d", "avg_pool2d_backward", "max_pool2d", "max_pool2d_backward"]


def _geometry(op: str, kernel: Any, stride: Any, padding: Any) -> tuple[list[int], ...]:
    k = _common.pair(kernel, "kernel", op)
    s = k if stride is None else _common.pair(stride, "stride", op)
    return k, s, _common.pair(padding, "padding", op)


def max_pool2d(x: Any, kernel: Any, *, stride: Any = None, padding: Any = 0,
               impl: str = "auto", out: Tensor | None = None,
               with_argmax: bool = True, ceil_mode: bool = False) -> tuple[Tensor, Tensor | None]:
    """x (N, C, H, W) -> (y, argmax), both (N, C, P, Q) with P = (H + 2*ph - kh) // sh + 1
    (ceil_mode: see the module docstring).

    argmax is int64: the index h*W + w of each maximum inside its (n, c) plane; of equal maxima
    the first in row-major window order wins. stride None means stride = kernel.
    With `out`, y is written there (see _common.out_arg). with_argmax=False (inference: no
    backward follows) computes no argmax and returns (y, None).
    """
    t = _common.tensors("max_pool2d", x=x)
    k, s, p = _geometry("max_pool2d", kernel, stride, padding)
    y, argmax = _C.ops.max_pool2d(t["x"], k, s, p, _common.impl_arg(impl, "max_pool2d"),
                                  _common.out_arg(out, "max_pool2d"),
                                  _common.flag(with_argmax, "max_pool2d: with_argmax"),
                                  _common.flag(ceil_mode, "max_pool2d: ceil_mode"))
    return y, argmax


def max_pool2d_backward(dy: Any, argmax: Any, x_shape: Any, impl: str = "auto") -> Tensor:
    """dy, argmax (N, C, P, Q) -> dx of x_shape (N, C, H, W): dy scatter-added at argmax."""
    op = "max_pool2d_backward"
    t = _common.tensors(op, dy=dy, argmax=argmax)
    return _C.ops.max_pool2d_backward(t["dy"], t["argmax"],
                                      _common.shape_arg(x_shape, "x_shape", op, 4),
                                      _common.impl_arg(impl, op))


def avg_pool2d(x: Any, kernel: Any, *, stride: Any = None, padding: Any = 0,
               impl: str = "auto", out: Tensor | None = None, ceil_mode: bool = False,
               count_include_pad: bool = True) -> Tensor:
    """x (N, C, H, W) -> y (N, C, P, Q): window sums divided by kh*kw (padding counts; see the
    module docstring for ceil_mode and count_include_pad=False).
    With `out`, y is written there (see _common.out_arg) and `out` is returned."""
    op = "avg_pool2d"
    t = _common.tensors(op, x=x)
    k, s, p = _geometry(op, kernel, stride, padding)
    return _C.ops.avg_pool2d(t["x"], k, s, p, _common.impl_arg(impl, op), _common.out_arg(out, op),
                             _common.flag(ceil_mode, f"{op}: ceil_mode"),
                             _common.flag(count_include_pad, f"{op}: count_include_pad"))


def avg_pool2d_backward(dy: Any, x_shape: Any, kernel: Any, *, stride: Any = None,
                        padding: Any = 0, impl: str = "auto", ceil_mode: bool = False,
                        count_include_pad: bool = True) -> Tensor:
    """dy (N, C, P, Q) -> dx of x_shape (N, C, H, W): each dy spread evenly over its window
    (divided by the forward's divisor)."""
    op = "avg_pool2d_backward"
    t = _common.tensors(op, dy=dy)
    k, s, p = _geometry(op, kernel, stride, padding)
    return _C.ops.avg_pool2d_backward(t["dy"], _common.shape_arg(x_shape, "x_shape", op, 4), k, s,
                                      p, _common.impl_arg(impl, op),
                                      _common.flag(ceil_mode, f"{op}: ceil_mode"),
                                      _common.flag(count_include_pad, f"{op}: count_include_pad"))
