"""Constant folding for the ONNX import: the nodes whose inputs are all known at load time
(initializers, Constant nodes, the Shape of a data value and whatever is computed from those)
are evaluated here with NumPy, exactly as ONNX defines them.

The batch axis stays symbolic by evaluating everything at two batch sizes at once (BATCHES):
a folded value is a pair (value at BATCHES[0], value at BATCHES[1]). Where the two agree the
value is static; where they differ it depends on the batch (a Reshape target such as
[N, -1] computed by Shape -> Gather -> Unsqueeze -> Concat). The importer turns such values
into the plan's batch-agnostic forms (0 / -1 in a reshape) or refuses them naming the node, so
a model with a dynamic batch axis runs at any batch size. Data values keep their shapes as
the same kind of pair.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

BATCHES = (3, 5)  # the symbolic batch evaluated at two sizes; a dim that differs depends on it

Pair = tuple[np.ndarray, np.ndarray]


def static(pair: Pair) -> bool:
    a, b = pair
    return a is b or (a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b))


def _np_dtype(to: int) -> np.dtype:
    import onnx

    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(int(to)))


def _axes(ins: list, attrs: dict, opset: int, since: int) -> list[int] | None:
    """`axes` as an attribute (before opset `since`) or as the second input (from it on)."""
    if opset >= since:
        return None if len(ins) < 2 or ins[1] is None else [int(v) for v in np.asarray(ins[1]).reshape(-1)]
    v = attrs.get("axes")
    return None if v is None else [int(a) for a in v]


def _norm(axes: list[int], rank: int) -> list[int]:
    out = sorted(a + rank if a < 0 else a for a in axes)
    if any(not 0 <= a < rank for a in out) or len(set(out)) != len(out):
        raise ValueError(f"axes {axes} are out of range (or repeated) for rank {rank}")
    return out


def _constant(ins: list, attrs: dict, opset: int) -> list[np.ndarray]:
    from onnx import numpy_helper

    if "value" in attrs:
        return [numpy_helper.to_array(attrs["value"])]
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32), ("value_int", np.int64),
                       ("value_ints", np.int64)):
        if key in attrs:
            return [np.array(attrs[key], dtype)]
    raise ValueError(f"a Constant with attributes {sorted(attrs)} (sparse or string) is not supported")


def _constant_of_shape(ins: list, attrs: dict, opset: int) -> list[np.ndarray]:
    from onnx import numpy_helper

    value = numpy_helper.to_array(attrs["value"]).reshape(-1) if "value" in attrs else np.zeros(1, np.float32)
    return [np.full([int(d) for d in ins[0]], value[0], value.dtype)]


def _shape(ins: list, attrs: dict, opset: int) -> list[np.ndarray]:
    dims = np.array(np.shape(ins[0]), np.int64)
    return [dims[slice(attrs.get("start", 0), attrs.get("end"))]]


def _slice(ins: list, attrs: dict, opset: int) -> list[np.ndarray]:
    x = ins[0]
    if opset < 10:
        starts, ends, axes, steps = attrs["starts"], attrs["ends"], attrs.get("axes"), None
    else:
        starts, ends = ins[1], ins[2]
        axes = ins[3] if len(ins) > 3 and ins[3] is not None else None
        steps = ins[4] if len(ins) > 4 and ins[4] is not None else None
    axes = list(range(len(starts))) if axes is None else [int(a) for a in axes]
    steps = [1] * len(starts) if steps is None else [int(s) for s in steps]
    index = [slice(None)] * x.ndim
    for a, s, e, st in zip(axes, starts, ends, steps):
        if st == 0:
            raise ValueError("Slice with a step of 0")
        index[a + x.ndim if a < 0 else a] = slice(int(s), int(e), st)  # Python clamps as ONNX does
    return [x[tuple(index)]]


def _reshape(ins: list, attrs: dict, opset: int) -> list[np.ndarray]:
    return [ins[0].reshape(reshape_target(ins[0].shape, ins[1], bool(attrs.get("allowzero", 0))))]


def reshape_target(shape: tuple, target: Any, allowzero: bool) -> tuple[int, ...]:
    """ONNX Reshape's output shape for an input of `shape`: 0 copies the input's dim (unless
    allowzero), one -1 is inferred."""
    dims = [int(v) for v in np.asarray(target).reshape(-1)]
    if not allowzero:
        dims = [shape[i] if d == 0 and i < len(shape) else d for i, d in enumerate(dims)]
    if dims.count(-1) > 1 or any(d < -1 for d in dims):
        raise ValueError(f"Reshape target {dims} has more than one -1 or a negative dim")
    total = int(np.prod(shape))
    if -1 in dims:
        known = int(np.prod([d for d in dims if d != -1]))
        if known == 0 or total % known:
            raise ValueError(f"Reshape of {tuple(shape)} to {dims}: the sizes do not divide")
        dims[dims.index(-1)] = total // known
    if int(np.prod(dims)) != total:
        raise ValueError(f"Reshape of {tuple(shape)} to {dims}: the sizes differ")
    return tuple(dims)


def squeeze_shape(shape: tuple, axes: list[int] | None) -> tuple[int, ...]:
    if axes is None:
        return tuple(d for d in shape if d != 1)
    axes = _norm(axes, len(shape))
    if any(shape[a] != 1 for a in axes):
        raise ValueError(f"Squeeze axes {axes} of shape {tuple(shape)} are not all 1")
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def unsqueeze_shape(shape: tuple, axes: list[int]) -> tuple[int, ...]:
    out = list(shape)
    for a in _norm(axes, len(shape) + len(axes)):
        out.insert(a, 1)
    return tuple(out)


def _int_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if np.issubdtype(a.dtype, np.integer):  # ONNX integer Div truncates toward zero
        q = np.abs(a) // np.abs(b)
        return (np.sign(a) * np.sign(b) * q).astype(a.dtype)
    return a / b


def _reduce(fn: Callable) -> Callable:
    def run(ins: list, attrs: dict, opset: int) -> list[np.ndarray]:
        axes = _axes(ins, attrs, opset, 18 if fn is not np.sum else 13)
        if axes is None and attrs.get("noop_with_empty_axes", 0):
            return [ins[0]]
        axes = tuple(range(ins[0].ndim)) if axes is None else tuple(_norm(axes, ins[0].ndim))
        return [fn(ins[0], axis=axes, keepdims=bool(attrs.get("keepdims", 1))).astype(ins[0].dtype)]
    return run


def _one(fn: Callable) -> Callable:
    return lambda ins, attrs, opset: [fn(*ins)]


def _variadic(fn: Callable) -> Callable:
    def run(ins: list, attrs: dict, opset: int) -> list[np.ndarray]:
        out = ins[0]
        for v in ins[1:]:
            out = fn(out, v)
        return [out]
    return run


FOLD: dict[str, Callable[[list, dict, int], list[np.ndarray]]] = {
    "Constant": _constant,
    "ConstantOfShape": _constant_of_shape,
    "Shape": _shape,
    "Size": lambda ins, attrs, opset: [np.array(np.size(ins[0]), np.int64)],
    "Identity": _one(lambda x: x),
    "Cast": lambda ins, attrs, opset: [ins[0].astype(_np_dtype(attrs["to"]))],
    "CastLike": lambda ins, attrs, opset: [ins[0].astype(ins[1].dtype)],
    "Gather": lambda ins, attrs, opset: [np.take(ins[0], ins[1].astype(np.int64), axis=attrs.get("axis", 0))],
    "Slice": _slice,
    "Concat": lambda ins, attrs, opset: [np.concatenate([v for v in ins if v is not None], attrs["axis"])],
    "Unsqueeze": lambda ins, attrs, opset: [ins[0].reshape(unsqueeze_shape(ins[0].shape, _axes(ins, attrs, opset, 13)))],
    "Squeeze": lambda ins, attrs, opset: [ins[0].reshape(squeeze_shape(ins[0].shape, _axes(ins, attrs, opset, 13)))],
    "Reshape": _reshape,
    "Flatten": lambda ins, attrs, opset: [ins[0].reshape(int(np.prod(ins[0].shape[:attrs.get("axis", 1)])), -1)],
    "Transpose": lambda ins, attrs, opset: [np.ascontiguousarray(np.transpose(ins[0], attrs.get("perm")))],
    "Expand": lambda ins, attrs, opset: [np.broadcast_to(ins[0], np.broadcast_shapes(ins[0].shape, tuple(
        int(d) for d in ins[1]))).copy()],
    "Range": lambda ins, attrs, opset: [np.arange(ins[0], ins[1], ins[2]).astype(ins[0].dtype)],
    "Tile": lambda ins, attrs, opset: [np.tile(ins[0], [int(r) for r in ins[1]])],
    "Add": _one(np.add), "Sub": _one(np.subtract), "Mul": _one(np.multiply), "Div": _one(_int_div),
    "Pow": _one(lambda a, b: np.power(a, b).astype(a.dtype)),
    "Neg": _one(np.negative), "Abs": _one(np.abs), "Sqrt": _one(np.sqrt), "Reciprocal": _one(np.reciprocal),
    "Floor": _one(np.floor), "Ceil": _one(np.ceil), "Exp": _one(np.exp), "Log": _one(np.log),
    "Equal": _one(np.equal), "Less": _one(np.less), "Greater": _one(np.greater),
    "LessOrEqual": _one(np.less_equal), "GreaterOrEqual": _one(np.greater_equal),
    "Not": _one(np.logical_not), "And": _one(np.logical_and), "Or": _one(np.logical_or),
    "Where": _one(np.where),
    "Trilu": lambda ins, attrs, opset: [(np.triu if attrs.get("upper", 1) else np.tril)(
        ins[0], int(ins[1]) if len(ins) > 1 and ins[1] is not None else 0)], "Max": _variadic(np.maximum), "Min": _variadic(np.minimum),
    "ReduceProd": _reduce(np.prod), "ReduceSum": _reduce(np.sum), "ReduceMax": _reduce(np.max),
    "ReduceMin": _reduce(np.min),
}


def fold_node(op: str, ins: list[Pair | None], attrs: dict, opset: int) -> list[Pair]:
    """The node's outputs as pairs: evaluated once when every input is static, else per batch."""
    fn = FOLD[op]
    with np.errstate(all="ignore"):
        if all(v is None or static(v) for v in ins):
            outs = fn([None if v is None else v[0] for v in ins], attrs, opset)
            return [(np.asarray(o), np.asarray(o)) for o in outs]
        first = fn([None if v is None else v[0] for v in ins], attrs, opset)
        second = fn([None if v is None else v[1] for v in ins], attrs, opset)
    return [(np.asarray(a), np.asarray(b)) for a, b in zip(first, second)]
