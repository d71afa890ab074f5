"""ONNX import for the inference engine (through the `onnx` package): a model file becomes a
plan Graph (steps.py), which the engine optimizes and runs.

    graph, meta = graph_from_onnx("resnet18.onnx")   # Graph of steps; meta: input shape, names
    InferenceEngine.load("resnet18.onnx")            # the same, through serialize.plan_from_file

The import
1. reads the file, inlines local functions (the dynamo exporter's) and checks that the graph
   is whole (a corrupt or truncated file is a ValueError naming it);
2. rewrites node patterns that are one step (onnx_patterns.py: Erf-GELU, x * HardSigmoid(x),
   LayerNorm written out);
3. walks the nodes in order: nodes on known values are folded with NumPy (onnx_fold.py: the
   Shape/Gather/Slice/Concat/Cast/Unsqueeze/ConstantOfShape/Constant chains that compute
   shapes, with the batch axis kept symbolic), data nodes become steps (onnx_nodes.py,
   onnx_layout.py), Identity and Dropout disappear;
4. fuses scaled dot-product attention into one step (onnx_attention.py).
Supported data ops: the keys of CONVERTERS. Anything else, and any attribute or
operand layout the engine would not compute exactly as ONNX defines it, raises ValueError
naming the node. The one graph input's first axis is the batch: symbolic (any batch size)
when the file leaves it so; a fixed batch becomes symbolic too where every value keeps it as
its first axis (each sample computed alone; a constant Reshape target that starts with a
fixed batch of 2 or more counts as keeping it, onnx_layout._batch_entry), and stays fixed
otherwise (meta["batch"]: the engine then refuses any other batch size, naming the input and
the shape it needs); every other input dim must be fixed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import onnx_conv_transpose, onnx_layout, onnx_nodes
from .onnx_attention import fuse_attention
from .onnx_context import Context
from .onnx_fold import BATCHES, FOLD, fold_node
from .onnx_patterns import live, rewrite

CONVERTERS = {**onnx_nodes.CONVERTERS, **onnx_layout.CONVERTERS, **onnx_conv_transpose.CONVERTERS}
SUPPORTED = tuple(sorted(CONVERTERS))


def _needs_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ImportError("loading ONNX files needs the onnx package: pip install onnx") from None
    return onnx


def load_model(path: str) -> Any:
    """The ModelProto of `path`, with local functions inlined, checked to be whole: a graph,
    an opset, every value a node reads defined before it (a file cut at a field boundary
    still parses, so this is what catches most truncations)."""
    onnx = _needs_onnx()
    try:
        model = onnx.load(str(path))
        if len(model.functions):
            from onnx import inliner

            model = inliner.inline_local_functions(model)
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError, OSError and others
        raise ValueError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e})") from None
    g = model.graph
    problem = None
    if not model.ir_version or not len(model.opset_import) or not len(g.output):
        problem = "no IR version, opset or graph output"
    defined = {t.name for t in g.initializer} | {i.name for i in g.input}
    for n in g.node:
        missing = [i for i in n.input if i and i not in defined]
        if problem is None and missing:
            problem = f"node {n.name or n.op_type!r} reads {missing[0]!r}, which nothing before it defines"
        defined.update(n.output)
    if problem is None and any(o.name not in defined for o in g.output):
        problem = f"graph output {next(o.name for o in g.output if o.name not in defined)!r} is never computed"
    if problem:
        raise ValueError(f"{path}: not a valid ONNX model (truncated or corrupt? {problem})")
    return model


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _input_dims(path: str, value_info: Any) -> tuple[list, str]:
    """The graph input's dims (the first None when symbolic) and its NumPy dtype name."""
    from onnx import helper

    t = value_info.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    if not dims:
        raise ValueError(f"{path}: graph input {value_info.name!r} has no shape; the import needs its rank "
                         "and every dim but the batch")
    if any(d is None for d in dims[1:]):
        raise ValueError(f"{path}: graph input {value_info.name!r} has symbolic dims {dims}; only the first "
                         "(batch) axis may be symbolic")
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)) if t.elem_type else np.dtype(np.float32)
    if dtype not in (np.float32, np.int64, np.int32):
        raise ValueError(f"{path}: graph input {value_info.name!r} is {dtype}; float32 (or integer token ids) "
                         "is supported")
    return dims, dtype.name


def _keeps_batch(ctx: Context) -> bool:
    """Whether every data value has the batch as its first axis and nowhere else (so a model
    exported with a fixed batch computes each sample alone and runs at any batch size)."""
    return all(len(a) and a[0] == BATCHES[0] and b[0] == BATCHES[1] and a[1:] == b[1:]
               for a, b in ctx.shapes.values())


def _consumers(nodes: list, outputs: list[str]) -> dict[str, int]:
    count: dict[str, int] = {}
    for n in nodes:
        for i in n.input:
            if i:
                count[i] = count.get(i, 0) + 1
    for o in outputs:
        count[o] = count.get(o, 0) + 1
    return count


def _has_subgraph(node: Any) -> bool:
    return any(a.g.ByteSize() or len(a.graphs) for a in node.attribute)


