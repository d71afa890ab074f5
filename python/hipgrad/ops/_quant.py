"""INT8 inference ops: symmetric quantization and int8 GEMM / convolution with int32
accumulation and a fused dequantize + bias + activation epilogue."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._native import _C
from ..tensor import Tensor
from . import _common
from ._conv import _hyper
from ._fused import _activation


def _scale(x_scale: Any, what: str) -> float:
    """A quantization scale: a real number, finite and > 0 also in float32."""
    v = _common.real(x_scale, what, finite=False)
    with np.errstate(over="ignore", under="ignore"):
        v32 = float(np.float32(v))
    if not (math.isfinite(v) and v > 0 and math.isfinite(v32) and v32 > 0):
        raise ValueError(f"{what} must be a finite positive scale (also in float32), got {v!r}")
    return v


def _act(activation: Any, op: str) -> str:
    act = _activation(activation, op)
    return "" if act == "none" else act

# the ops of this family, exported as hipgrad.ops.<name>
__all__ = ["qconv2d", "qgemm", "qpack_weight", "quantize"]


def quantize(x: Any, scale: float, *, impl: str = "auto", out: Tensor | None = None) -> Tensor:
    """int8 q = clamp(round_half_even(x / scale), -127, 127), same shape as x.
    With `out` (an int8 tensor, see _common.out_arg), q is written there and `out` is returned."""
    t = _common.tensors("quantize", x=x)
    return _C.ops.quantize(t["x"], _scale(scale, "quantize: scale"),
                            _common.impl_arg(impl, "quantize"),
                           _common.out_arg(out, "quantize"))


def qgemm(xq: Any, wq: Any, x_scale: float, w_scale: Any, bias: Any = None, *,
          activation: str | None = None, alpha: float = 0.01, impl: str = "auto",
          out: Tensor | None = None) -> Tensor:
    """float32 (M, N) = act(x_scale * w_scale[n] * (xq @ wq.T)[m, n] + bias[n]).

    xq (M, K) int8, wq (N, K) int8 (Linear's layout), w_scale (N,) float32, bias (N,) or None;
    activation: None or an activation kind of `activation()`. With `out`, the result is written
    there (see _common.out_arg) and `out` is returned.
    """
    t = _common.tensors("qgemm", xq=xq, wq=wq, w_scale=w_scale, bias=bias, optional=("bias",))
    return _C.ops.qgemm(t["xq"], t["wq"], _scale(x_scale, "qgemm: x_scale"), t["w_scale"], t["bias"],
                        _act(activation, "qgemm"),
                        _common.real(alpha, "qgemm: alpha", f32=True), _common.impl_arg(impl, "qgemm"),
                        _common.out_arg(out, "qgemm"))


def qconv2d(xq: Any, wq: Any, x_scale: float, w_scale: Any, bias: Any = None, *, stride: Any = 1,
            padding: Any = 0, dilation: Any = 1, groups: int = 1, activation: str | None = None,
            alpha: float = 0.01, impl: str = "auto", out: Tensor | None = None,
            packed: Any = None) -> Tensor:
    """float32 (N, K, P, Q): conv2d of int8 xq (N, C, H, W) and int8 wq (K, C/groups, R, S) with
    int32 accumulation, dequantized by x_scale * w_scale[k], plus bias, then the activation.
    With `out`, the result is written there (see _common.out_arg) and `out` is returned.
    `packed` (CPU): qpack_weight(wq), so the kernel does not pack wq on every call; one packed
    under another CPU ISA or for another shape is refused with a ValueError."""
    op = "qconv2d"
    t = _common.tensors(op, xq=xq, wq=wq, w_scale=w_scale, bias=bias, packed=packed,
                        optional=("bias", "packed"))
    return _C.ops.qconv2d(t["xq"], t["wq"], _scale(x_scale, f"{op}: x_scale"), t["w_scale"], t["bias"],
                          *_hyper(op, stride, padding, dilation, groups), _act(activation, op),
                          _common.real(alpha, f"{op}: alpha", f32=True), _common.impl_arg(impl, op),
                          _common.out_arg(out, op), t["packed"])


def qpack_weight(wq: Any, *, impl: str = "auto") -> Tensor:
    """int8 weights wq (rows, ...) on the CPU, viewed as (rows, K), packed once in the layout the
    CPU ISA in use gives qconv2d (`packed=`): a 1-D int32 tensor with a header naming the ISA
    and shape, the packed rows and their correction terms. Pack again after the ISA changes."""
    t = _common.tensors("qpack_weight", wq=wq)
    return _C.ops.qpack_weight(t["wq"], _common.impl_arg(impl, "qpack_weight"))
