"""The state of one ONNX import: what is known about every value so far, and the plan steps
written for the data nodes (the converters of onnx_nodes.py and onnx_layout.py call into
this, and share the small helpers at the end).

A value is either folded (a constant, possibly depending on the batch: onnx_fold.py's pairs),
or data computed at run time, of which the import knows the shape at both BATCHES and the
dtype. Identity and Dropout make aliases. Every error names the file and the node.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .onnx_fold import BATCHES, Pair, reshape_target, static

Shapes = tuple[tuple[int, ...], tuple[int, ...]]


def show_shape(shapes: Shapes) -> str:
    """A data shape with its batch-dependent dims written as multiples of N: (N, 3, 64, 64)."""
    dims = []
    for a, b in zip(*shapes):
        if a == b:
            dims.append(str(a))
        else:
            k = a // BATCHES[0]
            dims.append("N" if k == 1 and a == BATCHES[0] else f"{k}*N" if k * BATCHES[0] == a else "?")
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


class Context:
    """What the import knows; `emit` appends a plan step (Step of steps.py)."""

    def __init__(self, path: str, opset: int, consumers: dict[str, int]) -> None:
        self.path = path
        self.opset = opset
        self.consumers = consumers  # value name -> how many nodes (and graph outputs) read it
        self.consts: dict[str, Pair] = {}
        self.shapes: dict[str, Shapes] = {}
        self.dtypes: dict[str, np.dtype] = {}
        self.alias: dict[str, str] = {}
        self.steps: list[Any] = []
        self.producer: dict[str, Any] = {}  # data value -> the step that writes it
        self.node: Any = None  # the node being converted (for messages)
        self.fixed_batch: int | None = None  # the file's fixed batch, while importing it as symbolic
        self._names: set[str] = set()

    # ---- messages ---------------------------------------------------------------------------
    def where(self, node: Any = None) -> str:
        node = node or self.node
        return f"{self.path}: ONNX node {node.name!r} ({node.op_type})"

    def fail(self, message: str) -> ValueError:
        return ValueError(f"{self.where()}: {message}")

    # ---- values -----------------------------------------------------------------------------
    def resolve(self, name: str) -> str:
        while name in self.alias:
            name = self.alias[name]
        return name

    def is_const(self, name: str) -> bool:
        return bool(name) and self.resolve(name) in self.consts

    def is_data(self, name: str) -> bool:
        return bool(name) and self.resolve(name) in self.shapes

    def pair(self, name: str) -> Pair | None:
        return self.consts.get(self.resolve(name)) if name else None

    def const(self, index: int, what: str, optional: bool = False) -> np.ndarray | None:
        """The node's input `index` as a static constant (an initializer or something folded)."""
        node = self.node
        name = node.input[index] if index < len(node.input) else ""
        if not name:
            if optional:
                return None
            raise self.fail(f"the {what} (input {index}) is missing")
        pair = self.pair(name)
        if pair is None:
            raise self.fail(f"the {what} {name!r} must be a constant (an initializer or computed from "
                            "shapes at load time); it is computed from the model's data at run time")
        if not static(pair):
            raise self.fail(f"the {what} {name!r} depends on the batch size, which the plan keeps symbolic")
        return pair[0]

    def const_or_none(self, index: int) -> np.ndarray | None:
        node = self.node
        name = node.input[index] if index < len(node.input) else ""
        pair = self.pair(name) if name else None
        return pair[0] if pair is not None and static(pair) else None

    def data(self, index: int, what: str = "data input") -> str:
        node = self.node
        name = node.input[index] if index < len(node.input) else ""
        if not self.is_data(name):
            raise self.fail(f"the {what} (input {index}, {name!r}) must be computed at run time "
                            "from the model's input; constants there are not supported")
        return self.resolve(name)

    def shape(self, name: str) -> Shapes:
        return self.shapes[self.resolve(name)]

    def rank(self, name: str) -> int:
        return len(self.shape(name)[0])

    def static_dims(self, name: str, axes: list[int], what: str) -> tuple[int, ...]:
        """The dims of `axes` of a data value, which must not depend on the batch."""
        a, b = self.shape(name)
        if any(a[i] != b[i] for i in axes):
            raise self.fail(f"the {what} of {show_shape(self.shape(name))} depend on the batch size")
        return tuple(a[i] for i in axes)

    def set_data(self, name: str, shapes: Shapes, dtype: Any = np.float32) -> None:
        self.shapes[name] = (tuple(int(d) for d in shapes[0]), tuple(int(d) for d in shapes[1]))
        self.dtypes[name] = np.dtype(dtype)

    def set_const(self, name: str, pair: Pair) -> None:
        self.consts[name] = pair

    def fresh(self, base: str) -> str:
        """A value or step name no other has."""
        name, i = base, 1
        while name in self._names or name in self.shapes or name in self.consts:
            name, i = f"{base}.{i}", i + 1
        self._names.add(name)
        return name

    # ---- steps ------------------------------------------------------------------------------
    def emit(self, kind: str, inputs: list[str], outputs: list[str], out_shapes: list[Shapes],
             arrays: dict | None = None, attrs: dict | None = None, suffix: str = "") -> Any:
        from .steps import Step

        step = Step(kind=kind, name=self.fresh((self.node.name or self.node.op_type) + suffix),
                    inputs=[self.resolve(i) for i in inputs], outputs=list(outputs),
                    arrays={k: np.array(v, np.float32, order="C") for k, v in (arrays or {}).items()},
                    attrs=dict(attrs or {}))
        for name, shapes in zip(outputs, out_shapes):
            self.set_data(name, shapes)
            self.producer[name] = step
        self.steps.append(step)
        return step

    def both(self, fn: Any, *shapes: Shapes) -> Shapes:
        """fn applied to the shapes at each batch size, refused naming the node where it raises."""
        try:
            return tuple(fn(*(s[i] for s in shapes)) for i in range(2))  # type: ignore[return-value]
        except ValueError as e:
            raise self.fail(str(e)) from None

    def reshape(self, src: str, dst: str, shapes: Shapes, suffix: str = "") -> None:
        """A reshape step from src to dst of `shapes`, with the batch-agnostic target the plan
        needs: static dims as they are, the one batch-dependent dim as 0 (the input's dim at
        the same place, when that is the same batch dim) or -1."""
        if tuple(map(tuple, shapes)) == self.shape(src):  # a reshape to the same shape: no step
            self.alias[dst] = self.resolve(src)
            return
        a, b = shapes
        moving = [i for i in range(len(a)) if a[i] != b[i]]
        if len(moving) > 1:
            raise self.fail(f"a reshape to {show_shape(shapes)} has several batch-dependent dims")
        ia, ib = self.shape(src)
        target = list(a)
        for i in moving:
            target[i] = 0 if i < len(ia) and ia[i] == a[i] and ib[i] == b[i] else -1
        for shp, other in ((ia, a), (ib, b)):  # the target must give the same shape at both sizes
            if reshape_target(shp, target, False) != tuple(other):
                raise self.fail(f"a reshape from {show_shape(self.shape(src))} to {show_shape(shapes)} "
                                "is not expressible with a batch-agnostic target")
        self.emit("reshape", [src], [dst], [shapes], attrs={"shape": tuple(target)}, suffix=suffix)


