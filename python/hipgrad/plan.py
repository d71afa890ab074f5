"""Compiling models into inference plans (see infer.py): from an nn.Module, from a hipgrad
checkpoint, from an ONNX file, or from a saved engine; then the plan's rewrites: BatchNorm
folded into the convolution before it, activations fused into the step before them, Dropout and
Identity removed."""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import numpy as np

from .infer import Step

ENGINE_FORMAT = "hipgrad-engine"
ENGINE_VERSION = 1

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


# ---- saving and loading -----------------------------------------------------------------------
def _to_json(steps: list[Step], arrays: dict[str, np.ndarray]) -> list[dict]:
    out = []
    for i, s in enumerate(steps):
        key = f"{len(arrays)}_{i}"
        names = []
        for k, t in s.tensors.items():
            arrays[f"{key}.{k}"] = t.numpy()
            names.append(k)
        out.append({"kind": s.kind, "name": s.name, "attrs": s.attrs, "x_scale": s.x_scale,
                    "key": key, "arrays": names, "body": _to_json(s.body, arrays),
                    "shortcut": _to_json(s.shortcut, arrays)})
    return out


def _from_json(rows: list[dict], arrays: dict[str, np.ndarray], path: str) -> list[Step]:
    steps = []
    for r in rows:
        try:
            attrs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in r["attrs"].items()}
            own = {k: arrays[f"{r['key']}.{k}"] for k in r["arrays"]}
            s = Step(r["kind"], r["name"], own, attrs, _from_json(r["body"], arrays, path),
                     _from_json(r["shortcut"], arrays, path), x_scale=r["x_scale"])
        except (KeyError, TypeError) as e:
            raise ValueError(f"{path}: corrupted engine file (missing {e})") from None
        steps.append(s)
    return steps


def _atomic_pair(weights_path, sidecar_path, blob: bytes, doc: dict) -> None:
    from .checkpoint import _fsync_dir, _write_temp

    directory = weights_path.parent
    directory.mkdir(parents=True, exist_ok=True)
    tmp_w = _write_temp(directory, weights_path.name, blob)
    tmp_j = _write_temp(directory, sidecar_path.name, json.dumps(doc, indent=1).encode())
    os.replace(tmp_w, weights_path)
    os.replace(tmp_j, sidecar_path)
    _fsync_dir(directory)


def save_plan(path: str, steps: list[Step], meta: dict) -> None:
    """Weights as safetensors at `path`, the plan in its JSON sidecar, written atomically."""
    import hashlib

    from safetensors.numpy import save

    from .checkpoint import resolve_paths

    weights_path, sidecar = resolve_paths(path)
    if weights_path.exists() or sidecar.exists():
        try:
            existing = json.loads(sidecar.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            existing = None
        if not (isinstance(existing, dict) and existing.get("format") == ENGINE_FORMAT):
            raise FileExistsError(f"{weights_path} exists and is not a saved engine (a training "
                                  "checkpoint?); save the engine under another path")
    arrays: dict[str, np.ndarray] = {}
    plan = _to_json(steps, arrays)
    blob = save(arrays)
    doc = {"format": ENGINE_FORMAT, "version": ENGINE_VERSION, "plan": plan, **meta,
           "weights_sha256": hashlib.sha256(blob).hexdigest()}
    _atomic_pair(weights_path, sidecar, blob, doc)


def plan_from_file(path: str) -> tuple[list[Step], dict]:
    """(plan, meta) from an ONNX file, a saved engine or a hipgrad training checkpoint."""
    from .checkpoint import CheckpointError, load_checkpoint, resolve_paths

    path = os.fspath(path)
    if path.endswith(".onnx"):
        if not os.path.exists(path):
            raise FileNotFoundError(f"ONNX file not found: {path}")
        from .onnx_import import plan_from_onnx

        return plan_from_onnx(path)
    weights_path, sidecar = resolve_paths(path, reading=True)
    try:
        doc = json.loads(sidecar.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{sidecar}: sidecar of {weights_path} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{sidecar}: corrupt or truncated sidecar ({e})") from None
    if isinstance(doc, dict) and doc.get("format") == ENGINE_FORMAT:
        if not isinstance(doc.get("version"), int) or doc["version"] > ENGINE_VERSION:
            raise CheckpointError(f"{sidecar}: engine format version {doc.get('version')!r} is newer "
                                  f"than this hipgrad reads ({ENGINE_VERSION}); upgrade hipgrad")
        if not isinstance(doc.get("plan"), list) or not doc["plan"]:
            raise CheckpointError(f"{sidecar}: corrupted engine file (no plan steps)")
        arrays = _read_safetensors(weights_path, doc.get("weights_sha256"))
        meta = {k: doc.get(k) for k in ("precision", "calibrated", "input_shape")}
        return _from_json(doc.get("plan", []), arrays, str(weights_path)), meta
    ckpt = load_checkpoint(path)
    model = ckpt.build_model("cpu")
    model.eval()
    spec = ckpt.spec or {}
    return plan_from_module(model), {"input_shape": spec.get("in_shape")}


def _read_safetensors(path: Any, sha256: str | None) -> dict[str, np.ndarray]:
    import hashlib

    from safetensors import SafetensorError
    from safetensors.numpy import load

    from .checkpoint import CheckpointError

    try:
        blob = pathlib.Path(path).read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: engine weights not found") from None
    if hashlib.sha256(blob).hexdigest() != sha256:
        raise CheckpointError(f"{path}: weights do not match their sidecar (truncated or corrupt file)")
    try:
        return load(blob)
    except SafetensorError as e:
        raise CheckpointError(f"{path}: corrupt safetensors data ({e})") from None
