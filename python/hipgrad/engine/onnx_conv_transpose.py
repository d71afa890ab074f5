"""ONNX ConvTranspose (2-D) -> a `conv_transpose` plan step, cropped or zero-padded where ONNX's
pads ask for a window of the transposed convolution that the step alone does not give.

A transposed convolution scatters each input pixel times the kernel into the output: along one
axis the full result F has length L0 = (H - 1) * stride + dilation * (k - 1) + 1, and ONNX's
output is the window F[pad_begin : pad_begin + H_out] (F is zero beyond its ends), with
H_out = L0 + output_padding - pad_begin - pad_end, or given by output_shape (then the pads come
from auto_pad's rule). The step (kernels.py) computes conv2d_backward_data with the weight
(C_in, C_out/group, kH, kW) read as a conv weight and a symmetric padding q: F[q : q + X] for
any X with L0 <= X + 2q < L0 + stride (the sizes whose convolution gives back H), X being
H_out's PyTorch formula (H - 1) * stride - 2q + dilation * (k - 1) + 1 + extra, 0 <= extra <
stride. Per axis the import picks:
- q = pad_begin, X = H_out where that size is such a size (symmetric pads, PyTorch's exports,
  and any output_padding that only lengthens the end);
- q = pad_begin, X = L0 - 2 * pad_begin, the end cropped, where pad_end is the larger;
- otherwise q = 0, X = L0 (all of F), then cropped and zero-padded to ONNX's window; the bias
  is then a separate add after the padding (the padded border holds the bias alone).
Refused, naming the node: other ranks, a non-constant weight or bias, channel counts that do
not fit group, non-positive strides or dilations, negative pads, output_padding not below the
stride or the dilation (ONNX's rule), output_shape with explicit pads (ONNX's text and its
reference implementation disagree there), an output_shape larger than the full result, and
windows that leave no computed output.
"""

from __future__ import annotations

import numpy as np

from .onnx_context import Context, float_data, int_pair, registrar, show_shape, text

CONVERTERS: dict = {}
converter = registrar(CONVERTERS)


def _out_shape(ctx: Context, a: dict) -> tuple[int, int] | None:
    v = a.get("output_shape")
    if v is None:
        return None
    v = [int(d) for d in v]
    if len(v) != 2 or min(v) < 1:
        raise ctx.fail(f"output_shape {list(a['output_shape'])}: two positive spatial sizes are supported")
    return v[0], v[1]