# ---- shared by the converters (onnx_nodes.py, onnx_layout.py) -------------------------------
Converter = Callable[[Context, dict], None]


def registrar(table: dict[str, Converter]) -> Callable:
    """A decorator registering a converter in `table` for the op types it names."""
    def converter(*ops: str) -> Callable:
        def register(fn: Converter) -> Converter:
            for op in ops:
                table[op] = fn
            return fn
        return register
    return converter


def text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def int_pair(ctx: Context, a: dict, key: str, default: int) -> tuple[int, int]:
    v = a.get(key)
    if v is None:
        return default, default
    if len(v) != 2:
        raise ctx.fail(f"{key} {list(v)}: only 2-D (two values) is supported")
    return int(v[0]), int(v[1])


def only_first_output(ctx: Context) -> None:
    for name in ctx.node.output[1:]:
        if name and ctx.consumers.get(name, 0):
            raise ctx.fail(f"its output {name!r} is read, but only the first output is computed")


def float_data(ctx: Context, index: int = 0, what: str = "data input") -> str:
    x = ctx.data(index, what)
    if ctx.dtypes[x] != np.float32:
        raise ctx.fail(f"the {what} {x!r} is {ctx.dtypes[x]}; only float32 data is supported")
    return x


def broadcast(*shapes: tuple) -> tuple:
    try:
        return tuple(int(d) for d in np.broadcast_shapes(*shapes))
    except ValueError:
        raise ValueError(f"shapes {' and '.join(str(tuple(s)) for s in shapes)} do not broadcast") from None
