"""Lowering an nn.Module to engine steps, then the passes over steps: BatchNorm folded into the
convolution before it, activations fused into the step before them.

Each layer lowers itself (`Module.to_steps(name)`, weights copied to host arrays): containers
return their children's steps, Dropout and Identity none. ONNX files lower in onnx.py, saved
engines load in serialize.py; both end in the same passes (`optimize`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .steps import Step


def plan_from_module(model: Any) -> list[Step]:
    """The model's steps (weights copied to host arrays), then rewritten by `optimize`."""
    if not callable(getattr(model, "to_steps", None)):
        raise ValueError(f"inference plan: layer (root) of type {type(model).__name__} is not "
                         "supported (not an nn.Module)")
    return optimize(model.to_steps(""))


def optimize(steps: list[Step]) -> list[Step]:
    """Fold BatchNorm into a preceding conv, fuse activations into the step before them."""
    out: list[Step] = []
    for s in steps:
        s.body = optimize(s.body)
        s.shortcut = optimize(s.shortcut)
        prev = out[-1] if out else None
        if s.kind == "batch_norm" and prev is not None and prev.kind == "conv" and not prev.attrs.get("act"):
            _fold_batchnorm(prev, s)
            continue
        if (s.kind == "act" and prev is not None and prev.kind in ("conv", "linear", "residual")
                and not prev.attrs.get("act")):
            prev.attrs["act"] = s.attrs["kind"]
            prev.attrs["alpha"] = s.attrs.get("alpha", 0.01)
            continue
        out.append(s)
    return out


def _fold_batchnorm(conv: Step, bn: Step) -> None:
    gamma = bn.arrays["weight"].astype(np.float64)
    beta = bn.arrays["bias"].astype(np.float64)
    mean = bn.arrays["running_mean"].astype(np.float64)
    var = bn.arrays["running_var"].astype(np.float64)
    scale = gamma / np.sqrt(var + bn.attrs["eps"])
    w = conv.arrays["weight"].astype(np.float64)
    b = conv.arrays.get("bias", np.zeros(w.shape[0])).astype(np.float64)
    conv.arrays["weight"] = (w * scale[:, None, None, None]).astype(np.float32)
    conv.arrays["bias"] = ((b - mean) * scale + beta).astype(np.float32)
    conv.attrs["folded_bn"] = bn.name
