"""ONNX compute nodes -> plan steps (the Graph IR of steps.py): convolution, pooling,
normalization, activations, elementwise arithmetic, matrix products, softmax. The shape and
layout nodes are in onnx_layout.py.

Each converter reads its node from the import Context (onnx_context.py), refuses whatever the
engine would not compute exactly as ONNX defines it (a ValueError naming the node), and emits
steps with their output shapes. Decisions the IR leaves open, made here:
- asymmetric Conv/AveragePool pads become a `pad` step (zeros) before the op; asymmetric
  MaxPool pads a `pad` step of -inf sized so that the pool without padding has ONNX's windows;
- `c - x` with a constant c is mul(x, -1) then add(c) (exact); `c / x` is refused;
- an Add of a constant after a bias-less linear step whose output nothing else reads becomes
  that step's bias (MatMul + Add of nn.Linear);
- Softmax before opset 13 (over the flattened trailing dims) is reshape, softmax, reshape;
  from opset 13 over a middle axis: transpose (that axis last), softmax, transpose back;
- ReduceMean over the spatial axes of NCHW is global_avgpool (+ a reshape when keepdims=0);
- Clip is relu (0, none) or relu6 (0, 6), HardSigmoid only PyTorch's (alpha 1/6, beta 1/2);
- Where(constant cond, x, -inf) (an attention mask) is an add of 0 / -inf.
"""

from __future__ import annotations

import numpy as np

from .onnx_context import (Context, broadcast, float_data, int_pair, only_first_output, registrar,
                           show_shape, text)
from .onnx_fold import _axes, _norm

CONVERTERS: dict = {}
converter = registrar(CONVERTERS)
_F32_MAX = float(np.finfo(np.float32).max)


