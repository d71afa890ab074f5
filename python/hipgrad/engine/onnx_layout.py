"""ONNX shape and layout nodes on run-time data -> plan steps: Flatten, Reshape, Squeeze,
Unsqueeze, Transpose, Concat, Split, Slice, Pad, the pass-throughs (Identity, Dropout, a Cast
to the same type) and the embedding Gather. Reshape targets come folded from onnx_fold.py at
both batch sizes; Context.reshape turns them into batch-agnostic targets. A Slice with step 1
is a split whose middle part is read (the legacy exporter's torch.chunk).
"""

from __future__ import annotations

import numpy as np

from .onnx_context import Context, float_data, only_first_output, registrar, text
from .onnx_fold import BATCHES, _axes, _norm, _np_dtype, reshape_target, squeeze_shape, unsqueeze_shape

CONVERTERS: dict = {}
converter = registrar(CONVERTERS)


@converter("Flatten")
def flatten(ctx: Context, a: dict) -> None:
    x = ctx.data(0)
    r, axis = ctx.rank(x), int(a.get("axis", 1))
    if not -r <= axis <= r:
        raise ctx.fail(f"axis={axis} is out of range for rank {r}")
    axis = axis + r if axis < 0 else axis
    shapes = ctx.both(lambda sh: (int(np.prod(sh[:axis])), int(np.prod(sh[axis:]))), ctx.shape(x))
    ctx.emit("flatten", [x], [ctx.node.output[0]], [shapes], attrs={"axis": axis})


def _batch_entry(ctx: Context, x: str, target: tuple) -> tuple:
    """The target with its first entry made the batch, in the batch-symbolic import of a model
    exported with a fixed batch B >= 2 (ctx.fixed_batch), where that entry is the constant B and
    x's first axis is the batch: a row-major reshape that leaves the first axis as it is keeps
    each sample in its own row (PyTorch's x.view(x.size(0), -1), folded by the exporter). A
    fixed batch of 1 stays as it is: a constant 1 there may as well mean one row of the batch."""
    b, (t0, t1), (sa, sb) = ctx.fixed_batch, (np.asarray(v) for v in target), ctx.shape(x)
    if (b is None or b < 2 or t0.ndim != 1 or not len(t0) or not np.array_equal(t0, t1) or int(t0[0]) != b
            or (sa[0], sb[0]) != BATCHES):
        return target
    first, second = t0.copy(), t0.copy()
    first[0], second[0] = BATCHES
    return first, second


@converter("Reshape", "Squeeze", "Unsqueeze")
def reshape(ctx: Context, a: dict) -> None:
    op, x, out = ctx.node.op_type, ctx.data(0), ctx.node.output[0]
    if op == "Reshape":
        target = ctx.pair(ctx.node.input[1]) if len(ctx.node.input) > 1 else None
        if target is None:
            raise ctx.fail("the target shape must be a constant or computed from shapes at load time")
        target = _batch_entry(ctx, x, target)
        zero = bool(a.get("allowzero", 0))
        sa, sb = ctx.shape(x)
        try:
            shapes = (reshape_target(sa, target[0], zero), reshape_target(sb, target[1], zero))
        except ValueError as e:
            raise ctx.fail(str(e)) from None
    else:
        axes = _axes([None, ctx.const(1, "axes", optional=True)], a, ctx.opset, 13)
        if op == "Unsqueeze" and axes is None:
            raise ctx.fail("Unsqueeze needs axes")
        fn = squeeze_shape if op == "Squeeze" else unsqueeze_shape
        shapes = ctx.both(lambda sh: fn(sh, axes), ctx.shape(x))
    ctx.reshape(x, out, shapes)


@converter("Transpose")
def transpose(ctx: Context, a: dict) -> None:
    x = ctx.data(0)
    r = ctx.rank(x)
    perm = [int(p) for p in a.get("perm", range(r - 1, -1, -1))]
    if sorted(perm) != list(range(r)):
        raise ctx.fail(f"perm {perm} is not a permutation of the {r} axes")
    shapes = ctx.both(lambda sh: tuple(sh[p] for p in perm), ctx.shape(x))
    ctx.emit("transpose", [x], [ctx.node.output[0]], [shapes], attrs={"perm": tuple(perm)})


@converter("Concat")
def concat(ctx: Context, a: dict) -> None:
    names = [n for n in ctx.node.input if n and not (ctx.is_const(n) and ctx.pair(n)[0].size == 0)]
    xs = [float_data(ctx, list(ctx.node.input).index(n), "input") for n in names]
    r = ctx.rank(xs[0])
    axis = int(a["axis"]) + (r if int(a["axis"]) < 0 else 0)

    def shape(*shs: tuple) -> tuple:
        if any(len(s) != r or s[:axis] + s[axis + 1:] != shs[0][:axis] + shs[0][axis + 1:] for s in shs):
            raise ValueError(f"shapes {list(shs)} differ outside axis {axis}")
        return (*shs[0][:axis], sum(s[axis] for s in shs), *shs[0][axis + 1:])
    shapes = ctx.both(shape, *(ctx.shape(x) for x in xs))
    if len(xs) == 1:
        ctx.alias[ctx.node.output[0]] = xs[0]
        return
    ctx.emit("concat", xs, [ctx.node.output[0]], [shapes], attrs={"axis": axis})


