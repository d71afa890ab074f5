"""The engine's input checks: dtype, shape against every step, finite values that float32 holds.
A bad input raises before anything runs, naming what was expected."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import ops
from .._native import _C
from ..tensor import Tensor, distinct_view
from .shapes import check_input_shape
from .steps import Graph

FLOAT32, INT64 = np.dtype(np.float32), np.dtype(np.int64)
FLT_MAX = float(np.finfo(np.float32).max)


def all_finite(a: np.ndarray) -> bool:
    """No NaN and no infinity in `a`. A C-contiguous float32 array (the usual batch) is checked
    natively in one pass over hipgrad's threads; otherwise min and max, which propagate NaN and
    show an infinity and unlike np.isfinite(a).all() make no temporary array of a's size."""
    if a.size == 0:
        return True
    if a.dtype == FLOAT32 and a.flags.c_contiguous:
        return bool(_C._all_finite_f32(a))
    return bool(np.isfinite(np.minimum.reduce(a, axis=None)) and np.isfinite(np.maximum.reduce(a, axis=None)))


def tensor_all_finite(x: Tensor) -> bool:
    """all_finite for an hg.Tensor without copying it to the host: on the CPU a NumPy view; on
    a GPU the per-channel sums of bias_backward (one pass, C floats back), into which a NaN or an
    infinity anywhere propagates. Only where a sum is not finite is the tensor brought to the
    host and checked exactly (finite values whose sum overflows are not an error)."""
    if x.numel() == 0 or np.dtype(x.dtype).kind != "f":
        return True
    if x.device == "cpu":
        return all_finite(np.from_dlpack(x))
    if np.dtype(x.dtype) == np.float32 and x.ndim >= 2 and all_finite(ops.bias_backward(x).numpy()):
        return True
    return all_finite(x.numpy())


def fits_float32(a: np.ndarray) -> bool:
    """A float array wider than float32 holds only values the engine's float32 can hold:
    a finite float64 beyond +-3.4e38 would become an infinity in the cast."""
    if a.size == 0 or a.dtype.itemsize <= 4:
        return True
    return bool(np.minimum.reduce(a, axis=None) >= -FLT_MAX and np.maximum.reduce(a, axis=None) <= FLT_MAX)


def input_dtype(plan: Graph) -> np.dtype:
    """What the plan reads: int64 token ids where an embedding reads its input, else float32."""
    first = plan.inputs[0]
    return INT64 if any(s.kind == "embedding" and first in s.inputs for s in plan) else FLOAT32


def check_input(x: Any, plan: Graph, input_shape: tuple[int, ...] | None,
                shapes_checked: set[tuple[int, ...]], fixed_batch: int | None = None) -> np.ndarray | Tensor:
    """x checked (dtype, shape against every step, finite values in float32's range) and
    returned as given, or as a NumPy array where the engine converts it: a NumPy or
    array-like input, or a tensor of another dtype than the engine reads. `shapes_checked`
    holds the per-example shapes already checked against every step (added to here).
    `fixed_batch`: the one batch size the plan holds for (an ONNX model exported without a
    dynamic batch axis whose shapes fold its batch in); any other is refused."""
    if isinstance(x, Tensor) and np.dtype(x.dtype).kind in "fiu" and np.dtype(x.dtype) != input_dtype(plan):
        x = x.numpy()  # converted as a NumPy input is (into the staging buffer)
    if isinstance(x, Tensor):
        arr = None
        shape, dtype = x.shape, x.dtype
    else:
        try:
            arr = np.asarray(x)
        except Exception as e:  # noqa: BLE001 - anything NumPy refuses
            raise TypeError(f"x must be a NumPy array or hg.Tensor, got {type(x).__name__}") from e
        shape, dtype = arr.shape, arr.dtype
    if input_dtype(plan) == INT64:
        if np.dtype(dtype).kind not in "iu":
            raise TypeError(f"x must hold integer token ids, got dtype {dtype}")
    elif np.dtype(dtype).kind not in "fiu":
        raise TypeError(f"x must be a float array, got dtype {dtype}")
    if input_shape is not None and tuple(shape[1:]) != input_shape:
        raise ValueError(f"x must have shape (batch, {', '.join(map(str, input_shape))}), got {tuple(shape)}")
    if len(shape) < 1 or shape[0] < 1:
        raise ValueError(f"x must have a non-empty batch dimension, got shape {tuple(shape)}")
    if fixed_batch is not None and shape[0] != fixed_batch:
        raise ValueError(f"x must have shape ({', '.join(map(str, (fixed_batch, *shape[1:])))}), got "
                         f"{tuple(shape)}: the model's input {plan.inputs[0]!r} has a fixed batch of "
                         f"{fixed_batch} (exported without a dynamic batch axis, and its shapes fold the "
                         "batch in, so they hold at that batch size only)")
    key = tuple(int(v) for v in shape[1:])
    if key not in shapes_checked:  # every step's expectation, before anything runs
        check_input_shape(plan, (fixed_batch or 1,) + key, given=tuple(shape))
        shapes_checked.add(key)
    if arr is not None:
        values = distinct_view(arr)  # a broadcast batch: each distinct value once, not 2**46
        if arr.dtype.kind == "f" and not all_finite(values):
            raise ValueError("x contains NaN or infinite values")
        if arr.dtype.kind == "f" and not fits_float32(values):
            raise ValueError(f"x holds {arr.dtype} values beyond float32's range (|x| > {FLT_MAX:.4g}); "
                             "the engine computes in float32")
        return arr
    if not tensor_all_finite(x):
        raise ValueError("x contains NaN or infinite values")
    return x
