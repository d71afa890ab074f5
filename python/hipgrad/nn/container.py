"""Containers: Sequential, Residual (body(x) + shortcut(x)) and Identity."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from .. import ops
from ..engine.steps import Step
from ..tensor import Tensor
from .module import Module, run_child

# exported as hipgrad.nn.<name>
__all__ = ["Identity", "Residual", "Sequential"]


class Sequential(Module):
    """Runs its children in order; backward runs their backwards in reverse.
    Children are named "0", "1", ... (or by an OrderedDict's keys), as in PyTorch."""

    def __init__(self, *modules: Any) -> None:
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, m in modules[0].items():
                self.add_module(str(name), m)
        else:
            for i, m in enumerate(modules):
                self.add_module(str(i), m)

    def append(self, module: Module) -> Sequential:
        self.add_module(str(len(self._module_names)), module)
        return self

    def __len__(self) -> int:
        return len(self._module_names)

    def __iter__(self) -> Iterator[Module]:
        return self.children()

    def __getitem__(self, index: int | slice) -> Any:
        layers = list(self.children())
        if isinstance(index, slice):
            return Sequential(*layers[index])
        return layers[index]

    def _input(self, x: Any) -> Any:
        return x  # each child converts NumPy input its own way (Embedding: int64 indices)

    def forward(self, x: Any) -> Any:
        for name, m in self.named_children():
            x = run_child(name, m, m, x)
        return x

    def backward(self, dy: Tensor) -> Any:
        for name, m in reversed(list(self.named_children())):
            dy = run_child(name, m, m.backward, dy)
        return dy

    def to_steps(self, name: str) -> list[Step]:
        return [s for child, m in self.named_children()
                for s in m.to_steps(f"{name}.{child}" if name else child)]


class Identity(Module):
    """y = x; dx = dy."""

    def forward(self, x: Any) -> Any:
        return x

    def backward(self, dy: Tensor) -> Tensor:
        return dy

    def to_steps(self, name: str) -> list[Step]:
        return []


class Residual(Module):
    """y = body(x) + shortcut(x), shortcut the identity when None (a ResNet block without its
    final activation: follow it by ReLU()). Keys: "body.*" and "shortcut.*"."""

    def __init__(self, body: Module, shortcut: Module | None = None) -> None:
        super().__init__()
        if not isinstance(body, Module):
            raise TypeError(f"Residual: body must be a Module, got {type(body).__name__}")
        if shortcut is not None and not isinstance(shortcut, Module):
            raise TypeError(f"Residual: shortcut must be a Module or None, got "
                            f"{type(shortcut).__name__}")
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: Tensor) -> Tensor:
        y = run_child("body", self.body, self.body, x)
        s = x if self.shortcut is None else run_child("shortcut", self.shortcut, self.shortcut, x)
        if tuple(y.shape) != tuple(s.shape):
            raise ValueError(f"Residual: body gives shape {tuple(y.shape)} but the shortcut gives "
                             f"{tuple(s.shape)}")
        return ops.add(y, s, impl=self.impl)

    def backward(self, dy: Tensor) -> Tensor:
        dx_body = run_child("body", self.body, self.body.backward, dy)
        dx_short = dy if self.shortcut is None else run_child("shortcut", self.shortcut,
                                                               self.shortcut.backward, dy)
        return ops.add(dx_body, dx_short, impl=self.impl)

    def to_steps(self, name: str) -> list[Step]:
        short = [] if self.shortcut is None else self.shortcut.to_steps(f"{name}.shortcut")
        return [Step("residual", name, body=self.body.to_steps(f"{name}.body"), shortcut=short)]
