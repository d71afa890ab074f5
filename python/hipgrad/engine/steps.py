"""The engine's program: a graph of steps over named values.

A value is a string name: a graph input (usually "input") or the output of exactly one step.
A step reads its `inputs` (value names) and writes its `outputs`; constant operands are the
step's own arrays, never values (an `add` of a constant has one input and `arrays["b"]`).
`Graph.steps` are in topological order: every step comes after the steps writing its inputs.

Step kinds and their attrs (see GRAPH_CONTRACT.md): conv (stride, padding, dilation, groups, act,
alpha; a second input after the residual fusion pass: the value added before the activation),
conv_transpose (stride, padding, dilation, groups, output_padding; weight (C_in, C_out/groups,
R, S); PyTorch's ConvTranspose2d),
linear (act, alpha; on the last axis), act (kind, alpha), maxpool / avgpool (kernel, stride,
padding, ceil_mode, count_include_pad), global_avgpool, batch_norm (eps), flatten (start_dim /
end_dim as nn.Flatten, or ONNX's axis), reshape (shape), transpose (perm), pad (pads, value),
add / sub / mul / div (two inputs, or one and arrays["b"]; act), concat (axis), split (axis,
sizes), reduce_mean (axes, keepdims), matmul, softmax (axis), embedding, layer_norm (eps),
attention (causal, scale).

nn layers make their steps in `to_steps(name)` with no wiring (inputs and outputs empty: "the
previous value in, a new value out"); `Lowering` wires them into a chain, and containers with
branches (nn.Residual, nn.Concat) lower themselves with `lower_graph(lowering, name, x)`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..tensor import Tensor

PRECISIONS = ("fp32", "int8")
# act kinds a conv / linear / add step can end in (the native epilogues' ActKind)
FUSABLE = {"relu", "leaky_relu", "sigmoid", "tanh", "gelu", "gelu_tanh", "elu", "relu6",
           "hardsigmoid", "hardswish"}
VIEWS = ("flatten", "reshape")  # steps whose output is a view of their input (no buffer)


@dataclass
class Step:
    """One node of the plan: op `kind` reading the values `inputs`, writing `outputs`."""

    kind: str
    name: str
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # host copies (float32)
    attrs: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, Tensor] = field(default_factory=dict)  # device copies, read-only
    x_scale: float | None = None  # INT8: input activation scale from calibration


@dataclass
class Graph:
    """Steps in topological order, the graph's input values and its output values. Iterating a
    graph gives its steps (len() counts them)."""

    steps: list[Step]
    inputs: list[str] = field(default_factory=lambda: ["input"])
    outputs: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, i: int) -> Step:
        return self.steps[i]

    def producers(self) -> dict[str, Step]:
        """value -> the step writing it."""
        return {v: s for s in self.steps for v in s.outputs}

    def readers(self) -> dict[str, list[Step]]:
        """value -> the steps reading it, in run order (a step reading it twice appears once);
        a graph output counts no reader here."""
        out: dict[str, list[Step]] = {}
        for s in self.steps:
            for v in dict.fromkeys(s.inputs):
                out.setdefault(v, []).append(s)
        return out

    def copy(self) -> "Graph":
        """A copy with fresh step objects and dicts (arrays and tensors shared), so one copy can
        be edited without touching the other."""
        return Graph([replace(s, inputs=list(s.inputs), outputs=list(s.outputs), arrays=dict(s.arrays),
                              attrs=dict(s.attrs), tensors=dict(s.tensors)) for s in self.steps],
                     list(self.inputs), list(self.outputs))

    def validate(self, where: str = "plan") -> "Graph":
        """The graph itself, or a ValueError naming the first broken rule: every value written
        once, read only after it is written, every step writing something, every output
        written."""
        if not self.inputs:
            raise ValueError(f"{where}: the graph has no input")
        known = set(self.inputs)
        for s in self.steps:
            if not s.outputs:
                raise ValueError(f"{where}: step {s.name!r} ({s.kind}) writes no value")
            for v in s.inputs:
                if v not in known:
                    raise ValueError(f"{where}: step {s.name!r} ({s.kind}) reads {v!r}, which no "
                                     "earlier step writes and which is no graph input")
            for v in s.outputs:
                if v in known:
                    raise ValueError(f"{where}: value {v!r} is written twice (step {s.name!r})")
                known.add(v)
        missing = [v for v in self.outputs if v not in known]
        if not self.outputs or missing:
            raise ValueError(f"{where}: graph outputs {missing or '[]'} are not written by any step")
        return self


def host_copy(t: Any) -> np.ndarray:
    """A float32 host copy of a Parameter, tensor or array: the step's own weights, which later
    training of the model does not change."""
    data = getattr(t, "data", t)
    return np.array(data.numpy() if hasattr(data, "numpy") else data, dtype=np.float32, copy=True)


def int_pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def child_name(name: str, child: str) -> str:
    """The path of a child layer: "child" at the root, "name.child" below."""
    return f"{name}.{child}" if name else child


class Lowering:
    """Collects the wired steps of a model being lowered (see the module docstring)."""

    def __init__(self, inputs: tuple[str, ...] = ("input",)) -> None:
        self.steps: list[Step] = []
        self.inputs = list(inputs)
        self._names: set[str] = set(inputs)

    def value(self, base: str) -> str:
        """A value name not used yet, `base` itself where it is free."""
        name, i = base, 1
        while name in self._names:
            name, i = f"{base}#{i}", i + 1
        self._names.add(name)
        return name

    def add(self, step: Step, *inputs: str) -> str:
        """Append `step` reading `inputs` (where it names none itself); returns its first
        output, named after the step where it names none."""
        step.inputs = list(step.inputs or inputs)
        if not step.outputs:
            step.outputs = [self.value(step.name or step.kind)]
        else:
            self._names.update(step.outputs)
        self.steps.append(step)
        return step.outputs[0]

    def module(self, m: Any, name: str, x: str) -> str:
        """Lower layer `m` (path `name`) reading value `x`; returns the value it writes."""
        lower = getattr(type(m), "lower_graph", None)
        if lower is not None:
            return lower(m, self, name, x)
        to_steps = getattr(m, "to_steps", None)
        if not callable(to_steps):
            raise ValueError(f"inference plan: layer {name or '(root)'} of type {type(m).__name__} "
                             "is not supported (not an nn.Module)")
        for s in to_steps(name):
            x = self.add(s, x)
        return x

    def graph(self, outputs: list[str]) -> Graph:
        return Graph(self.steps, list(self.inputs), outputs)


def lower_module(model: Any, name: str = "") -> Graph:
    """`model` as a graph reading the value "input" (weights copied to host arrays, no passes)."""
    low = Lowering()
    out = low.module(model, name, "input")
    return low.graph([out])


def chain(steps: list[Step], input_name: str = "input") -> Graph:
    """A list of unwired steps (each reads the one before) as a graph."""
    low = Lowering((input_name,))
    x = input_name
    for s in steps:
        x = low.add(s, x)
    return low.graph([x])
