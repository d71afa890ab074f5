"""Fused forward ops for inference: conv2d + bias (+ residual) + activation and linear + bias +
activation in one kernel (the bias, the residual and the activation are applied while each
output tile is written)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._native import _C
from ..tensor import Tensor, int_arg
from . import _common
from ._conv import IntOrPair, _hyper

# the ops of this family, exported as hipgrad.ops.<name>
__all__ = ["conv2d_bias_act", "conv2d_bias_act_packed", "linear_bias_act", "linear_bias_act_packed",
           "pack_linear_weight"]


def _activation(activation: Any, op: str) -> str:
    if activation is None:
        return "none"
    if not isinstance(activation, str):
        raise TypeError(f"{op}: activation must be a string (an activation kind or 'none') or "
                        f"None, got {activation!r}")
    return activation  # unknown names are rejected by the native front end, which lists the kinds


def conv2d_bias_act(x: Any, w: Any, bias: Any = None, *, stride: IntOrPair = 1,
                    padding: IntOrPair = 0, dilation: IntOrPair = 1, groups: int = 1,
                    activation: str | None = "relu", alpha: float = 0.01, residual: Any = None,
                    impl: str = "auto", out: Tensor | None = None) -> Tensor:
    """y (N, K, P, Q) = act(conv2d(x (N, C, H, W), w (K, C/groups, R, S)) + bias (K,) or None
    + residual (N, K, P, Q) or None): the residual add of a ResNet block fused into the conv's
    epilogue. activation: a kind of `activation()` or None / "none"; alpha as there. With `out`,
    y is written there (see _common.out_arg) and `out` is returned; `out` may be `residual`
    itself (the conv then accumulates onto it in place) but must not overlap it otherwise.
    Forward only."""
    op = "conv2d_bias_act"
    t = _common.tensors(op, x=x, w=w, bias=bias, residual=residual,
                        optional=("bias", "residual"))
    hyper = _hyper(op, stride, padding, dilation, groups)
    return _C.ops.conv2d_bias_act(t["x"], t["w"], t["bias"], t["residual"], *hyper,
                                  _activation(activation, op),
                                  _common.real(alpha, f"{op}: alpha", f32=True),
                                  _common.impl_arg(impl, op), _common.out_arg(out, op))


def linear_bias_act(x: Any, w: Any, bias: Any = None, *, activation: str | None = "relu",
                    alpha: float = 0.01, impl: str = "auto", out: Tensor | None = None) -> Tensor:
    """y (M, N) = act(x (M, K) @ w (N, K)^T + bias (N,) or None), w in PyTorch's Linear layout.
    activation, alpha and out as conv2d_bias_act. Forward only."""
    op = "linear_bias_act"
    t = _common.tensors(op, x=x, w=w, bias=bias, optional=("bias",))
    return _C.ops.linear_bias_act(t["x"], t["w"], t["bias"], _activation(activation, op),
                                  _common.real(alpha, f"{op}: alpha", f32=True), _common.impl_arg(impl, op),
                                  _common.out_arg(out, op))


def pack_linear_weight(w: Any, *, impl: str = "auto") -> Tensor:
    """w (N, K) (PyTorch Linear layout, on the CPU) packed once for the CPU's packed GEMM:
    (ceil(N / NR), K, NR) panels, NR = the GEMM's panel width under the CPU ISA in use. For
    weights that no longer change (the inference engine's): linear_bias_act_packed then skips
    packing w on every call. Packing again is needed if w changes or the CPU ISA is switched."""
    op = "pack_linear_weight"
    t = _common.tensors(op, w=w)
    return _C.ops.pack_linear_weight(t["w"], _common.impl_arg(impl, op))


def linear_bias_act_packed(x: Any, packed: Any, bias: Any = None, *, n: int,
                           activation: str | None = "relu", alpha: float = 0.01,
                           impl: str = "auto", out: Tensor | None = None) -> Tensor:
    """linear_bias_act with w given as pack_linear_weight(w) and n = w's N: y (M, n) =
    act(x (M, K) @ w^T + bias (n,) or None). CPU only. Forward only."""
    op = "linear_bias_act_packed"
    t = _common.tensors(op, x=x, packed=packed, bias=bias, optional=("bias",))
    return _C.ops.linear_bias_act_packed(t["x"], t["packed"], t["bias"], int_arg(n, f"{op}: n"),
                                         _activation(activation, op),
                                         _common.real(alpha, f"{op}: alpha", f32=True),
                                         _common.impl_arg(impl, op), _common.out_arg(out, op))


def conv2d_bias_act_packed(x: Any, packed: Any, w_shape: Sequence[int], bias: Any = None, *,
                           stride: IntOrPair = 1, padding: IntOrPair = 0, dilation: IntOrPair = 1,
                           activation: str | None = "relu", alpha: float = 0.01, residual: Any = None,
                           impl: str = "auto", out: Tensor | None = None) -> Tensor:
    """conv2d_bias_act (groups 1) with w (K, C, R, S) given as packed =
    pack_linear_weight(w.reshape(K, C*R*S)) and w_shape = w's shape, for frozen weights (the
    inference engine's): the output pixels are the GEMM's rows, against weight panels packed
    once. residual, activation, alpha and out as conv2d_bias_act. CPU only. Forward only."""
    op = "conv2d_bias_act_packed"
    t = _common.tensors(op, x=x, packed=packed, bias=bias, residual=residual,
                        optional=("bias", "residual"))
    stride, padding, dilation, _ = _hyper(op, stride, padding, dilation, 1)
    return _C.ops.conv2d_bias_act_packed(t["x"], t["packed"], _common.shape_arg(w_shape, "w_shape", op, 4),
                                         t["bias"], t["residual"], stride, padding, dilation,
                                         _activation(activation, op),
                                         _common.real(alpha, f"{op}: alpha", f32=True),
                                         _common.impl_arg(impl, op), _common.out_arg(out, op))
