"""Optimizer steps, in place, with PyTorch's torch.optim.SGD / Adam / AdamW semantics."""

from __future__ import annotations

from typing import Any

from .._native import _C
from ..tensor import Tensor, int_arg
from . import _common

# the ops of this family, exported as hipgrad.ops.<name>
__all__ = ["adam_step", "sgd_step"]


def inplace_tensor(x: Any, name: str, op: str) -> Tensor:
    """An hg.Tensor updated in place; a NumPy array would be copied, losing the update."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: {name} is updated in place and must be a hipgrad Tensor, "
                        f"got {type(x).__name__} (wrap it once with hg.tensor(...))")
    return x


def sgd_step(param: Tensor, grad: Any, momentum_buf: Tensor | None, *, lr: float,
             momentum: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False,
             impl: str = "auto") -> None:
    """One SGD step in place (dampening 0): g = grad + weight_decay*param; with momentum,
    buf = momentum*buf + g and g = g + momentum*buf (nesterov) or buf; param -= lr*g.

    param, grad, momentum_buf: float32 of one shape; momentum_buf starts at zero and may be None
    when momentum == 0."""
    op = "sgd_step"
    param = inplace_tensor(param, "param", op)
    if momentum_buf is not None:
        momentum_buf = inplace_tensor(momentum_buf, "momentum_buf", op)
    t = _common.tensors(op, grad=grad)
    _C.ops.sgd_step(param, t["grad"], momentum_buf, float(lr), float(momentum),
                    float(weight_decay), bool(nesterov), _common.impl_arg(impl, op))


def adam_step(param: Tensor, grad: Any, m: Tensor, v: Tensor, *, step: int, lr: float,
              beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
              weight_decay: float = 0.0, decoupled: bool = False, impl: str = "auto") -> None:
    """One Adam (decoupled=False, L2 weight decay) or AdamW (decoupled=True) step in place.

    param, grad, m, v: float32 of one shape; m and v start at zero; step counts from 1."""
    op = "adam_step"
    param = inplace_tensor(param, "param", op)
    m = inplace_tensor(m, "m", op)
    v = inplace_tensor(v, "v", op)
    t = _common.tensors(op, grad=grad)
    _C.ops.adam_step(param, t["grad"], m, v, int_arg(step, f"{op}: step"), float(lr), float(beta1),
                     float(beta2), float(eps), float(weight_decay), bool(decoupled),
                     _common.impl_arg(impl, op))
