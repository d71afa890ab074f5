"""Shapes of a graph's values for one input shape, and the input check built on them: a bad
input is refused naming the first step it does not fit, what that step gets and expects."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

Shape = tuple[int, ...]


def numel(shape: Sequence[int]) -> int:
    return math.prod(int(v) for v in shape)


def unpack_weight(packed: Any, shape: Sequence[int]) -> np.ndarray:
    """The weight of `shape` ((N, K) linear, (K, C, R, S) conv) that pack_linear_weight (of its
    2-D view) turned into `packed`: (panels, K, NR) holding w[q * NR + j][k] at [q][k][j]."""
    p = packed.numpy()
    rows = p.transpose(0, 2, 1).reshape(-1, p.shape[1])[:shape[0]]
    return np.ascontiguousarray(rows.reshape(shape))


def weight_shape(step: Any) -> tuple[int, ...]:
    """The (N, K) / (K, C/g, R, S) weight shape of a linear / conv step, wherever it is held."""
    t = step.tensors or step.arrays
    if "weight_packed" in t and step.kind == "conv":  # the panels of its (K, C*R*S) view
        return tuple(step.attrs["w_shape"])
    if "weight_packed" in t:  # (panels, K, NR) of an (N, K) linear weight
        return (step.attrs["out_features"], t["weight_packed"].shape[1])
    return tuple((t["weight"] if "weight" in t else t["wq"]).shape)


def _array_shape(step: Any, key: str) -> Shape:
    t = step.tensors or step.arrays
    return tuple(t[key].shape)


def _pool_extent(size: int, k: int, s: int, p: int, ceil: bool) -> int:
    """Output length of a pooling window over `size` (PyTorch / ONNX: with ceil_mode a last
    window that would start in the right padding is dropped)."""
    span = size + 2 * p - k
    if not ceil:
        return span // s + 1
    out = -(-span // s) + 1
    return out - 1 if (out - 1) * s >= size + p else out


def flatten_dims(step: Any, rank: int) -> tuple[int, int]:
    """nn.Flatten's merged dims (start_dim..end_dim), or ONNX Flatten's axis: dims before it
    merged into one, the rest into another (start 0 .. axis-1 then axis..end)."""
    start, end = int(step.attrs.get("start_dim", 1)), int(step.attrs.get("end_dim", -1))
    return (start + rank if start < 0 else start), (end + rank if end < 0 else end)


def reshape_target(shape: Shape, target: Sequence[int]) -> Shape:
    """The reshape's static target with 0 (copy the input's dim) and -1 (the rest) resolved."""
    out = [int(shape[i]) if int(t) == 0 else int(t) for i, t in enumerate(target)]
    if -1 in out:
        known = numel(v for v in out if v != -1)
        out[out.index(-1)] = numel(shape) // known if known else 0
    return tuple(out)


def norm_axes(axes: Sequence[int], rank: int) -> tuple[int, ...]:
    return tuple(sorted(int(a) + rank if int(a) < 0 else int(a) for a in axes))


def output_shapes(step: Any, ins: list[Shape]) -> list[Shape]:
    """The shapes `step` writes for inputs of shapes `ins` (no checks: see check_shapes)."""
    kind, a = step.kind, step.attrs
    x = tuple(ins[0]) if ins else ()
    if kind == "conv":
        k, _, r, s = weight_shape(step)
        (sh, sw), (ph, pw), (dh, dw) = a["stride"], a["padding"], a["dilation"]
        return [(x[0], k, (x[2] + 2 * ph - dh * (r - 1) - 1) // sh + 1,
                 (x[3] + 2 * pw - dw * (s - 1) - 1) // sw + 1)]
    if kind == "conv_transpose":  # PyTorch's ConvTranspose2d output size
        _, cg, r, s = weight_shape(step)
        (sh, sw), (ph, pw), (dh, dw) = a["stride"], a["padding"], a["dilation"]
        oh, ow = a.get("output_padding", (0, 0))
        return [(x[0], cg * a["groups"], (x[2] - 1) * sh - 2 * ph + dh * (r - 1) + 1 + oh,
                 (x[3] - 1) * sw - 2 * pw + dw * (s - 1) + 1 + ow)]
    if kind == "linear":
        return [x[:-1] + (weight_shape(step)[0],)]
    if kind in ("maxpool", "avgpool"):
        (kh, kw), (sh, sw), (ph, pw) = a["kernel"], a["stride"], a["padding"]
        ceil = bool(a.get("ceil_mode", False))
        return [(x[0], x[1], _pool_extent(x[2], kh, sh, ph, ceil), _pool_extent(x[3], kw, sw, pw, ceil))]
    if kind == "global_avgpool":
        return [x[:2] + (1,) * (len(x) - 2)]
    if kind == "flatten":
        if "axis" in a:
            axis = int(a["axis"]) + (len(x) if int(a["axis"]) < 0 else 0)
            return [(numel(x[:axis]), numel(x[axis:]))]
        start, end = flatten_dims(step, len(x))
        return [x[:start] + (numel(x[start:end + 1]),) + x[end + 1:]]
    if kind == "reshape":
        return [reshape_target(x, a["shape"])]
    if kind == "transpose":
        return [tuple(x[int(p)] for p in a["perm"])]
    if kind == "pad":
        top, left, bottom, right = (int(v) for v in a["pads"])
        return [x[:-2] + (x[-2] + top + bottom, x[-1] + left + right)]
    if kind in ("add", "sub", "mul", "div"):
        other = ins[1] if len(ins) > 1 else _array_shape(step, "b")
        return [tuple(np.broadcast_shapes(x, tuple(other)))]
    if kind == "concat":
        axis = int(a["axis"]) + (len(x) if int(a["axis"]) < 0 else 0)
        return [x[:axis] + (sum(s[axis] for s in ins),) + x[axis + 1:]]
    if kind == "split":
        axis = int(a["axis"]) + (len(x) if int(a["axis"]) < 0 else 0)
        return [x[:axis] + (int(n),) + x[axis + 1:] for n in a["sizes"]]
    if kind == "reduce_mean":
        axes = norm_axes(a["axes"], len(x))
        keep = bool(a.get("keepdims", True))
        return [tuple(1 if i in axes else d for i, d in enumerate(x) if keep or i not in axes)]
    if kind == "matmul":
        b = tuple(ins[1])
        return [tuple(np.broadcast_shapes(x[:-2], b[:-2])) + (x[-2], b[-1])]
    if kind == "embedding":
        return [x + (weight_shape(step)[1],)]
    if kind == "attention":
        return [x[:-1] + (tuple(ins[2])[-1],)]
    if kind in ("act", "batch_norm", "softmax", "layer_norm"):
        return [x]
    raise ValueError(f"plan step {step.name!r} has an unknown kind {kind!r}")


def _expect(step: Any, ins: list[Shape]) -> str | None:
    """What `step` expects of inputs of shapes `ins` where they do not fit, else None."""
    kind, a = step.kind, step.attrs
    x = tuple(ins[0])
    rank = len(x)
    if kind == "conv":
        k, cg, _, _ = weight_shape(step)
        if rank != 4 or x[1] != cg * a["groups"]:
            return f"(batch, {cg * a['groups']}, height, width)"
    elif kind == "conv_transpose":
        c = weight_shape(step)[0]
        if rank != 4 or x[1] != c:
            return f"(batch, {c}, height, width)"
    elif kind in ("maxpool", "avgpool", "global_avgpool", "pad") and rank != 4:
        return "(batch, channels, height, width)"
    elif kind == "linear":
        k = weight_shape(step)[1]
        if rank < 2 or x[-1] != k:
            return f"(batch, ..., {k})"
    elif kind == "batch_norm":
        c = numel(_array_shape(step, "running_mean"))
        if rank < 2 or x[1] != c:
            return f"(batch, {c}, ...)"
    elif kind == "flatten" and "axis" not in a:
        start, end = flatten_dims(step, rank)
        if not 1 <= start <= end < rank:  # the batch dimension is never merged
            return (f"a rank that start_dim={a.get('start_dim', 1)}, end_dim={a.get('end_dim', -1)} "
                    "fit, the batch dimension (0) left alone")
    elif kind == "reshape":
        target = reshape_target(x, a["shape"])
        dims = [int(v) for v in a["shape"]]
        # a target with a 0 or -1 follows the batch and must keep it first; a static one (an ONNX
        # export with a fixed batch) holds at one batch size only, which the element count pins
        follows = any(v in (0, -1) for v in dims)
        if numel(target) != numel(x) or follows and dims[0] not in (0, -1, x[0]):
            return f"{numel(target)} elements in all and the batch kept (reshape to {tuple(a['shape'])})"
    elif kind in ("add", "sub", "mul", "div", "matmul"):
        other = tuple(ins[1]) if len(ins) > 1 else _array_shape(step, "b")
        lead = (x[:-2], other[:-2]) if kind == "matmul" else (x, other)
        try:
            np.broadcast_shapes(*lead)
        except ValueError:
            return f"operands that broadcast; they are {x} and {other}"
        if kind == "matmul" and (min(rank, len(other)) < 2 or x[-1] != other[-2]):
            return f"(..., M, K) @ (..., K, N); they are {x} and {other}"
    elif kind == "concat":
        axis = int(a["axis"]) + (rank if int(a["axis"]) < 0 else 0)
        if not 0 <= axis < rank or any(len(s) != rank or tuple(s[:axis]) + tuple(s[axis + 1:]) !=
                                       x[:axis] + x[axis + 1:] for s in ins):
            return f"inputs equal outside axis {a['axis']}; they are {[tuple(s) for s in ins]}"
    elif kind == "split":
        axis = int(a["axis"]) + (rank if int(a["axis"]) < 0 else 0)
        if not 0 <= axis < rank or sum(int(n) for n in a["sizes"]) != x[axis]:
            return f"axis {a['axis']} of size {sum(int(n) for n in a['sizes'])} (sizes {list(a['sizes'])})"
    elif kind == "transpose" and sorted(int(p) for p in a["perm"]) != list(range(rank)):
        return f"a rank-{len(a['perm'])} input (perm {list(a['perm'])})"
    elif kind == "reduce_mean" and any(not -rank <= int(v) < rank for v in a["axes"]):
        return f"a rank that has axes {list(a['axes'])}"
    elif kind == "layer_norm" and "weight" in (step.tensors or step.arrays):
        c = _array_shape(step, "weight")[0]
        if x[-1] != c:
            return f"(batch, ..., {c})"
    return None


def check_shapes(graph: Any, shapes: dict[str, Shape], given: Shape | None = None) -> dict[str, Shape]:
    """Every value's shape from the graph inputs' `shapes` (batch first), or a ValueError naming
    the caller's input (`given`), the first step it does not fit, the shape that step gets (its
    first input) and what it expects."""
    shapes = {k: tuple(int(d) for d in v) for k, v in shapes.items()}
    given = tuple(next(iter(shapes.values()))) if given is None else tuple(given)
    for s in graph.steps:
        ins = [shapes[v] for v in s.inputs]

        def bad(expected: str, x: Shape = ins[0] if ins else ()) -> ValueError:
            gets = "(" + ", ".join(["batch"] + [str(v) for v in x[1:]]) + ")"
            return ValueError(f"x of shape {given} does not fit the model: step {s.name!r} ({s.kind}) "
                              f"gets {gets} but expects {expected}")

        expected = _expect(s, ins)
        if expected is not None:
            raise bad(expected)
        outs = output_shapes(s, ins)
        if any(v < 1 for o in outs for v in o):
            raise bad(f"an input its window fits; its output would be {outs[0]}")
        if s.kind == "conv" and len(ins) > 1 and tuple(np.broadcast_shapes(outs[0], ins[1])) != outs[0]:
            raise bad(f"a residual of its output's shape {outs[0]}, got {ins[1]}")
        shapes.update(zip(s.outputs, outs))
    return shapes


def check_input_shape(graph: Any, shape: Shape, given: Shape | None = None) -> Shape:
    """The (first) output shape of `graph` for an input of `shape`, or the ValueError of
    check_shapes."""
    shapes = check_shapes(graph, {graph.inputs[0]: tuple(shape)}, given)
    return shapes[graph.outputs[0]]
