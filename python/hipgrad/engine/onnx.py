"""ONNX import for the inference engine (through the `onnx` package): a chain of the supported
ops becomes a plan. Supported: Gemm, MatMul(+Add), Conv, Relu, LeakyRelu, Sigmoid, Tanh, Gelu,
Elu, MaxPool, AveragePool, GlobalAveragePool, BatchNormalization (folded into the Conv before
it), Flatten, Reshape (to (N, -1)), Softmax (on the last axis). Anything else, and any attribute
or operand layout the engine would not compute exactly as ONNX defines it, raises naming the
node and op type."""

from __future__ import annotations

from typing import Any

import numpy as np

from .steps import Step
from .lowering import optimize

SUPPORTED = ("Gemm", "MatMul", "Add", "Conv", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Gelu", "Elu",
             "MaxPool", "AveragePool", "GlobalAveragePool", "BatchNormalization", "Flatten",
             "Reshape", "Softmax")


def _attrs(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _spatial(attrs: dict, key: str, default: int) -> tuple[int, int]:
    v = attrs.get(key)
    return (default, default) if v is None else (int(v[0]), int(v[1]))


def _pads(attrs: dict, node: Any, name: str) -> tuple[int, int]:
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise ValueError(f"ONNX node {name!r} ({node.op_type}): auto_pad is not supported; use explicit pads")
    p = attrs.get("pads", [0, 0, 0, 0])
    if len(p) != 4:
        raise ValueError(f"ONNX node {name!r} ({node.op_type}): pads {list(p)}: only 2-D (4 pads) is supported")
    if p[0] != p[2] or p[1] != p[3]:
        raise ValueError(f"ONNX node {name!r} ({node.op_type}): asymmetric pads {list(p)} are not supported")
    return int(p[0]), int(p[1])


def _bias(b: np.ndarray, n: int, where: str) -> np.ndarray:
    """An ONNX bias that is the same for every row, as an (n,) vector: a scalar, (n,) or (1, n)."""
    b = np.asarray(b, np.float32)
    if b.size == 1:
        return np.full((n,), b.reshape(-1)[0], np.float32)
    if b.shape in ((n,), (1, n)):
        return np.ascontiguousarray(b.reshape(n))
    raise ValueError(f"{where}: bias of shape {b.shape} is not supported (a scalar, ({n},) or (1, {n}); "
                     "a per-row bias depends on the batch)")


def _flattens(target: np.ndarray | None, dims: list | None, allowzero: bool) -> bool:
    """A Reshape to `target` of an input of `dims` (None where unknown) is (N, -1): the batch
    kept, every other dim merged."""
    if target is None or target.ndim != 1 or len(target) != 2 or not dims:
        return False
    n, f = (int(v) for v in target)
    feat = int(np.prod(dims[1:])) if all(d for d in dims[1:]) else None
    batch_kept = (n == 0 and not allowzero) or (n > 0 and dims[0] == n) or (n == -1 and f != -1)
    return batch_kept and (f == -1 or (feat is not None and f == feat))


def plan_from_onnx(path: str) -> tuple[list[Step], dict]:
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise ImportError("loading ONNX files needs the onnx package: pip install onnx") from None
    try:
        model = onnx.load(path)
        model = onnx.shape_inference.infer_shapes(model)
    except Exception as e:  # noqa: BLE001 - onnx raises DecodeError and others
        raise ValueError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e})") from None
    graph = model.graph
    opset = next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    inits = {t.name: numpy_helper.to_array(t).astype(np.float32, copy=True) for t in graph.initializer}
    shapes = {}
    for vi in list(graph.value_info) + list(graph.input) + list(graph.output):
        dims = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = dims
    inputs = [i for i in graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ValueError(f"{path}: expected one graph input, found {[i.name for i in inputs]}")
    current = inputs[0].name
    steps: list[Step] = []
    for node in graph.node:
        name = node.name or f"{node.op_type}_{len(steps)}"
        if node.op_type not in SUPPORTED:
            raise ValueError(f"{path}: ONNX node {name!r} has unsupported op type {node.op_type!r} "
                             f"(supported: {', '.join(SUPPORTED)})")
        data_inputs = [i for i in node.input if i and i not in inits]
        if data_inputs != [current]:
            raise ValueError(f"{path}: ONNX node {name!r} ({node.op_type}) does not continue a single "
                             "chain; only sequential graphs are supported")
        a = _attrs(node)
        w = [inits.get(i) for i in node.input[1:]]
        op = node.op_type
        where = f"{path}: ONNX node {name!r} ({op})"
        dims = shapes.get(current)  # the data input's shape where shape inference knows it
        rank = len(dims) if dims else None
        if op in ("Gemm", "MatMul", "Conv"):
            if node.input[0] != current:
                raise ValueError(f"{where}: the data must be the first input (weights second), "
                                 f"got inputs {list(node.input)}")
            if len(w) < 1 or w[0] is None:
                raise ValueError(f"{where}: the weight {node.input[1] if len(node.input) > 1 else '?'} "
                                 "must be a constant initializer")
        if op == "Gemm":
            if a.get("transA", 0):
                raise ValueError(f"{where}: transA=1 is not supported")
            if w[0].ndim != 2 or (rank is not None and rank != 2):
                raise ValueError(f"{where}: Gemm multiplies 2-D matrices; got a {rank}-D input and a "
                                 f"{w[0].ndim}-D weight")
            weight = w[0] if a.get("transB", 0) else w[0].T
            arrays = {"weight": np.ascontiguousarray(weight * a.get("alpha", 1.0), np.float32)}
            if len(w) > 1 and w[1] is not None:
                arrays["bias"] = _bias(w[1], weight.shape[0], where) * np.float32(a.get("beta", 1.0))
            steps.append(Step("linear", name, arrays=arrays))
        elif op == "MatMul":
            if w[0].ndim != 2:
                raise ValueError(f"{where}: only a 2-D (K, N) weight is supported, got shape {w[0].shape}")
            steps.append(Step("linear", name, arrays={"weight": np.ascontiguousarray(w[0].T)}))
        elif op == "Add":
            prev = steps[-1] if steps else None
            consts = [inits[i] for i in node.input if i in inits]
            if prev is None or prev.kind != "linear" or "bias" in prev.arrays or len(consts) != 1:
                raise ValueError(f"{where}: Add is supported only as the bias of a MatMul")
            prev.arrays["bias"] = _bias(consts[0], prev.arrays["weight"].shape[0], where)
        elif op == "Conv":
            if w[0].ndim != 4:
                raise ValueError(f"{where}: only 2-D convolution (a 4-D weight) is supported, got a "
                                 f"weight of shape {w[0].shape}")
            arrays = {"weight": w[0]}
            if len(w) > 1 and w[1] is not None:
                arrays["bias"] = w[1]
            steps.append(Step("conv", name, arrays=arrays, attrs={
                "stride": _spatial(a, "strides", 1), "padding": _pads(a, node, name),
                "dilation": _spatial(a, "dilations", 1), "groups": int(a.get("group", 1))}))
        elif op in ("Relu", "Sigmoid", "Tanh"):
            steps.append(Step("act", name, attrs={"kind": op.lower()}))
        elif op == "LeakyRelu":
            steps.append(Step("act", name, attrs={"kind": "leaky_relu", "alpha": float(a.get("alpha", 0.01))}))
        elif op == "Elu":
            steps.append(Step("act", name, attrs={"kind": "elu", "alpha": float(a.get("alpha", 1.0))}))
        elif op == "Gelu":
            approx = a.get("approximate", b"none")
            approx = approx.decode() if isinstance(approx, bytes) else approx
            steps.append(Step("act", name, attrs={"kind": "gelu_tanh" if approx == "tanh" else "gelu"}))
        elif op in ("MaxPool", "AveragePool"):
            if a.get("ceil_mode", 0):
                raise ValueError(f"{where}: ceil_mode=1 is not supported")
            if any(int(d) != 1 for d in a.get("dilations", [])):
                raise ValueError(f"{where}: dilations {list(a['dilations'])} are not supported (pooling "
                                 "windows are dense)")
            if len(a.get("kernel_shape", [])) != 2:
                raise ValueError(f"{where}: only 2-D pooling (a 2-element kernel_shape) is supported, "
                                 f"got kernel_shape {list(a.get('kernel_shape', []))}")
            pads = _pads(a, node, name)
            if op == "AveragePool" and any(pads) and not a.get("count_include_pad", 0):
                raise ValueError(f"{path}: ONNX node {name!r} (AveragePool): padding with "
                                 "count_include_pad=0 is not supported (hipgrad counts padding)")
            k = _spatial(a, "kernel_shape", 1)
            steps.append(Step("maxpool" if op == "MaxPool" else "avgpool", name, attrs={
                "kernel": k, "stride": _spatial(a, "strides", 1), "padding": pads}))
        elif op == "GlobalAveragePool":
            dims = shapes.get(current)
            if not dims or len(dims) != 4 or dims[2] is None or dims[3] is None:
                raise ValueError(f"{path}: ONNX node {name!r} (GlobalAveragePool) needs a known input height and width")
            steps.append(Step("avgpool", name, attrs={"kernel": (dims[2], dims[3]),
                                                      "stride": (dims[2], dims[3]), "padding": (0, 0)}))
        elif op == "BatchNormalization":
            scale, bias, mean, var = w[:4]
            steps.append(Step("batch_norm", name, arrays={"weight": scale, "bias": bias, "running_mean": mean,
                                               "running_var": var}, attrs={"eps": float(a.get("epsilon", 1e-5))}))
        elif op == "Flatten":
            axis = int(a.get("axis", 1))
            if not (axis == 1 or (rank is not None and axis + rank == 1)):
                raise ValueError(f"{where}: only axis=1 (keep the batch, flatten the rest) is supported, "
                                 f"got axis={axis}")
            steps.append(Step("flatten", name))
        elif op == "Reshape":
            if not _flattens(w[0] if w else None, dims, bool(a.get("allowzero", 0))):
                raise ValueError(f"{where}: only a reshape that keeps the batch and flattens the rest, "
                                 f"(N, -1), is supported; got shape {None if not w or w[0] is None else w[0].astype(int).tolist()} "
                                 f"for an input of shape {dims}")
            steps.append(Step("flatten", name))
        elif op == "Softmax":
            axis = int(a.get("axis", -1 if opset >= 13 else 1))
            # opset >= 13: over `axis`; before: over the dims from `axis` on, flattened. Both are
            # the last axis exactly when `axis` is the last one.
            if not (axis == -1 or (rank is not None and axis in (rank - 1, -1))):
                raise ValueError(f"{where}: only a softmax over the last axis is supported, got axis={axis} "
                                 f"(opset {opset}) for a {rank}-D input")
            steps.append(Step("softmax", name))
        current = node.output[0]
    in_dims = shapes.get(inputs[0].name) or []
    input_shape = [int(d) for d in in_dims[1:]] if in_dims and all(d for d in in_dims[1:]) else None
    return optimize(steps), {"input_shape": input_shape}
