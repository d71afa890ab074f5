"""Gradient accumulation into Parameter.grad, with hooks (the data-parallel trainer's buckets
start their all-reduce from one: hipgrad.training.grad_reducer)."""

from __future__ import annotations

from typing import Any

from .. import ops

__all__: list[str] = []

# each is called with the parameter after every accumulation into its gradient
GRAD_HOOKS: list[Any] = []


def accumulate_grad(param: Any, grad: Any) -> None:
    """param.grad += grad (the first gradient is taken as is: ops return fresh tensors)."""
    if param.grad is None:
        param.grad = grad
    else:
        ops.add_(param.grad, grad)
    for hook in GRAD_HOOKS:
        hook(param)
