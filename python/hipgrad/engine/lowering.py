"""Lowering an nn.Module to engine steps (weights copied to host arrays), then the passes over
steps: BatchNorm folded into the convolution before it, activations fused into the step before
them, Dropout and Identity removed. (ONNX files lower in onnx.py, saved engines load in
serialize.py.)"""

from __future__ import annotations

from typing import Any

import numpy as np

from .steps import Step

_ACTS = {"ReLU": "relu", "LeakyReLU": "leaky_relu", "Sigmoid": "sigmoid", "Tanh": "tanh",
         "ELU": "elu"}


def _np(t: Any) -> np.ndarray:
    data = getattr(t, "data", t)
    return np.array(data.numpy() if hasattr(data, "numpy") else data, dtype=np.float32, copy=True)


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


# ---- from an nn.Module -----------------------------------------------------------------------
def plan_from_module(model: Any) -> list[Step]:
    """Walk the module tree into steps (weights copied to host arrays), then rewrite."""
    return optimize(_steps(model, ""))


def _children(m: Any) -> list[tuple[str, Any]]:
    if hasattr(m, "named_children"):
        return list(m.named_children())
    return [(str(i), c) for i, c in enumerate(m)]


def _steps(m: Any, name: str) -> list[Step]:
    kind = type(m).__name__
    if kind == "Sequential":
        out: list[Step] = []
        for child_name, child in _children(m):
            out += _steps(child, f"{name}.{child_name}" if name else child_name)
        return out
    if kind == "Linear":
        arrays = {"weight": _np(m.weight)}
        if getattr(m, "bias", None) is not None:
            arrays["bias"] = _np(m.bias)
        return [Step("linear", name, arrays)]
    if kind == "Conv2d":
        arrays = {"weight": _np(m.weight)}
        if getattr(m, "bias", None) is not None:
            arrays["bias"] = _np(m.bias)
        return [Step("conv", name, arrays, {"stride": _pair(m.stride), "padding": _pair(m.padding),
                                            "dilation": _pair(m.dilation), "groups": int(m.groups)})]
    if kind in _ACTS:
        alpha = float(getattr(m, "negative_slope", getattr(m, "alpha", 0.01)))
        return [Step("act", name, attrs={"kind": _ACTS[kind], "alpha": alpha})]
    if kind == "GELU":
        approx = getattr(m, "approximate", "none")
        return [Step("act", name, attrs={"kind": "gelu_tanh" if approx == "tanh" else "gelu"})]
    if kind in ("MaxPool2d", "AvgPool2d"):
        k = _pair(m.kernel_size)
        stride = k if m.stride is None else _pair(m.stride)
        return [Step("maxpool" if kind == "MaxPool2d" else "avgpool", name,
                     attrs={"kernel": k, "stride": stride, "padding": _pair(m.padding)})]
    if kind == "Flatten":
        start, end = int(getattr(m, "start_dim", 1)), int(getattr(m, "end_dim", -1))
        return [Step("flatten", name, attrs={} if (start, end) == (1, -1) else
                     {"start_dim": start, "end_dim": end})]
    if kind in ("Dropout", "Identity"):
        return []
    if kind in ("BatchNorm2d", "BatchNorm1d"):
        return [Step("affine", name, {"weight": _np(m.weight), "bias": _np(m.bias),
                                      "running_mean": _np(m.running_mean),
                                      "running_var": _np(m.running_var)}, {"eps": float(m.eps)})]
    if kind == "Embedding":
        return [Step("embedding", name, {"weight": _np(m.weight)})]
    if kind == "Residual":
        short = getattr(m, "shortcut", None)
        return [Step("residual", name, body=_steps(m.body, f"{name}.body"),
                     shortcut=_steps(short, f"{name}.shortcut") if short is not None else [])]
    raise ValueError(f"inference plan: layer {name or '(root)'} of type {kind} is not supported")


# ---- rewrites ----------------------------------------------------------------------------------
def optimize(steps: list[Step]) -> list[Step]:
    """Fold BatchNorm into a preceding conv, fuse activations into the step before them."""
    out: list[Step] = []
    for s in steps:
        s.body = optimize(s.body)
        s.shortcut = optimize(s.shortcut)
        prev = out[-1] if out else None
        if s.kind == "affine" and prev is not None and prev.kind == "conv" and not prev.attrs.get("act"):
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
