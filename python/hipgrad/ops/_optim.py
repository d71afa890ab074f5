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


def _hyper(value: Any, op: str, name: str, hi: float | None = None) -> float:
    """A hyper-parameter of a fused step: finite, >= 0 (below hi when given), in float32."""
    return _common.real(value, f"{op}: {name}", lo=0, hi=hi, hi_open=True, f32=True)


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
    _C.ops.sgd_step(param, t["grad"], momentum_buf, _hyper(lr, op, "lr"),
                    _hyper(momentum, op, "momentum"), _hyper(weight_decay, op, "weight_decay"),
                    _common.flag(nesterov, f"{op}: nesterov"), _common.impl_arg(impl, op))


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
    _C.ops.adam_step(param, t["grad"], m, v, int_arg(step, f"{op}: step"), _hyper(lr, op, "lr"),
                     _hyper(beta1, op, "beta1", hi=1), _hyper(beta2, op, "beta2", hi=1),
                     _common.real(eps, f"{op}: eps", lo=0, lo_open=True, f32=True),
                     _hyper(weight_decay, op, "weight_decay"),
                     _common.flag(decoupled, f"{op}: decoupled"),
                     _common.impl_arg(impl, op))