def _onnx_pads(ctx: Context, a: dict, hw: tuple, k: tuple, s: tuple, d: tuple,
               op: tuple) -> tuple[list[int], list[int], list[int]]:
    """(pad_begin, pad_end, output size) per spatial axis, as ONNX defines them."""
    auto = text(a.get("auto_pad", "NOTSET"))
    if auto not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
        raise ctx.fail(f"auto_pad={auto!r} is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER")
    full = [(hw[i] - 1) * s[i] + op[i] + (k[i] - 1) * d[i] + 1 for i in range(2)]
    out = _out_shape(ctx, a)
    if auto in ("SAME_UPPER", "SAME_LOWER") or out is not None:
        if "pads" in a and any(int(p) for p in a["pads"]):
            raise ctx.fail(f"output_shape or auto_pad={auto} together with pads {list(a['pads'])} is "
                           "ambiguous (ONNX says the pads are then ignored); give one of them")
        if auto == "VALID" or (auto == "NOTSET" and out is not None):
            # ONNX's text derives the pads from output_shape, its reference implementation keeps them
            # zero: accepted only where both agree (output_shape is the size the pads give)
            if out is not None and list(out) != full:
                raise ctx.fail(f"output_shape {list(out)} with auto_pad={auto} (pads 0 give {full}) is "
                               "not supported; use auto_pad=SAME_UPPER/SAME_LOWER or pads")
            return [0, 0], [0, 0], full
        out = out or (hw[0] * s[0], hw[1] * s[1])
        total = [full[i] - out[i] for i in range(2)]
        if min(total) < 0:
            raise ctx.fail(f"output_shape {list(out)} is larger than the full transposed convolution {full}")
        small = [t // 2 for t in total]
        big = [t - t // 2 for t in total]
        begin, end = (small, big) if auto == "SAME_UPPER" else (big, small)
        return begin, end, list(out)
    if auto == "VALID":
        return [0, 0], [0, 0], full
    p = [int(v) for v in a.get("pads", [0, 0, 0, 0])]
    if len(p) != 4 or min(p) < 0:
        raise ctx.fail(f"pads {p}: only 2-D (4 non-negative pads) are supported")
    return p[:2], p[2:], [full[i] - p[i] - p[i + 2] for i in range(2)]


def _plan_axis(h: int, k: int, s: int, d: int, begin: int, out: int) -> tuple[int, int, int]:
    """(q, extra, crop start) for one axis: the step computes F[q : q + X], X = (h - 1) * s - 2q
    + d * (k - 1) + 1 + extra; ONNX's output starts `crop start` into that (see the docstring)."""
    base = (h - 1) * s + d * (k - 1) + 1  # L0
    extra = begin + out - (base - begin)   # X = out at q = begin
    if 0 <= extra < s:
        return begin, extra, 0
    if extra < 0 and base - 2 * begin >= 1:  # crop the end only
        return begin, 0, 0
    return 0, 0, begin


@converter("ConvTranspose")
def conv_transpose(ctx: Context, a: dict) -> None:
    x = float_data(ctx)
    w = ctx.const(1, "weight")
    if w.ndim != 4 or ctx.rank(x) != 4:
        raise ctx.fail(f"only 2-D transposed convolution is supported (a 4-D input and weight); got input "
                       f"{show_shape(ctx.shape(x))} and weight {w.shape}")
    bias = ctx.const(2, "bias", optional=True)
    groups = int(a.get("group", 1))
    cin, h, wd = ctx.static_dims(x, [1, 2, 3], "channels, height and width")
    if groups < 1 or cin != w.shape[0] or w.shape[0] % groups:
        raise ctx.fail(f"weight {w.shape} (C_in, C_out/group, kH, kW) with group={groups} does not fit "
                       f"{cin} input channels")
    cout = w.shape[1] * groups
    if bias is not None and bias.shape != (cout,):
        raise ctx.fail(f"bias {bias.shape} does not fit {cout} output channels")
    k = tuple(int(v) for v in w.shape[2:])
    if "kernel_shape" in a and tuple(a["kernel_shape"]) != k:
        raise ctx.fail(f"kernel_shape {list(a['kernel_shape'])} differs from the weight's {k}")
    s, d = int_pair(ctx, a, "strides", 1), int_pair(ctx, a, "dilations", 1)
    op = int_pair(ctx, a, "output_padding", 0)
    if min(s + d) < 1:
        raise ctx.fail(f"strides {list(s)} and dilations {list(d)} must be positive")
    if min(op) < 0 or any(o >= max(st, dl) for o, st, dl in zip(op, s, d)):
        raise ctx.fail(f"output_padding {list(op)} must be non-negative and below the stride {list(s)} or "
                       f"the dilation {list(d)}")
    begin, end, out = _onnx_pads(ctx, a, (h, wd), k, s, d, op)
    if min(out) < 1:
        raise ctx.fail(f"pads {begin + end} leave an empty output {out}")
    plan = [_plan_axis(n, k[i], s[i], d[i], begin[i], out[i]) for i, n in enumerate((h, wd))]
    q, extra, start = [p[0] for p in plan], [p[1] for p in plan], [p[2] for p in plan]
    comp = [(n - 1) * s[i] - 2 * q[i] + d[i] * (k[i] - 1) + 1 + extra[i] for i, n in enumerate((h, wd))]
    lo = [max(start[i], 0) for i in range(2)]  # the computed part of ONNX's window, per axis
    hi = [min(start[i] + out[i], comp[i]) for i in range(2)]
    if any(hi[i] <= lo[i] for i in range(2)):
        raise ctx.fail(f"pads {begin + end} leave no computed value in the output")
    windowed = [(lo[i], hi[i]) != (0, comp[i]) for i in range(2)]
    padded = [(max(-start[i], 0), max(start[i] + out[i] - comp[i], 0)) for i in range(2)]
    bias_in_step = bias is not None and not any(sum(p) for p in padded)
    arrays = {"weight": w} if not bias_in_step else {"weight": w, "bias": bias}
    final = ctx.node.output[0]
    cur = final if not any(windowed) and not any(sum(p) for p in padded) and (bias is None or bias_in_step) \
        else ctx.fresh(f"{final}:full")
    shapes = ctx.both(lambda sh: (sh[0], cout, comp[0], comp[1]), ctx.shape(x))
    ctx.emit("conv_transpose", [x], [cur], [shapes], arrays,
             {"stride": s, "padding": tuple(q), "dilation": d, "groups": groups, "output_padding": tuple(extra)})
    for axis in (2, 3):
        i = axis - 2
        if not windowed[i]:
            continue
        dim = ctx.shape(cur)[0][axis]
        sizes = [n for n in (lo[i], hi[i] - lo[i], dim - hi[i]) if n]
        outs = [ctx.fresh(f"{final}:crop{axis}.{j}") for j in range(len(sizes))]
        parts = [ctx.both(lambda sh, n=n: (*sh[:axis], n, *sh[axis + 1:]), ctx.shape(cur)) for n in sizes]
        ctx.emit("split", [cur], outs, parts, attrs={"axis": axis, "sizes": tuple(sizes)}, suffix=f":crop{axis}")
        cur = outs[1 if lo[i] else 0]
    if any(sum(p) for p in padded):
        pads = (padded[0][0], padded[1][0], padded[0][1], padded[1][1])
        shapes = ctx.both(lambda sh: (sh[0], cout, out[0], out[1]), ctx.shape(cur))
        nxt = final if bias is None else ctx.fresh(f"{final}:padded")
        ctx.emit("pad", [cur], [nxt], [shapes], attrs={"pads": pads, "value": 0.0}, suffix=":pad")
        cur = nxt
    if bias is not None and not bias_in_step:
        ctx.emit("add", [cur], [final], [ctx.shape(cur)], {"b": np.asarray(bias, np.float32).reshape(-1, 1, 1)},
                 suffix=":bias")
    elif cur != final:
        ctx.alias[final] = cur