@converter("Split")
def split(ctx: Context, a: dict) -> None:
    x, outs = ctx.data(0), list(ctx.node.output)
    r = ctx.rank(x)
    axis = int(a.get("axis", 0)) + (r if int(a.get("axis", 0)) < 0 else 0)
    dim = ctx.static_dims(x, [axis], f"split axis {axis}")[0]
    sizes = ctx.const(1, "split", optional=True) if ctx.opset >= 13 else a.get("split")
    if sizes is None or len(sizes) == 0:
        count = int(a.get("num_outputs", len(outs)))
        chunk = -(-dim // count) if "num_outputs" in a else dim // count
        sizes = [chunk] * (count - 1) + [dim - chunk * (count - 1)]
    sizes = [int(v) for v in np.asarray(sizes).reshape(-1)]
    if sum(sizes) != dim or len(sizes) != len(outs) or min(sizes) < 0:
        raise ctx.fail(f"split sizes {sizes} do not cut axis {axis} of {dim} into {len(outs)} parts")
    outs = [o or ctx.fresh(f"{ctx.node.name}:unused{i}") for i, o in enumerate(outs)]
    shapes = [ctx.both(lambda sh, n=n: (*sh[:axis], n, *sh[axis + 1:]), ctx.shape(x)) for n in sizes]
    ctx.emit("split", [x], outs, shapes, attrs={"axis": axis, "sizes": tuple(sizes)})


@converter("Slice")
def slice_data(ctx: Context, a: dict) -> None:
    """A slice with step 1 along each of its axes, as a split whose middle part is kept."""
    cur = ctx.data(0)
    if ctx.opset < 10:
        starts, ends, axes, steps = a.get("starts", []), a.get("ends", []), a.get("axes"), None
    else:
        starts, ends = ctx.const(1, "starts"), ctx.const(2, "ends")
        axes, steps = ctx.const(3, "axes", optional=True), ctx.const(4, "steps", optional=True)
    r = ctx.rank(cur)
    axes = list(range(len(starts))) if axes is None else [int(v) for v in axes]
    steps = [1] * len(starts) if steps is None else [int(v) for v in steps]
    for ax, start, end, step in zip(axes, starts, ends, steps):
        ax = ax + r if ax < 0 else ax
        if step != 1 or not 0 <= ax < r:
            raise ctx.fail(f"only slices with step 1 along an existing axis are supported, got axis "
                           f"{ax}, step {step}")
        dim = ctx.static_dims(cur, [ax], f"sliced axis {ax}")[0]
        lo, hi, _ = slice(int(start), int(end)).indices(dim)  # clamped as ONNX clamps
        if hi <= lo:
            raise ctx.fail(f"the slice [{int(start)}:{int(end)}] of axis {ax} ({dim}) is empty")
        if (lo, hi) == (0, dim):
            continue
        sizes = [n for n in (lo, hi - lo, dim - hi) if n]
        outs = [ctx.fresh(f"{ctx.node.output[0]}:part{i}") for i in range(len(sizes))]
        shapes = [ctx.both(lambda sh, n=n: (*sh[:ax], n, *sh[ax + 1:]), ctx.shape(cur)) for n in sizes]
        ctx.emit("split", [cur], outs, shapes, attrs={"axis": ax, "sizes": tuple(sizes)})
        cur = outs[1 if lo else 0]
    ctx.alias[ctx.node.output[0]] = cur


@converter("Pad")
def pad(ctx: Context, a: dict) -> None:
    x = float_data(ctx)
    mode = text(a.get("mode", "constant"))
    pads = ctx.const(1, "pads") if ctx.opset >= 11 else np.array(a.get("pads", []))
    value = ctx.const(2, "constant value", optional=True) if ctx.opset >= 11 else a.get("value", 0.0)
    axes = ctx.const(3, "axes", optional=True) if ctx.opset >= 18 else None
    r = ctx.rank(x)
    axes = list(range(r)) if axes is None else _norm([int(v) for v in axes], r)
    full = [0] * (2 * r)
    for i, ax in enumerate(axes):
        full[ax], full[ax + r] = int(pads[i]), int(pads[i + len(axes)])
    if mode != "constant" or r != 4 or any(full[i] for i in (0, 1, 4, 5)) or min(full) < 0:
        raise ctx.fail(f"only constant, non-negative padding of the height and width of NCHW data is "
                       f"supported, got mode={mode!r}, pads {full}")
    value = 0.0 if value is None or np.size(value) == 0 else float(np.asarray(value).reshape(-1)[0])
    t, l, b, rr = full[2], full[3], full[6], full[7]
    shapes = ctx.both(lambda s: (s[0], s[1], s[2] + t + b, s[3] + l + rr), ctx.shape(x))
    ctx.emit("pad", [x], [ctx.node.output[0]], [shapes], attrs={"pads": (t, l, b, rr), "value": value})


@converter("Identity", "Dropout", "Cast")
def passthrough(ctx: Context, a: dict) -> None:
    x = ctx.data(0)
    only_first_output(ctx)
    if ctx.node.op_type == "Dropout" and ctx.const_or_none(2) is not None and bool(ctx.const_or_none(2)):
        raise ctx.fail("training_mode=True (random dropout) is not supported")
    if ctx.node.op_type == "Cast":
        if _np_dtype(a["to"]) != ctx.dtypes[x]:
            raise ctx.fail(f"a cast of {ctx.dtypes[x]} data to {_np_dtype(a['to'])} is not supported")
    ctx.alias[ctx.node.output[0]] = x


@converter("Gather")
def gather(ctx: Context, a: dict) -> None:
    table = ctx.const_or_none(0)
    ids = ctx.data(1, "indices")
    if table is None or table.ndim != 2 or int(a.get("axis", 0)) != 0 or ctx.dtypes[ids].kind not in "iu":
        raise ctx.fail("only an embedding lookup (a constant 2-D table, axis 0, integer indices) is "
                       "supported on data")
    shapes = ctx.both(lambda sh: (*sh, table.shape[1]), ctx.shape(ids))
    ctx.emit("embedding", [ids], [ctx.node.output[0]], [shapes], {"weight": table})
