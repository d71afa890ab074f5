"""INT8 for the engine's conv and linear steps: per-output-channel symmetric int8 weights, and
per-step input scales set by calibration on real data (max |x| / 127 of the step's first input).

Only conv and linear steps compute in int8; every other step of the graph (add, concat, pooling,
...) reads their dequantized float32 outputs and runs in float32, and so does the residual added
in a conv's epilogue (kernels.py)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..tensor import Tensor
from .memplan import QUANTIZED
from .steps import Step


def quantize_weight(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(wq int8, w_scale float32 per output channel): w ~= wq * w_scale, |wq| <= 127."""
    w = w.astype(np.float64)
    amax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
    w_scale = np.where(amax > 0, amax / 127.0, 1.0)
    wq = np.clip(np.rint(w / w_scale.reshape((-1,) + (1,) * (w.ndim - 1))), -127, 127)
    return wq.astype(np.int8), w_scale.astype(np.float32)


def int8_weights(s: Step, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`arrays` (a conv/linear step's host arrays) with the int8 weight and its scales added;
    the fp32 weight stays until calibration. Other steps' arrays as they are."""
    if s.kind not in QUANTIZED or "wq" in arrays:
        return arrays
    wq, w_scale = quantize_weight(arrays["weight"])
    return {**arrays, "w_scale": w_scale, "wq": wq}


def observe_input(observed: dict[int, float], s: Step, x: Tensor) -> None:
    """Calibration: remember the largest |input| a quantized step has seen."""
    if s.kind in QUANTIZED:
        amax = float(np.abs(x.numpy()).max())
        observed[id(s)] = max(observed.get(id(s), 0.0), amax)


def assign_scales(plan: Iterable[Step], observed: dict[int, float]) -> None:
    """Each quantized step's input scale from what calibration observed (1.0 where it saw only 0)."""
    for s in plan:
        if s.kind in QUANTIZED:
            amax = observed.get(id(s), 0.0)
            s.x_scale = amax / 127.0 if amax > 0 else 1.0


def drop_fp32_weights(plan: Iterable[Step]) -> None:
    """A calibrated int8 engine keeps only the int8 weights of its quantized steps."""
    for s in plan:
        if s.kind in QUANTIZED:
            s.tensors.pop("weight", None)
