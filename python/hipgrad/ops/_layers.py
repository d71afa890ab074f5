"""Layer helpers: add / add_ / fill_, batch norm, dropout, embedding (each with its backward)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._native import _C
from ..tensor import Tensor, int_arg
from . import _common
from ._optim import inplace_tensor

# the ops of this family, exported as hipgrad.ops.<name>
__all__ = ["add", "add_", "batch_norm", "batch_norm_backward", "dropout",
           "dropout_backward", "embedding", "embedding_backward", "fill_"]


def add(a: Any, b: Any, *, alpha: float = 1.0, impl: str = "auto", out: Tensor | None = None) -> Tensor:
    """a + alpha*b; a and b float32 of one shape. With `out`, written there (see
    _common.out_arg; add_ is the in-place form) and `out` is returned."""
    t = _common.tensors("add", a=a, b=b)
    return _C.ops.add(t["a"], t["b"], _common.real(alpha, "add: alpha", f32=True),
                      _common.impl_arg(impl, "add"),
                      _common.out_arg(out, "add"))


def add_(a: Tensor, b: Any, *, alpha: float = 1.0, impl: str = "auto") -> Tensor:
    """a += alpha*b in place; returns a."""
    a = inplace_tensor(a, "a", "add_")
    t = _common.tensors("add_", b=b)
    _C.ops.add_(a, t["b"], _common.real(alpha, "add_: alpha", f32=True),
                 _common.impl_arg(impl, "add_"))
    return a


def fill_(t: Tensor, value: float, impl: str = "auto") -> Tensor:
    """Every element of t (float32) set to value, in place; returns t."""
    t = inplace_tensor(t, "t", "fill_")
    _C.ops.fill_(t, _common.real(value, "fill_: value", finite=False, f32=True), _common.impl_arg(impl, "fill_"))
    return t


def batch_norm(x: Any, gamma: Any, beta: Any, running_mean: Tensor, running_var: Tensor, *,
               training: bool, momentum: float = 0.1, eps: float = 1e-5,
               impl: str = "auto", out: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """(y, save_mean, save_invstd) with PyTorch's BatchNorm semantics; with `out`, y is written
    there (see _common.out_arg).

    x (N, C) or (N, C, H, W); gamma, beta, running_mean, running_var (C,). Training normalises
    with the batch mean and biased variance and updates running_mean / running_var in place
    (running = (1 - momentum)*running + momentum*batch, unbiased variance); eval normalises with
    the running statistics. save_mean and save_invstd (C,) feed batch_norm_backward."""
    op = "batch_norm"
    running_mean = inplace_tensor(running_mean, "running_mean", op)
    running_var = inplace_tensor(running_var, "running_var", op)
    t = _common.tensors(op, x=x, gamma=gamma, beta=beta)
    y, save_mean, save_invstd = _C.ops.batch_norm(
        t["x"], t["gamma"], t["beta"], running_mean, running_var, _common.flag(training, f"{op}: training"),
        _common.real(momentum, f"{op}: momentum", lo=0, hi=1, f32=True),
        _common.real(eps, f"{op}: eps", lo=0, lo_open=True, f32=True), _common.impl_arg(impl, op), _common.out_arg(out, op))
    return y, save_mean, save_invstd


def batch_norm_backward(dy: Any, x: Any, gamma: Any, save_mean: Any, save_invstd: Any, *,
                        training: bool = True, impl: str = "auto") -> tuple[Tensor, Tensor, Tensor]:
    """(dx, dgamma, dbeta) for batch_norm; training: through the batch statistics,
    eval: dx = dy*gamma*invstd."""
    op = "batch_norm_backward"
    t = _common.tensors(op, dy=dy, x=x, gamma=gamma, save_mean=save_mean, save_invstd=save_invstd)
    dx, dgamma, dbeta = _C.ops.batch_norm_backward(
        t["dy"], t["x"], t["gamma"], t["save_mean"], t["save_invstd"],
        _common.flag(training, f"{op}: training"),
        _common.impl_arg(impl, op))
    return dx, dgamma, dbeta


def _seed_arg(seed: Any) -> int:
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"dropout: seed must be an int, got {seed!r}")
    if not 0 <= int(seed) < 2**64:
        raise ValueError(f"dropout: seed must be in [0, 2**64), got {int(seed)}")
    return int(seed)


def _p_arg(p: Any, op: str) -> float:
    return _common.real(p, f"{op}: p", lo=0, hi=1, hi_open=True, f32=True)


def dropout(x: Any, p: float, seed: int, impl: str = "auto") -> tuple[Tensor, Tensor]:
    """(y, mask): mask (uint8, x's shape) keeps each element with probability 1 - p as a fixed
    function of (seed, element index); y = x*mask/(1 - p). 0 <= p < 1."""
    t = _common.tensors("dropout", x=x)
    y, mask = _C.ops.dropout(t["x"], _p_arg(p, "dropout"), _seed_arg(seed), _common.impl_arg(impl, "dropout"))
    return y, mask


def dropout_backward(dy: Any, mask: Any, p: float, impl: str = "auto") -> Tensor:
    """dx = dy*mask/(1 - p); mask is dropout's uint8 mask, dy's shape."""
    t = _common.tensors("dropout_backward", dy=dy, mask=mask)
    return _C.ops.dropout_backward(t["dy"], t["mask"],
                                   _p_arg(p, "dropout_backward"),
                                   _common.impl_arg(impl, "dropout_backward"))


def embedding(weight: Any, idx: Any, impl: str = "auto", *, out: Tensor | None = None) -> Tensor:
    """weight[idx]: weight (num, dim) float32, idx int64 of any shape in [0, num);
    the result has shape idx.shape + (dim,); with `out`, it is written there (_common.out_arg)."""
    t = _common.tensors("embedding", weight=weight, idx=idx)
    return _C.ops.embedding(t["weight"], t["idx"], _common.impl_arg(impl, "embedding"),
                            _common.out_arg(out, "embedding"))


def embedding_backward(dy: Any, idx: Any, num: int, impl: str = "auto") -> Tensor:
    """dW (num, dim): the rows of dy (idx.shape + (dim,)) summed into their idx rows; rows no
    index names are zero. Deterministic."""
    t = _common.tensors("embedding_backward", dy=dy, idx=idx)
    return _C.ops.embedding_backward(t["dy"], t["idx"], int_arg(num, "embedding_backward: num"),
                                     _common.impl_arg(impl, "embedding_backward"))
