"""Saving an engine (plan + weights, atomically, as safetensors with a JSON sidecar) and loading
a plan from a file: a saved engine, a hipgrad training checkpoint or an ONNX file.

Format version 2 stores the graph: each step with the values it reads and writes, and the
graph's input and output values. Version 1 files (a chain whose residual steps nested a body
and a shortcut) are converted on load: each residual block becomes its branches' steps and an
add reading both, then the graph passes run over it as over any new plan."""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import numpy as np

from ..tensor import tensor
from .lowering import optimize, plan_from_module
from .shapes import unpack_weight
from .steps import Graph, Lowering, Step

ENGINE_FORMAT = "hipgrad-engine"
ENGINE_VERSION = 2
_KIND_RENAMED = {"affine": "batch_norm"}  # step kinds as files written by older versions name them


def unpacked(graph: Graph) -> Graph:
    """The plan as saved: packed linear (conv) weights back in the (N, K) ((K, C, R, S)) layout,
    which loads under any CPU ISA or device (each engine packs for its own)."""
    out = graph.copy()
    for s in out:
        if "wq_packed" in s.tensors:  # an INT8 conv's wq packed for qconv2d (wq is kept too)
            s.tensors.pop("wq_packed")
            s.attrs.pop("qpack_tag", None)
        if "weight_packed" in s.tensors:
            shape = s.attrs.pop("w_shape") if s.kind == "conv" else [s.attrs.pop("out_features"), -1]
            s.tensors["weight"] = tensor(unpack_weight(s.tensors.pop("weight_packed"), shape))
    return out


def _plain(v: Any) -> Any:
    """An attribute value as JSON holds it: NumPy scalars and arrays (an importer's) as Python
    numbers and lists."""
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_plain(u) for u in v]
    return v


def _to_json(graph: Graph, arrays: dict[str, np.ndarray]) -> list[dict]:
    out = []
    for i, s in enumerate(graph):
        key = str(i)
        for k, t in s.tensors.items():
            arrays[f"{key}.{k}"] = t.numpy()
        out.append({"kind": s.kind, "name": s.name, "inputs": s.inputs, "outputs": s.outputs,
                    "attrs": {k: _plain(v) for k, v in s.attrs.items()},
                    "x_scale": None if s.x_scale is None else float(s.x_scale), "key": key,
                    "arrays": list(s.tensors)})
    return out


def _step(r: dict, arrays: dict[str, np.ndarray], path: str, wired: bool) -> Step:
    """One stored step (unwired for a version-1 row: the chain wires it)."""
    try:
        attrs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in r["attrs"].items()}
        own = {k: arrays[f"{r['key']}.{k}"] for k in r["arrays"]}
        io = ([str(v) for v in r["inputs"]], [str(v) for v in r["outputs"]]) if wired else ([], [])
        return Step(_KIND_RENAMED.get(r["kind"], r["kind"]), str(r["name"]), *io, arrays=own,
                    attrs=attrs, x_scale=r["x_scale"])
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path}: corrupted engine file (missing {e})") from None


def _from_json(doc: dict, arrays: dict[str, np.ndarray], path: str) -> Graph:
    if doc["version"] >= 2:
        steps = [_step(r, arrays, path, True) for r in doc["plan"]]
        return Graph(steps, [str(v) for v in doc["graph_inputs"]],
                     [str(v) for v in doc["graph_outputs"]]).validate(path)
    low = Lowering()
    out = _lower_v1(doc["plan"], arrays, path, low, "input")
    return optimize(low.graph([out]))


def _lower_v1(rows: list[dict], arrays: dict, path: str, low: Lowering, x: str) -> str:
    """Version 1 rows (a chain; residual rows nest "body" and "shortcut" chains) into `low`."""
    for r in rows:
        if r.get("kind") != "residual":
            x = low.add(_step(r, arrays, path, False), x)
            continue
        body = _lower_v1(r["body"], arrays, path, low, x)
        short = _lower_v1(r["shortcut"], arrays, path, low, x) if r["shortcut"] else x
        add = _step(dict(r, kind="add", arrays=[]), arrays, path, False)
        x = low.add(add, body, short)
    return x