def _convert(ctx: Context, node: Any) -> None:
    """One node: folded when every input is known at load time, else converted to steps."""
    op = node.op_type
    ins = list(node.input)
    if node.domain not in ("", "ai.onnx") or _has_subgraph(node):
        raise ctx.fail(f"op type {op!r} of domain {node.domain!r} (or with a subgraph) is not supported")
    if op in FOLD and op != "Shape" and all(not i or ctx.is_const(i) for i in ins):
        try:
            outs = fold_node(op, [ctx.pair(i) if i else None for i in ins], _attrs(node), ctx.opset)
        except (ValueError, IndexError, KeyError, TypeError) as e:
            raise ctx.fail(f"folding it at load time failed ({type(e).__name__}: {e})") from None
        for name, value in zip(node.output, outs):
            ctx.set_const(name, value)
        return
    if op in ("Shape", "Size") and ins and (ctx.is_data(ins[0]) or ctx.is_const(ins[0])):
        if ctx.is_const(ins[0]):
            shapes = tuple(v.shape for v in ctx.pair(ins[0]))
        else:
            shapes = ctx.shape(ins[0])
        a = _attrs(node)
        if op == "Size":
            pair = tuple(np.array(int(np.prod(s)), np.int64) for s in shapes)
        else:
            pair = tuple(np.array(s, np.int64)[slice(a.get("start", 0), a.get("end"))] for s in shapes)
        ctx.set_const(node.output[0], pair)  # type: ignore[arg-type]
        return
    if op == "CastLike" and ctx.is_const(ins[0]) and ctx.is_data(ins[1]):  # only the dtype is read
        dtype = ctx.dtypes[ctx.resolve(ins[1])]
        ctx.set_const(node.output[0], tuple(v.astype(dtype) for v in ctx.pair(ins[0])))  # type: ignore[arg-type]
        return
    fn = CONVERTERS.get(op)
    if fn is None:
        raise ctx.fail(f"unsupported op type {op!r} on run-time data (supported: {', '.join(SUPPORTED)}; "
                       "shape computations are folded at load time)")
    fn(ctx, _attrs(node))


def graph_from_onnx(path: str) -> tuple[Any, dict]:
    """The plan Graph of an ONNX file and its meta data (input_shape without the batch,
    input_name, output_names, opset, batch: None when symbolic, else the fixed size)."""
    graph, meta, _ = _graph_and_context(path)
    return graph, meta


def _graph_and_context(path: str) -> tuple[Any, dict, Context]:
    from onnx import numpy_helper

    model = load_model(path)
    g = model.graph
    opset = next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    try:
        inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    except Exception as e:  # noqa: BLE001 - a tensor whose data does not match its shape
        raise ValueError(f"{path}: not a valid ONNX model (truncated or corrupt? an initializer does "
                         f"not read: {type(e).__name__}: {e})") from None
    inputs = [i for i in g.input if i.name not in inits]
    if len(inputs) != 1:
        raise ValueError(f"{path}: expected one graph input (besides initializers), found "
                         f"{[i.name for i in inputs]}")
    outputs = [o.name for o in g.output]
    nodes = list(g.node)
    for i, n in enumerate(nodes):
        if not n.name:
            n.name = f"{n.op_type}_{i}"
    simple = dict(inits)  # the constants patterns look at: initializers, Constant nodes, their Identity
    for n in nodes:
        if n.op_type == "Constant" and len(n.output) == 1:
            try:
                simple[n.output[0]] = FOLD["Constant"]([], _attrs(n), opset)[0]
            except ValueError:
                pass
        elif n.op_type == "Identity" and n.input[0] in simple:
            simple[n.output[0]] = simple[n.input[0]]
    nodes = live(rewrite(nodes, simple, set(outputs)), outputs)
    dims, dtype = _input_dims(str(path), inputs[0])
    if dims[0] is None:
        return _import(str(path), opset, nodes, outputs, inits, inputs[0].name, dims, dtype, BATCHES)
    try:  # a fixed batch: symbolic too where the model keeps samples apart, else fixed
        graph, meta, ctx = _import(str(path), opset, nodes, outputs, inits, inputs[0].name, dims, dtype, BATCHES)
        if _keeps_batch(ctx):
            return graph, meta, ctx
    except ValueError:
        pass
    return _import(str(path), opset, nodes, outputs, inits, inputs[0].name, dims, dtype, (dims[0], dims[0]))


def _import(path: str, opset: int, nodes: list, outputs: list[str], inits: dict, name: str, dims: list,
            dtype: str, batches: tuple[int, int]) -> tuple[Any, dict, Context]:
    """The graph with the batch axis evaluated at `batches` (BATCHES: symbolic; (B, B): fixed)."""
    from .steps import Graph

    ctx = Context(path, opset, _consumers(nodes, outputs))
    ctx.fixed_batch = dims[0] if batches == BATCHES else None
    for init, arr in inits.items():
        ctx.set_const(init, (arr, arr))
    shape_a, shape_b = (batches[0], *dims[1:]), (batches[1], *dims[1:])
    ctx.set_data(name, (shape_a, shape_b), dtype)
    for node in nodes:
        ctx.node = node
        _convert(ctx, node)
    resolved = []
    for o in outputs:
        r = ctx.resolve(o)
        if r not in ctx.shapes or r == name:
            raise ValueError(f"{path}: graph output {o!r} is a constant or the input itself; the engine "
                             "computes outputs from the input")
        resolved.append(r)
    steps = fuse_attention(ctx.steps, ctx.shapes, resolved, ctx.fresh)
    meta = {"input_shape": list(dims[1:]), "input_name": name, "output_names": resolved,
            "opset": opset, "batch": None if shape_a[0] != shape_b[0] else shape_a[0]}
    return Graph(steps=steps, inputs=[name], outputs=resolved), meta, ctx


def plan_from_onnx(path: str) -> tuple[Any, dict]:
    """The optimized plan of an ONNX file (serialize.plan_from_file's ONNX branch)."""
    from .lowering import optimize

    graph, meta = graph_from_onnx(path)
    return optimize(graph), meta
