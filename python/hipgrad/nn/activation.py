"""Elementwise activations: one op forward, one op backward (which sees x, y and dy)."""

from __future__ import annotations

from .. import ops
from .._args import real
from ..engine.steps import Step
from ..tensor import Tensor
from .module import Module

# exported as hipgrad.nn.<name>
__all__ = ["ELU", "GELU", "Hardsigmoid", "Hardswish", "LeakyReLU", "ReLU", "ReLU6", "Sigmoid",
           "Tanh"]


class _Activation(Module):
    kind = ""

    def __init__(self, alpha: float = 0.01) -> None:
        super().__init__()
        self.alpha = real(alpha, f"{type(self).__name__}: alpha", f32=True)

    def forward(self, x: Tensor) -> Tensor:
        y = ops.activation(x, self.kind, alpha=self.alpha, impl=self.impl)
        self._save(x, y)
        return y

    def backward(self, dy: Tensor) -> Tensor:
        x, y = self._take_saved()
        return ops.activation_backward(dy, x, y, self.kind, alpha=self.alpha,
                                       impl=self.impl)

    def to_steps(self, name: str) -> list[Step]:
        return [Step("act", name, attrs={"kind": self.kind, "alpha": self.alpha})]


class ReLU(_Activation):
    """max(x, 0)."""
    kind = "relu"

    def __init__(self) -> None:
        super().__init__()


class LeakyReLU(_Activation):
    """x for x > 0, negative_slope * x otherwise."""
    kind = "leaky_relu"

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__(real(negative_slope, "LeakyReLU: negative_slope", f32=True))
        self.negative_slope = self.alpha

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Sigmoid(_Activation):
    """1 / (1 + exp(-x))."""
    kind = "sigmoid"

    def __init__(self) -> None:
        super().__init__()


class Tanh(_Activation):
    kind = "tanh"

    def __init__(self) -> None:
        super().__init__()


class GELU(_Activation):
    """x * Phi(x) (approximate="none") or its tanh approximation (approximate="tanh")."""

    def __init__(self, approximate: str = "none") -> None:
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        super().__init__()
        self.approximate = approximate
        self.kind = "gelu" if approximate == "none" else "gelu_tanh"

    def extra_repr(self) -> str:
        return f"approximate='{self.approximate}'"

    def to_steps(self, name: str) -> list[Step]:
        return [Step("act", name, attrs={"kind": self.kind})]


class ELU(_Activation):
    """x for x > 0, alpha * (exp(x) - 1) otherwise."""
    kind = "elu"

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__(alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class ReLU6(_Activation):
    """min(max(x, 0), 6)."""
    kind = "relu6"

    def __init__(self) -> None:
        super().__init__()


class Hardsigmoid(_Activation):
    """min(max(x + 3, 0), 6) / 6, i.e. x/6 + 1/2 clipped to [0, 1] (PyTorch's)."""
    kind = "hardsigmoid"

    def __init__(self) -> None:
        super().__init__()


class Hardswish(_Activation):
    """x * hardsigmoid(x)."""
    kind = "hardswish"

    def __init__(self) -> None:
        super().__init__()