def _pads(ctx: Context, a: dict, hw: tuple, k: tuple, s: tuple, d: tuple) -> tuple[int, int, int, int]:
    """(top, left, bottom, right), from `pads` or `auto_pad` (computed for the static size)."""
    auto = text(a.get("auto_pad", "NOTSET"))
    if auto == "NOTSET":
        p = [int(v) for v in a.get("pads", [0, 0, 0, 0])]
        if len(p) != 4 or min(p) < 0:
            raise ctx.fail(f"pads {p}: only 2-D (4 non-negative pads) are supported")
        return p[0], p[1], p[2], p[3]
    if auto == "VALID":
        return 0, 0, 0, 0
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise ctx.fail(f"auto_pad={auto!r} is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER")
    begin, end = [], []
    for i in range(2):
        total = max(0, (-(-hw[i] // s[i]) - 1) * s[i] + (k[i] - 1) * d[i] + 1 - hw[i])
        small, big = total // 2, total - total // 2
        begin.append(small if auto == "SAME_UPPER" else big)
        end.append(big if auto == "SAME_UPPER" else small)
    return begin[0], begin[1], end[0], end[1]


def _pad(ctx: Context, x: str, pads: tuple, value: float) -> str:
    out = ctx.fresh(f"{x}:pad")
    t, l, b, r = pads
    shapes = ctx.both(lambda s: (s[0], s[1], s[2] + t + b, s[3] + l + r), ctx.shape(x))
    ctx.emit("pad", [x], [out], [shapes], attrs={"pads": tuple(pads), "value": float(value)}, suffix=":pad")
    return out


def _window_out(size: int, k: int, s: int, d: int, p0: int, p1: int, ceil: bool) -> int:
    """Output length of a conv/pool window: ONNX's formula, and with ceil_mode PyTorch's rule
    (which ONNX runtimes follow) that a window starting in the end padding is dropped."""
    span = size + p0 + p1 - d * (k - 1) - 1
    if span < 0:
        raise ValueError(f"the window ({k}, dilation {d}) is larger than the padded input ({size + p0 + p1})")
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= size + p0:
        out -= 1
    return out


@converter("Conv")
def conv(ctx: Context, a: dict) -> None:
    x = float_data(ctx)
    w = ctx.const(1, "weight")
    if w.ndim != 4 or ctx.rank(x) != 4:
        raise ctx.fail(f"only 2-D convolution is supported (a 4-D input and weight); got input "
                       f"{show_shape(ctx.shape(x))} and weight {w.shape}")
    bias = ctx.const(2, "bias", optional=True)
    groups = int(a.get("group", 1))
    cin, h, wd = ctx.static_dims(x, [1, 2, 3], "channels, height and width")
    if cin != w.shape[1] * groups or w.shape[0] % groups:
        raise ctx.fail(f"weight {w.shape} with group={groups} does not fit {cin} input channels")
    if "kernel_shape" in a and tuple(a["kernel_shape"]) != w.shape[2:]:
        raise ctx.fail(f"kernel_shape {list(a['kernel_shape'])} differs from the weight's {w.shape[2:]}")
    s, d = int_pair(ctx, a, "strides", 1), int_pair(ctx, a, "dilations", 1)
    k = tuple(int(v) for v in w.shape[2:])
    pads = _pads(ctx, a, (h, wd), k, s, d)
    if pads[:2] != pads[2:]:
        x, pads = _pad(ctx, x, pads, 0.0), (0, 0, 0, 0)
    arrays = {"weight": w} if bias is None else {"weight": w, "bias": bias}
    shapes = ctx.both(lambda sh: (sh[0], w.shape[0], _window_out(sh[2], k[0], s[0], d[0], pads[0], pads[2], False),
                                  _window_out(sh[3], k[1], s[1], d[1], pads[1], pads[3], False)), ctx.shape(x))
    ctx.emit("conv", [x], [ctx.node.output[0]], [shapes], arrays,
             {"stride": s, "padding": pads[:2], "dilation": d, "groups": groups})


@converter("MaxPool", "AveragePool")
def pool(ctx: Context, a: dict) -> None:
    op = ctx.node.op_type
    x = float_data(ctx)
    only_first_output(ctx)
    if ctx.rank(x) != 4 or len(a.get("kernel_shape", [])) != 2:
        raise ctx.fail(f"only 2-D pooling is supported; got input {show_shape(ctx.shape(x))} and "
                       f"kernel_shape {list(a.get('kernel_shape', []))}")
    k, s, d = int_pair(ctx, a, "kernel_shape", 1), int_pair(ctx, a, "strides", 1), int_pair(ctx, a, "dilations", 1)
    if d != (1, 1):
        raise ctx.fail(f"dilations {list(d)} are not supported (pooling windows are dense)")
    h, w = ctx.static_dims(x, [2, 3], "height and width")
    ceil, include = bool(a.get("ceil_mode", 0)), bool(a.get("count_include_pad", 0))
    pads = _pads(ctx, a, (h, w), k, s, d)
    try:
        out_hw = (_window_out(h, k[0], s[0], 1, pads[0], pads[2], ceil),
                  _window_out(w, k[1], s[1], 1, pads[1], pads[3], ceil))
    except ValueError as e:
        raise ctx.fail(str(e)) from None
    if pads[:2] != pads[2:]:
        if op == "AveragePool" and (ceil or not include):
            raise ctx.fail(f"asymmetric pads {list(pads)} with ceil_mode={int(ceil)} and "
                           f"count_include_pad={int(include)} are not supported")
        if op == "MaxPool":  # -inf padding that ends exactly where ONNX's last window does
            bottom, right = ((o - 1) * st + kk - size - p0 for o, st, kk, size, p0 in
                             zip(out_hw, s, k, (h, w), pads[:2]))
            if bottom < 0 or right < 0:
                raise ctx.fail(f"asymmetric pads {list(pads)} are not supported with these windows")
            pads = (pads[0], pads[1], bottom, right)
        x = _pad(ctx, x, pads, -np.inf if op == "MaxPool" else 0.0)
        pads, ceil = (0, 0, 0, 0), False
    attrs = {"kernel": k, "stride": s, "padding": pads[:2], "ceil_mode": ceil}
    if op == "AveragePool":
        attrs["count_include_pad"] = include
    shapes = ctx.both(lambda sh: (sh[0], sh[1], *out_hw), ctx.shape(x))
    ctx.emit("maxpool" if op == "MaxPool" else "avgpool", [x], [ctx.node.output[0]], [shapes], attrs=attrs)


@converter("GlobalAveragePool", "GlobalMaxPool")
def global_pool(ctx: Context, a: dict) -> None:
    x = float_data(ctx)
    if ctx.rank(x) != 4:
        raise ctx.fail(f"only 4-D (NCHW) input is supported, got {show_shape(ctx.shape(x))}")
    shapes = ctx.both(lambda sh: (sh[0], sh[1], 1, 1), ctx.shape(x))
    if ctx.node.op_type == "GlobalAveragePool":
        ctx.emit("global_avgpool", [x], [ctx.node.output[0]], [shapes])
        return
    hw = ctx.static_dims(x, [2, 3], "height and width")
    ctx.emit("maxpool", [x], [ctx.node.output[0]], [shapes],
             attrs={"kernel": hw, "stride": (1, 1), "padding": (0, 0), "ceil_mode": False})


@converter("ReduceMean")
def reduce_mean(ctx: Context, a: dict) -> None:
    x = float_data(ctx)
    r = ctx.rank(x)
    axes = _axes([None, ctx.const(1, "axes", optional=True)], a, ctx.opset, 18)
    if axes is None and a.get("noop_with_empty_axes", 0):
        ctx.alias[ctx.node.output[0]] = x
        return
    try:
        axes = list(range(r)) if axes is None else _norm(axes, r)
    except ValueError as e:
        raise ctx.fail(str(e)) from None
    keep = bool(a.get("keepdims", 1))
    out = ctx.node.output[0]
    kept = ctx.both(lambda sh: tuple(1 if i in axes else v for i, v in enumerate(sh)), ctx.shape(x))
    if r == 4 and axes == [2, 3]:  # the mean over H*W of each (n, c): global average pooling
        pooled = out if keep else ctx.fresh(f"{out}:pooled")
        ctx.emit("global_avgpool", [x], [pooled], [kept])
        if not keep:
            ctx.reshape(pooled, out, ctx.both(lambda sh: sh[:2], kept), suffix=":squeeze")
        return
    shapes = kept if keep else ctx.both(lambda sh: tuple(v for i, v in enumerate(sh) if i not in axes), ctx.shape(x))
    ctx.emit("reduce_mean", [x], [out], [shapes], attrs={"axes": tuple(axes), "keepdims": keep})


@converter("BatchNormalization")
def batch_norm(ctx: Context, a: dict) -> None:
    x = float_data(ctx)
    only_first_output(ctx)
    if a.get("training_mode", 0):
        raise ctx.fail("training_mode=1 (batch statistics) is not supported; export in eval mode")
    c = ctx.static_dims(x, [1], "channels")[0] if ctx.rank(x) >= 2 else -1
    arrays = {k: ctx.const(i, k.replace("_", " ")) for i, k in
              enumerate(("weight", "bias", "running_mean", "running_var"), start=1)}
    if any(v.shape != (c,) for v in arrays.values()) or ctx.rank(x) not in (2, 4):
        raise ctx.fail(f"an input {show_shape(ctx.shape(x))} (2-D or 4-D) with per-channel parameters "
                       f"of {c} values is supported, got {[v.shape for v in arrays.values()]}")
    ctx.emit("batch_norm", [x], [ctx.node.output[0]], [ctx.shape(x)], arrays,
             {"eps": float(a.get("epsilon", 1e-5))})


def _clip_kind(ctx: Context, a: dict) -> str:
    if ctx.opset >= 11:
        lo, hi = ctx.const(1, "min", optional=True), ctx.const(2, "max", optional=True)
    else:
        lo, hi = a.get("min"), a.get("max")
    lo = None if lo is None or float(lo) <= -_F32_MAX else float(lo)
    hi = None if hi is None or float(hi) >= _F32_MAX else float(hi)
    if lo == 0.0 and hi is None:
        return "relu"
    if lo == 0.0 and hi == 6.0:
        return "relu6"
    raise ctx.fail(f"Clip(min={lo}, max={hi}) is supported only as ReLU (0, none) or ReLU6 (0, 6)")


@converter("Relu", "Sigmoid", "Tanh", "LeakyRelu", "Elu", "Gelu", "HardSigmoid", "HardSwish", "Clip")
def activation(ctx: Context, a: dict) -> None:
    op = ctx.node.op_type
    x = float_data(ctx)
    alpha = 0.01
    if op == "LeakyRelu":
        kind, alpha = "leaky_relu", float(a.get("alpha", 0.01))
    elif op == "Elu":
        kind, alpha = "elu", float(a.get("alpha", 1.0))
    elif op == "Gelu":
        approx = text(a.get("approximate", "none"))
        if approx not in ("none", "tanh"):
            raise ctx.fail(f"approximate={approx!r} is not 'none' or 'tanh'")
        kind = "gelu_tanh" if approx == "tanh" else "gelu"
    elif op == "HardSigmoid":
        al, be = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
        if abs(al - 1 / 6) > 1e-7 or be != 0.5:
            raise ctx.fail(f"HardSigmoid(alpha={al}, beta={be}) is supported only as PyTorch's "
                           "(alpha 1/6, beta 1/2)")
        kind = "hardsigmoid"
    elif op == "Clip":
        kind = _clip_kind(ctx, a)
    else:
        kind = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "HardSwish": "hardswish"}[op]
    ctx.emit("act", [x], [ctx.node.output[0]], [ctx.shape(x)], attrs={"kind": kind, "alpha": alpha})


def _fold_bias(ctx: Context, x: str, c: np.ndarray, out: str) -> bool:
    """x + c as the bias of the linear step writing x, where nothing else reads x and c adds
    the same vector to every row."""
    step = ctx.producer.get(x)
    if step is None or step.kind != "linear" or "bias" in step.arrays or ctx.consumers.get(x, 0) != 1:
        return False
    n = step.arrays["weight"].shape[0]
    if c.ndim > ctx.rank(x) or c.size not in (1, n) or (c.size == n and c.shape[-1] != n):
        return False
    step.arrays["bias"] = np.ascontiguousarray(np.broadcast_to(c.reshape(-1), (n,)), np.float32)
    step.outputs = [out]
    ctx.set_data(out, ctx.shapes.pop(x))
    ctx.producer[out] = ctx.producer.pop(x)
    return True


@converter("Add", "Sub", "Mul", "Div")
def binary(ctx: Context, a: dict) -> None:
    op, out = ctx.node.op_type.lower(), ctx.node.output[0]
    if ctx.is_data(ctx.node.input[0]) and ctx.is_data(ctx.node.input[1]):
        x, y = float_data(ctx, 0, "first operand"), float_data(ctx, 1, "second operand")
        ctx.emit(op, [x, y], [out], [ctx.both(broadcast, ctx.shape(x), ctx.shape(y))])
        return
    first = ctx.is_const(ctx.node.input[0])
    x = float_data(ctx, 1 if first else 0, "operand")
    c = ctx.const(0 if first else 1, "constant operand").astype(np.float32)
    shapes = ctx.both(lambda sh: broadcast(sh, c.shape), ctx.shape(x))
    if first and op == "div":
        raise ctx.fail("a constant divided by data (c / x) is not supported")
    if first and op == "sub":  # c - x = (-x) + c, both steps exact
        neg = ctx.fresh(f"{out}:neg")
        ctx.emit("mul", [x], [neg], [ctx.shape(x)], {"b": np.float32(-1.0)}, suffix=":neg")
        x, op = neg, "add"
    if op == "add" and _fold_bias(ctx, x, c, out):
        return
    ctx.emit(op, [x], [out], [shapes], {"b": c})


@converter("Where")
def where(ctx: Context, a: dict) -> None:
    """Where(cond, x, -inf) with a constant cond (a causal mask) is x + (0 where cond, -inf
    elsewhere): the same values for every finite x. Other selections are refused."""
    cond = ctx.const(0, "condition").astype(bool)
    first = ctx.is_data(ctx.node.input[1])
    x = float_data(ctx, 1 if first else 2, "selected data")
    fill = ctx.const(2 if first else 1, "fill value").astype(np.float32)
    keep = cond if first else ~cond
    mask = np.where(keep, np.float32(0), fill).astype(np.float32)
    if not np.isneginf(mask[~np.broadcast_to(keep, mask.shape)]).all():
        raise ctx.fail("only a Where that keeps data where a constant condition holds and is -inf "
                       "elsewhere (a mask) is supported")
    shapes = ctx.both(lambda sh: broadcast(sh, mask.shape), ctx.shape(x))
    ctx.emit("add", [x], [ctx.node.output[0]], [shapes], {"b": mask})


@converter("MatMul")
def matmul(ctx: Context, a: dict) -> None:
    out = ctx.node.output[0]
    if ctx.is_data(ctx.node.input[0]) and ctx.is_data(ctx.node.input[1]):
        x, y = float_data(ctx, 0, "first operand"), float_data(ctx, 1, "second operand")
        if ctx.rank(x) < 2 or ctx.rank(y) < 2:
            raise ctx.fail("a MatMul of two data values needs both of rank >= 2")

        def shape(p: tuple, q: tuple) -> tuple:
            if p[-1] != q[-2]:
                raise ValueError(f"inner dims of {p} and {q} differ")
            return (*broadcast(p[:-2], q[:-2]), p[-2], q[-1])
        ctx.emit("matmul", [x, y], [out], [ctx.both(shape, ctx.shape(x), ctx.shape(y))])
        return
    x = float_data(ctx, 0, "data (first) operand")
    w = ctx.const(1, "weight")
    if w.ndim != 2 or ctx.rank(x) < 2 or ctx.shape(x)[0][-1] != w.shape[0]:
        raise ctx.fail(f"only data of rank >= 2 times a 2-D weight is supported, got "
                       f"{show_shape(ctx.shape(x))} @ {w.shape}")
    shapes = ctx.both(lambda sh: (*sh[:-1], w.shape[1]), ctx.shape(x))
    ctx.emit("linear", [x], [out], [shapes], {"weight": w.T})


@converter("Gemm")
def gemm(ctx: Context, a: dict) -> None:
    x = float_data(ctx, 0, "data (A) operand")
    if a.get("transA", 0) or ctx.rank(x) != 2:
        raise ctx.fail(f"only A of 2-D data without transA is supported, got {show_shape(ctx.shape(x))}, "
                       f"transA={a.get('transA', 0)}")
    b = ctx.const(1, "B (weight)")
    w = (b if a.get("transB", 0) else b.T).astype(np.float32)
    if w.ndim != 2 or w.shape[1] != ctx.shape(x)[0][1]:
        raise ctx.fail(f"B {b.shape} (transB={a.get('transB', 0)}) does not fit A {show_shape(ctx.shape(x))}")
    alpha, beta = np.float32(a.get("alpha", 1.0)), np.float32(a.get("beta", 1.0))
    if alpha != 1:
        w = w * alpha
    c = ctx.const(2, "C (bias)", optional=True)
    out, n = ctx.node.output[0], w.shape[0]
    shapes = ctx.both(lambda sh: (sh[0], n), ctx.shape(x))
    if c is None or beta == 0:
        ctx.emit("linear", [x], [out], [shapes], {"weight": w})
        return
    c = c.astype(np.float32) * beta
    if c.size == 1 or c.shape in ((n,), (1, n)):
        ctx.emit("linear", [x], [out], [shapes], {"weight": w, "bias": np.broadcast_to(c.reshape(-1), (n,))})
        return
    mid = ctx.fresh(f"{out}:product")  # a per-row C: broadcast as ONNX does, after the product
    ctx.emit("linear", [x], [mid], [shapes], {"weight": w})
    ctx.emit("add", [mid], [out], [ctx.both(lambda sh: broadcast(sh, c.shape), shapes)], {"b": c}, suffix=":C")


@converter("Softmax")
def softmax(ctx: Context, a: dict) -> None:
    x, out = float_data(ctx), ctx.node.output[0]
    r = ctx.rank(x)
    axis = int(a.get("axis", -1 if ctx.opset >= 13 else 1))
    if not -r <= axis < r:
        raise ctx.fail(f"axis={axis} is out of range for rank {r}")
    axis = axis + r if axis < 0 else axis
    if axis == r - 1:
        ctx.emit("softmax", [x], [out], [ctx.shape(x)], attrs={"axis": axis})
        return
    if ctx.opset >= 13:  # over a middle axis: moved last and back (the plan's softmax is the last axis's)
        perm = list(range(r))
        perm[axis], perm[-1] = perm[-1], perm[axis]
        moved, soft = ctx.fresh(f"{out}:moved"), ctx.fresh(f"{out}:softmax")
        swapped = ctx.both(lambda sh: tuple(sh[p] for p in perm), ctx.shape(x))
        ctx.emit("transpose", [x], [moved], [swapped], attrs={"perm": tuple(perm)}, suffix=":moved")
        ctx.emit("softmax", [moved], [soft], [swapped], attrs={"axis": r - 1})
        ctx.emit("transpose", [soft], [out], [ctx.shape(x)], attrs={"perm": tuple(perm)}, suffix=":back")
        return
    # before opset 13: one softmax over all the dims from `axis` on, flattened
    flat, soft = ctx.fresh(f"{out}:2d"), ctx.fresh(f"{out}:softmax")
    two = ctx.both(lambda sh: (int(np.prod(sh[:axis])), int(np.prod(sh[axis:]))), ctx.shape(x))
    ctx.reshape(x, flat, two, suffix=":2d")
    ctx.emit("softmax", [flat], [soft], [two], attrs={"axis": 1})
    ctx.reshape(soft, out, ctx.shape(x), suffix=":back")


@converter("LayerNormalization")
def layer_norm(ctx: Context, a: dict) -> None:
    x = float_data(ctx)
    only_first_output(ctx)
    r = ctx.rank(x)
    axis = int(a.get("axis", -1))
    d = ctx.static_dims(x, [r - 1], "last dim")[0]
    weight = ctx.const(1, "scale")
    bias = ctx.const(2, "bias", optional=True)
    bias = np.zeros(d, np.float32) if bias is None else bias
    if axis not in (-1, r - 1) or weight.shape != (d,) or bias.shape != (d,):
        raise ctx.fail(f"only a normalization over the last axis with ({d},) scale and bias is supported, "
                       f"got axis={axis}, scale {weight.shape}, bias {bias.shape}")
    ctx.emit("layer_norm", [x], [ctx.node.output[0]], [ctx.shape(x)], {"weight": weight, "bias": bias},
             {"eps": float(a.get("epsilon", 1e-5))})
