"""INT8 for the engine's conv and linear steps: per-output-channel symmetric int8 weights, and
per-step input scales set by calibration on real data (max |x| / 127 of the step's first input).

Only conv and linear steps compute in int8; every other step of the graph (add, concat, pooling,
...) reads their dequantized float32 outputs and runs in float32, and so does the residual added
in a conv's epilogue (kernels.py).

Two choices keep an int8 engine's answers close to fp32 (measured on ResNet-18:
bench/bench_int8_layers.py):
- The head (the conv / linear steps no other conv / linear step follows, a classifier) stays in
  float32 when the graph has other conv / linear steps: its weight rounding alone moves the
  logits by ~0.4% (rounding to 1/127 of a row's largest |w|), the largest single loss of top-1
  agreement, for a small share of the work. So do the projection shortcuts of residual joins
  (the cheaper of two convolutions added together): their error reaches every later layer
  undamped, and they are cheap (1x1). Such steps carry attrs["fp32"] = "head" / "shortcut".
- Bias correction: rounding the weights shifts each output channel on average by
  sum_k (wq * w_scale - w)[c, k] * mean(x_k), which is not small where the inputs are all
  non-negative (after a ReLU). Calibration records each step's mean input per channel and
  subtracts that shift from the bias (in float64, rounded once)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..tensor import Tensor, tensor
from .memplan import QUANTIZED, quantized
from .steps import Graph, Step


def quantize_weight(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(wq int8, w_scale float32 per output channel): w ~= wq * w_scale, |wq| <= 127."""
    w = w.astype(np.float64)
    amax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
    w_scale = np.where(amax > 0, amax / 127.0, 1.0)
    wq = np.clip(np.rint(w / w_scale.reshape((-1,) + (1,) * (w.ndim - 1))), -127, 127)
    return wq.astype(np.int8), w_scale.astype(np.float32)


def mark_fp32(plan: Graph) -> None:
    """attrs["fp32"] = "head" / "shortcut" on the conv / linear steps an int8 engine keeps in
    float32 (module docstring): the head, each step from which no other conv / linear step can
    be reached, unless that leaves nothing in int8; and of two convolutions whose outputs a
    residual join adds (one fused into the other), the one with fewer multiply-adds per output
    (a ResNet's 1x1 projection shortcut). A plan whose steps already hold int8 weights (a saved
    engine) keeps its marks as they are."""
    steps = [s for s in plan if s.kind in QUANTIZED]
    if any("wq" in s.arrays or "wq" in s.tensors for s in steps):
        return
    readers, producers = plan.readers(), plan.producers()
    head = [s for s in steps if not _feeds_quantized(s, readers)]
    if len(head) < len(steps):
        for s in head:
            s.attrs["fp32"] = "head"
    for s in steps:
        p = producers.get(s.inputs[1]) if s.kind == "conv" and len(s.inputs) > 1 else None
        if p is None or p.kind != "conv" or len(readers.get(p.outputs[0], [])) != 1:
            continue
        ks, kp = _taps(s), _taps(p)
        if ks != kp:
            (p if kp < ks else s).attrs.setdefault("fp32", "shortcut")


def _taps(s: Step) -> int:
    """Multiply-adds per output value of a conv step: its weight's in / groups * kh * kw."""
    w = s.arrays.get("weight")
    return int(np.prod(w.shape[1:])) if w is not None else 0


def _feeds_quantized(s: Step, readers: dict[str, list[Step]]) -> bool:
    """Another conv / linear step reads a value computed from `s`'s output."""
    todo, seen = list(s.outputs), set()
    while todo:
        for r in readers.get(todo.pop(), []):
            if r.kind in QUANTIZED:
                return True
            if id(r) not in seen:
                seen.add(id(r))
                todo.extend(r.outputs)
    return False


def int8_weights(s: Step, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`arrays` (a conv/linear step's host arrays) with the int8 weight and its scales added;
    the fp32 weight stays until calibration. Other steps' arrays as they are."""
    if not quantized(s) or "wq" in arrays:
        return arrays
    wq, w_scale = quantize_weight(arrays["weight"])
    return {**arrays, "w_scale": w_scale, "wq": wq}


def observe_input(observed: dict[int, list], s: Step, x: Tensor) -> None:
    """Calibration: remember the largest |input| a quantized step has seen, and the sum and
    count of its input per channel (axis 1 of a conv's NCHW input, the last axis of a linear's)."""
    if not quantized(s):
        return
    a = x.numpy().astype(np.float64)
    if s.kind == "conv":
        sums, count = a.sum(axis=(0, 2, 3)), a.size // max(a.shape[1], 1)
    else:
        sums, count = a.reshape(-1, a.shape[-1]).sum(axis=0), a.size // max(a.shape[-1], 1)
    amax = float(np.abs(a).max()) if a.size else 0.0
    got = observed.get(id(s))
    if got is None:
        observed[id(s)] = [amax, sums, count]
    else:
        got[0], got[1], got[2] = max(got[0], amax), got[1] + sums, got[2] + count


def assign_scales(plan: Iterable[Step], observed: dict[int, list]) -> None:
    """Each quantized step's input scale from what calibration observed (1.0 where it saw only
    0), and its bias corrected for the rounding of its weights (module docstring)."""
    for s in plan:
        if not quantized(s):
            continue
        amax, sums, count = observed.get(id(s), (0.0, None, 0))
        s.x_scale = amax / 127.0 if amax > 0 else 1.0
        if sums is not None and count > 0 and "weight" in s.tensors:
            _correct_bias(s, sums / count)


def weight_shift(w: np.ndarray, wq: np.ndarray, w_scale: np.ndarray, mean: np.ndarray,
                 groups: int = 1) -> np.ndarray:
    """Per output channel, the mean change of a conv / linear output when w becomes
    wq * w_scale and the input has per-channel mean `mean` (float64; borders of a padded
    convolution count as full windows)."""
    cout = w.shape[0]
    dw = (wq.astype(np.float64) * w_scale.astype(np.float64).reshape((-1,) + (1,) * (w.ndim - 1))
          - w.astype(np.float64))
    dw = dw.reshape(cout, w.shape[1], -1).sum(axis=2)  # (cout, cin / groups): summed over the taps
    m = mean.reshape(groups, -1)  # input channels of each group
    g = np.arange(cout) // (cout // groups)
    return (dw * m[g]).sum(axis=1)


def _correct_bias(s: Step, mean: np.ndarray) -> None:
    t = s.tensors
    w, wq, w_scale = t["weight"].numpy(), t["wq"].numpy(), t["w_scale"].numpy()
    groups = int(s.attrs.get("groups", 1)) if s.kind == "conv" else 1
    shift = weight_shift(w, wq, w_scale, mean, groups)
    old = t.get("bias")
    bias = (old.numpy().astype(np.float64) if old is not None else np.zeros(w.shape[0])) - shift
    device = old.device if old is not None else t["wq"].device
    t["bias"] = tensor(bias.astype(np.float32), device=device, dtype=np.float32)


def drop_fp32_weights(plan: Iterable[Step]) -> None:
    """A calibrated int8 engine keeps only the int8 weights of its quantized steps."""
    for s in plan:
        if quantized(s):
            s.tensors.pop("weight", None)
