"""ONNX import for the inference engine (through the `onnx` package): a chain of the supported
ops becomes a plan. Supported: Gemm, MatMul(+Add), Conv, Relu, LeakyRelu, Sigmoid, Tanh, Gelu,
Elu, MaxPool, AveragePool, GlobalAveragePool, BatchNormalization (folded into the Conv before
it), Flatten, Reshape (to (N, -1)), Softmax. Anything else raises naming the node and op type."""

from __future__ import annotations

from typing import Any

import numpy as np

from .infer import Step
from .plan import optimize

SUPPORTED = ("Gemm", "MatMul", "Add", "Conv", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Gelu", "Elu",
             "MaxPool", "AveragePool", "GlobalAveragePool", "BatchNormalization", "Flatten",
             "Reshape", "Softmax")


def _attrs(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _spatial(attrs: dict, key: str, default: int) -> tuple[int, int]:
    v = attrs.get(key)
    return (default, default) if v is None else (int(v[0]), int(v[1]))


def _pads(attrs: dict, node: Any) -> tuple[int, int]:
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise ValueError(f"ONNX node {node.name!r} ({node.op_type}): auto_pad is not supported; use explicit pads")
    p = attrs.get("pads", [0, 0, 0, 0])
    if p[0] != p[2] or p[1] != p[3]:
        raise ValueError(f"ONNX node {node.name!r} ({node.op_type}): asymmetric pads {list(p)} are not supported")
    return int(p[0]), int(p[1])


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
        if op == "Gemm":
            if a.get("transA", 0):
                raise ValueError(f"{path}: ONNX node {name!r} (Gemm): transA=1 is not supported")
            weight = w[0] if a.get("transB", 0) else w[0].T
            arrays = {"weight": np.ascontiguousarray(weight * a.get("alpha", 1.0), np.float32)}
            if len(w) > 1 and w[1] is not None:
                arrays["bias"] = (np.broadcast_to(w[1], (weight.shape[0],)) * a.get("beta", 1.0)).astype(np.float32)
            steps.append(Step("linear", name, arrays))
        elif op == "MatMul":
            steps.append(Step("linear", name, {"weight": np.ascontiguousarray(w[0].T)}))
        elif op == "Add":
            prev = steps[-1] if steps else None
            if prev is None or prev.kind != "linear" or "bias" in prev.arrays or w[0] is None:
                raise ValueError(f"{path}: ONNX node {name!r} (Add) is supported only as the bias of a MatMul")
            prev.arrays["bias"] = np.broadcast_to(w[0], (prev.arrays["weight"].shape[0],)).astype(np.float32)
        elif op == "Conv":
            arrays = {"weight": w[0]}
            if len(w) > 1 and w[1] is not None:
                arrays["bias"] = w[1]
            steps.append(Step("conv", name, arrays, {
                "stride": _spatial(a, "strides", 1), "padding": _pads(a, node),
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
                raise ValueError(f"{path}: ONNX node {name!r} ({op}): ceil_mode=1 is not supported")
            pads = _pads(a, node)
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
            steps.append(Step("affine", name, {"weight": scale, "bias": bias, "running_mean": mean,
                                               "running_var": var}, {"eps": float(a.get("epsilon", 1e-5))}))
        elif op == "Flatten":
            if int(a.get("axis", 1)) != 1:
                raise ValueError(f"{path}: ONNX node {name!r} (Flatten): only axis=1 is supported")
            steps.append(Step("flatten", name))
        elif op == "Reshape":
            target = w[0]
            if target is None or len(target) != 2 or int(target[1]) not in (-1,) and target[0] not in (0, -1):
                raise ValueError(f"{path}: ONNX node {name!r} (Reshape): only a reshape to (N, -1) is supported")
            steps.append(Step("flatten", name))
        elif op == "Softmax":
            if int(a.get("axis", -1)) not in (-1, 1):
                raise ValueError(f"{path}: ONNX node {name!r} (Softmax): only the last axis is supported")
            steps.append(Step("softmax", name))
        current = node.output[0]
    in_dims = shapes.get(inputs[0].name) or []
    input_shape = [int(d) for d in in_dims[1:]] if in_dims and all(d for d in in_dims[1:]) else None
    return optimize(steps), {"input_shape": input_shape}
