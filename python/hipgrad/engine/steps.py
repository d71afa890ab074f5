"""The engine's program: a list of steps, each one op (or a residual block holding two lists).

This module is the one place that knows how steps nest: `walk` visits every step of a plan,
`copy_plan` copies the structure, and everything else (quantization, reports, saving, the
memory planner) goes through them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..tensor import Tensor

PRECISIONS = ("fp32", "int8")
FUSABLE = {"relu", "leaky_relu", "sigmoid", "tanh", "gelu", "gelu_tanh", "elu"}  # act kinds a step can end in


@dataclass
class Step:
    """One node of the plan. `kind` is one of conv, linear, act, maxpool, avgpool, flatten,
    affine (a BatchNorm with no conv before it), residual, embedding, softmax. A residual
    step runs act(body(x) + shortcut(x)); an empty shortcut is the identity."""

    kind: str
    name: str
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # host copies (float32)
    attrs: dict[str, Any] = field(default_factory=dict)
    body: list["Step"] = field(default_factory=list)
    shortcut: list["Step"] = field(default_factory=list)
    tensors: dict[str, Tensor] = field(default_factory=dict)  # device copies, read-only
    x_scale: float | None = None  # INT8: input activation scale from calibration

    def branches(self) -> list[tuple[str, list["Step"]]]:
        """The nested step lists, by name, in the order they run."""
        return [("body", self.body), ("shortcut", self.shortcut)] if self.kind == "residual" else []


def walk(steps: list[Step], where: tuple[str, ...] = ()) -> Iterator[tuple[Step, tuple[str, ...]]]:
    """Every step of `steps`, depth first in run order: a residual step, then its body, then its
    shortcut. Each comes with `where`, the branch names that lead to it (() at the top)."""
    for s in steps:
        yield s, where
        for name, branch in s.branches():
            yield from walk(branch, where + (name,))


def all_steps(steps: list[Step]) -> Iterator[Step]:
    """`walk` without the branch names."""
    return (s for s, _ in walk(steps))


def copy_plan(steps: list[Step]) -> list[Step]:
    """A copy of the nesting with fresh `arrays`/`attrs`/`tensors` dicts (their values shared),
    so one copy's dicts can be edited without touching the other's."""
    return [replace(s, arrays=dict(s.arrays), attrs=dict(s.attrs), tensors=dict(s.tensors),
                    body=copy_plan(s.body), shortcut=copy_plan(s.shortcut)) for s in steps]
