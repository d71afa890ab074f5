"""Containers: Sequential, Residual (body(x) + shortcut(x)), Concat (branches joined along a
dimension, Fire/Inception-style) and Identity.

For the inference engine, containers lower themselves into a graph (`lower_graph`, see
hipgrad.engine.steps.Lowering): Sequential chains its children, Residual ends in an `add` step
reading the body's and the shortcut's values, Concat in a `concat` step reading every branch's
value; the block input is one value read by all of them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from .. import ops
from ..engine import copies
from ..engine.steps import Lowering, Step, child_name, lower_module
from ..tensor import Tensor
from .module import Module, run_child

# exported as hipgrad.nn.<name>
__all__ = ["Concat", "Identity", "Residual", "Sequential"]


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

    def lower_graph(self, low: Lowering, name: str, x: str) -> str:
        for child, m in self.named_children():
            x = low.module(m, child_name(name, child), x)
        return x

    def to_steps(self, name: str) -> list[Step]:
        """The children's steps, wired (the first reads the value "input")."""
        return lower_module(self, name).steps


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

    def lower_graph(self, low: Lowering, name: str, x: str) -> str:
        body = low.module(self.body, child_name(name, "body"), x)
        short = x if self.shortcut is None else low.module(self.shortcut, child_name(name, "shortcut"), x)
        return low.add(Step("add", name or "add", [body, short]))

    def to_steps(self, name: str) -> list[Step]:
        """The block's steps, wired (the first read the value "input"), ending in the add."""
        return lower_module(self, name).steps


class Concat(Module):
    """y = concat([branch(x) for branch in branches], dim): every branch reads the same x (a
    SqueezeNet Fire module's expand 1x1 and 3x3, an Inception block). Backward splits dy along
    `dim` and sums the branches' dx. Children are named "0", "1", ... as in Sequential."""

    def __init__(self, *branches: Module, dim: int = 1) -> None:
        super().__init__()
        if not branches:
            raise ValueError("Concat: needs at least one branch")
        for i, b in enumerate(branches):
            if not isinstance(b, Module):
                raise TypeError(f"Concat: branch {i} must be a Module, got {type(b).__name__}")
            self.add_module(str(i), b)
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise TypeError(f"Concat: dim must be an int, got {dim!r}")
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        ys = [run_child(n, m, m, x) for n, m in self.named_children()]
        y = ops.concat(ys, self.dim, impl=self.impl)  # (checks the shapes, names them)
        axis = copies.norm_axis(self.dim, len(y.shape), "Concat")
        self._save(tuple(int(t.shape[axis]) for t in ys), axis)
        return y

    def backward(self, dy: Tensor) -> Tensor:
        sizes, axis = self._take_saved()
        parts = ops.split(dy, axis, list(sizes), impl=self.impl)
        dx = None
        for (n, m), part in zip(self.named_children(), parts):
            d = run_child(n, m, m.backward, part)
            dx = d if dx is None else ops.add(dx, d, impl=self.impl)
        return dx

    def lower_graph(self, low: Lowering, name: str, x: str) -> str:
        ys = [low.module(m, child_name(name, n), x) for n, m in self.named_children()]
        return low.add(Step("concat", name or "concat", ys, attrs={"axis": self.dim}))

    def to_steps(self, name: str) -> list[Step]:
        """The branches' steps, wired (each first reads the value "input"), ending in the concat."""
        return lower_module(self, name).steps

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