def _atomic_pair(weights_path, sidecar_path, blob: bytes, doc: dict) -> None:
    from ..training.checkpoint import _fsync_dir, _write_temp

    directory = weights_path.parent
    directory.mkdir(parents=True, exist_ok=True)
    tmp_w = _write_temp(directory, weights_path.name, blob)
    tmp_j = _write_temp(directory, sidecar_path.name, json.dumps(doc, indent=1).encode())
    os.replace(tmp_w, weights_path)
    os.replace(tmp_j, sidecar_path)
    _fsync_dir(directory)


def save_plan(path: str, graph: Graph, meta: dict) -> None:
    """Weights as safetensors at `path`, the plan in its JSON sidecar, written atomically."""
    import hashlib

    from safetensors.numpy import save

    from ..training.checkpoint import resolve_paths

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
    plan = _to_json(graph, arrays)
    blob = save(arrays)
    doc = {"format": ENGINE_FORMAT, "version": ENGINE_VERSION, "plan": plan,
           "graph_inputs": graph.inputs, "graph_outputs": graph.outputs, **meta,
           "weights_sha256": hashlib.sha256(blob).hexdigest()}
    _atomic_pair(weights_path, sidecar, blob, doc)


def plan_from_file(path: str) -> tuple[Graph, dict]:
    """(plan, meta) from an ONNX file, a saved engine or a hipgrad training checkpoint."""
    from ..training.checkpoint import CheckpointError, load_checkpoint, resolve_paths

    from ..training.checkpoint import check_path

    path = check_path(path, "InferenceEngine.load")
    if path.endswith(".onnx"):
        if not os.path.exists(path):
            raise FileNotFoundError(f"ONNX file not found: {path}")
        from .onnx import plan_from_onnx

        try:
            plan, meta = plan_from_onnx(path)
            return optimize(plan), meta  # (the passes leave an optimized graph as it is)
        except (TypeError, ValueError, KeyError, AttributeError, IndexError) as e:
            if str(e).startswith(path):
                raise
            raise ValueError(f"{path}: not a usable ONNX model ({type(e).__name__}: {e})") from None
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
        meta = {k: doc.get(k) for k in ("precision", "calibrated", "input_shape", "batch")}
        try:
            plan = _from_json(doc, arrays, str(weights_path))
        except (TypeError, ValueError, KeyError, AttributeError, IndexError) as e:
            raise CheckpointError(f"{sidecar}: corrupted engine plan ({type(e).__name__}: {e})") from None
        if meta["precision"] not in (None, "fp32", "int8") or not isinstance(meta["calibrated"], (bool, type(None))):
            raise CheckpointError(f"{sidecar}: corrupted engine file (precision {meta['precision']!r}, "
                                  f"calibrated {meta['calibrated']!r})")
        return plan, _checked_shape(meta, sidecar)
    ckpt = load_checkpoint(path)
    model = ckpt.build_model("cpu")
    model.eval()
    spec = ckpt.spec or {}
    return plan_from_module(model), _checked_shape({"input_shape": spec.get("in_shape")}, sidecar)


def _checked_shape(meta: dict, sidecar: Any) -> dict:
    """meta with its input_shape checked: None or a list of positive ints; its fixed batch
    (saved from an ONNX import) None or a positive int."""
    from ..training.checkpoint import CheckpointError
    batch = meta.get("batch")
    if batch is not None and not (isinstance(batch, int) and not isinstance(batch, bool) and 0 < batch < 2**31):
        raise CheckpointError(f"{sidecar}: fixed batch {batch!r} is not a positive int")
    shape = meta.get("input_shape")
    if shape is not None and not (isinstance(shape, list) and shape and all(
            isinstance(v, int) and not isinstance(v, bool) and 0 < v < 2**31 for v in shape)):
        raise CheckpointError(f"{sidecar}: input shape {shape!r} is not a list of positive ints")
    return meta


def _read_safetensors(path: Any, sha256: str | None) -> dict[str, np.ndarray]:
    import hashlib

    from safetensors import SafetensorError
    from safetensors.numpy import load

    from ..training.checkpoint import CheckpointError

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
