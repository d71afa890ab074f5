"""Dropout: zero each element with probability p in training, scale the rest by 1/(1-p)."""

from __future__ import annotations

from .. import ops
from .._args import real
from .. import random as _random
from ..engine.steps import Step
from ..tensor import Tensor, zeros
from .module import Module

# exported as hipgrad.nn.<name>
__all__ = ["Dropout"]


class Dropout(Module):
    """Identity in eval mode. The mask's seed comes from hipgrad's generator (hg.manual_seed)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = real(p, "Dropout: p", lo=0, hi=1)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            self._save(None)
            return x
        if self.p == 1.0:
            self._save("all")
            return zeros(x.shape, device=x.device)
        y, mask = ops.dropout(x, self.p, _random.next_seed(), impl=self.impl)
        self._save(mask)
        return y

    def backward(self, dy: Tensor) -> Tensor:
        (mask,) = self._take_saved()
        if mask is None:
            return dy
        if isinstance(mask, str):
            return zeros(dy.shape, device=dy.device)
        return ops.dropout_backward(dy, mask, self.p, impl=self.impl)

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def to_steps(self, name: str) -> list[Step]:
        return []  # the identity at inference
