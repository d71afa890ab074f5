"""Each step kind bound to the op calls that compute it (execute.py runs them).

`bind(step, inputs, views, int8, scratch)` returns call(*inputs) -> the output (a tuple of
them for a step writing several: split), with the weights, attributes and (planned) output
views fixed for inputs of these shapes. `views` are the tensors memplan.step_writes lists for
the step (scratch first, outputs last), or None: each op
then allocates. A planned write that shares the buffer of an input (the plan let it take a
dying input's buffer) runs the in-place form (add_, a conv writing over its residual, an INT8
op whose input went to the int8 scratch first).

INT8: conv and linear steps quantize their input into the arena's int8 scratch (per-tensor
scale from calibration, per-output-channel weights) and run qconv2d / qgemm, whose float32
output is dequantized. Every other step, add / concat of such outputs included, runs in
float32 on dequantized values. A residual fused into an INT8 conv is added after qconv2d
(+ the activation then), in float32.

A softmax over another axis than the last runs as transpose, softmax, transpose back (two
planned scratch tensors). What no op here computes exactly as the step defines it (a matmul
whose batch axes broadcast) raises a ValueError naming the step and its kind.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .. import ops
from .._native import _C
from ..ops._conv import _hyper as _conv_hyper
from ..tensor import Tensor, tensor
from . import copies
from .memplan import conv_residual_native, quantized, step_writes
from .shapes import norm_axes, output_shapes, unpack_weight

Call = Callable[..., Any]
# Output pixels (batch x plane) up to which a conv with a packed weight runs
# conv2d_bias_act_packed (measured: ahead of the per-image lowering up to about this many on
# ResNet's 3x3 layers, behind it on wide planes, where the weights no longer dominate).
PACKED_CONV_ROWS = 256


def _needs(s: Any, what: str) -> ValueError:
    return ValueError(f"plan step {s.name!r} ({s.kind}): {what} is not supported")


def _same(a: Tensor | None, b: Tensor) -> bool:
    """`a` is a planned view over the memory of `b` (an in-place write)."""
    return a is not None and a.data_ptr() == b.data_ptr()


def bind(s: Any, ins: Sequence[Tensor], views: Sequence[Tensor] | None, int8: bool,
         scratch: Callable[[Sequence[int]], Tensor] | None = None) -> Call:
    shapes = [tuple(x.shape) for x in ins]
    outs = output_shapes(s, shapes)
    n = len(step_writes(s, shapes, outs, int8))
    w: list[Tensor | None] = list(views) if views is not None else [None] * n
    if s.kind in ("flatten", "reshape"):  # a view: no copy, no buffer
        shape = outs[0]
        return lambda v: v.reshape(*shape)
    if s.kind == "linear" and len(shapes[0]) != 2:  # on the last axis: through 2-D views
        rows, k, lead = -1, shapes[0][-1], outs[0]
        flat = [None if t is None else t.reshape(-1, lead[-1]) for t in w]
        inner = bind(s, [ins[0].reshape(rows, k)], flat if views is not None else None, int8, scratch)
        return lambda v: inner(v.reshape(rows, k)).reshape(*lead)
    if int8 and quantized(s):
        return _quantized(s, ins, w, scratch)
    if s.kind == "conv":
        return _conv(s, ins, w, outs[0])
    if s.kind in ("add", "sub", "mul", "div"):
        return _binary(s, ins, w, outs[0])
    f = _SIMPLE.get(s.kind)
    if f is None:
        raise ValueError(f"plan step {s.name!r} has an unknown kind {s.kind!r}")
    return f(s, ins, w, outs)


def _epilogue(s: Any, w: list[Tensor | None]) -> Callable[[Tensor, Tensor | None], Tensor]:
    """y + residual (in place) then the step's activation: the tail of a conv whose residual
    the native epilogue does not add (INT8, a residual that broadcasts, a build without conv
    residuals). `w` ends in the output view; with an activation the sum is in the scratch."""
    act, alpha = s.attrs.get("act"), float(s.attrs.get("alpha", 0.01))
    o = w[-1]

    def tail(y: Tensor, r: Tensor | None) -> Tensor:
        if r is not None:  # in place (a residual that broadcasts to y's shape included)
            y = ops.add_(y, r) if tuple(r.shape) == tuple(y.shape) else ops.binary(y, r, "add", out=y)
        return ops.activation(y, act, alpha=alpha, out=o) if act else y
    return tail


def _quantized(s: Any, ins: Sequence[Tensor], w: list, scratch: Any) -> Call:
    t, a = s.tensors, s.attrs
    x = ins[0]
    q = None if scratch is None else scratch(x.shape)
    scale, wq, w_scale, bias = s.x_scale, t["wq"], t["w_scale"], t.get("bias")
    residual = len(ins) > 1
    act = None if residual else a.get("act")  # after the residual add when there is one
    alpha = float(a.get("alpha", 0.01))
    o = w[0]  # (the scratch before the activation, with a residual and an activation)
    tail = _epilogue(s, w) if residual else None
    if s.kind == "conv":
        # wq packed at upload (engine._upload), while the CPU ISA it was packed for is in use
        wp = t.get("wq_packed") if a.get("qpack_tag") == _C.ops.cpu_qpack_tag() else None

        def run(v: Tensor, *r: Tensor) -> Tensor:
            y = ops.qconv2d(ops.quantize(v, scale, out=q), wq, scale, w_scale, bias, stride=a["stride"],
                            padding=a["padding"], dilation=a["dilation"], groups=a["groups"],
                            activation=act, alpha=alpha, out=o, packed=wp)
            return tail(y, r[0]) if tail else y
        return run
    return lambda v: ops.qgemm(ops.quantize(v, scale, out=q), wq, scale, w_scale, bias,
                               activation=act, alpha=alpha, out=o)


def _conv_op(s: Any, out_shape: tuple) -> Callable[..., Tensor]:
    """f(v, residual, activation, out) -> the conv step's output: conv2d_bias_act, or with a
    packed weight (engine._packs_conv) conv2d_bias_act_packed where the batch has at most
    PACKED_CONV_ROWS output pixels (the weights are then the GEMM's streamed panels); a larger
    batch gets the weight unpacked once for this binding."""
    t, a = s.tensors, s.attrs
    alpha, bias = float(a.get("alpha", 0.01)), t.get("bias")
    hyper = _conv_hyper("conv2d_bias_act", a["stride"], a["padding"], a["dilation"], a["groups"])
    if "weight_packed" not in t:
        wt = t["weight"]
        return lambda v, r, act, o: _C.ops.conv2d_bias_act(v, wt, bias, r, *hyper, act, alpha, "auto", o)
    wp, w_shape = t["weight_packed"], list(a["w_shape"])
    if out_shape[0] * out_shape[2] * out_shape[3] <= PACKED_CONV_ROWS:
        st, pd, dl = hyper[:3]
        return lambda v, r, act, o: _C.ops.conv2d_bias_act_packed(v, wp, w_shape, bias, r, st, pd, dl, act,
                                                                  alpha, "auto", o)
    wt = tensor(unpack_weight(wp, w_shape))
    return lambda v, r, act, o: _C.ops.conv2d_bias_act(v, wt, bias, r, *hyper, act, alpha, "auto", o)


def _conv(s: Any, ins: Sequence[Tensor], w: list, out_shape: tuple) -> Call:
    act = s.attrs.get("act") or "none"
    conv = _conv_op(s, out_shape)
    if len(ins) == 1:  # the hot step calls the native op directly (all checked there)
        o = w[0]
        return lambda v: conv(v, None, act, o)
    if len(w) == 1 and tuple(ins[1].shape) == tuple(out_shape) and conv_residual_native():
        o = w[0]  # y = act(conv + bias + residual) in the epilogue; o may be the residual's buffer
        return lambda v, r: conv(v, r, act, o)
    first, tail = w[0], _epilogue(s, w)
    return lambda v, r: tail(conv(v, None, "none", first), r)


def _conv_transpose(s: Any, ins: Sequence[Tensor], w: list, outs: list) -> Call:
    """conv2d_backward_data with the (C_in, C_out/groups, R, S) weight read as a conv weight
    (K = C_in): the output of the size the step's output_padding picks, then the bias in place.
    The op allocates its output (an ALLOCATING kind of memplan.py)."""
    t, a = s.tensors, s.attrs
    hyper = _conv_hyper("conv_transpose", a["stride"], a["padding"], a["dilation"], a["groups"])
    wt, shape = t["weight"], list(outs[0])
    bias = t["bias"].reshape(1, -1, 1, 1) if "bias" in t else None

    def run(v: Tensor) -> Tensor:
        y = _C.ops.conv2d_backward_data(v, wt, shape, *hyper, "auto")
        return y if bias is None else ops.binary(y, bias, "add", out=y)
    return run


def _linear(s: Any, ins: Sequence[Tensor], w: list, outs: list) -> Call:
    t, a, o = s.tensors, s.attrs, w[0]
    act, alpha, bias = a.get("act") or "none", float(a.get("alpha", 0.01)), t.get("bias")
    if "weight_packed" in t:  # the CPU GEMM's panels, packed once (engine._packs)
        wp, n = t["weight_packed"], a["out_features"]
        return lambda v: _C.ops.linear_bias_act_packed(v, wp, bias, n, act, alpha, "auto", o)
    wt = t["weight"]
    return lambda v: _C.ops.linear_bias_act(v, wt, bias, act, alpha, "auto", o)


def _binary(s: Any, ins: Sequence[Tensor], w: list, out_shape: tuple) -> Call:
    """add / sub / mul / div of two values or a value and the constant arrays["b"]."""
    act, alpha = s.attrs.get("act"), float(s.attrs.get("alpha", 0.01))
    kind, o, after = s.kind, w[0], (w[1] if act else None)
    const = s.tensors.get("b") if len(ins) == 1 else None
    a = ins[0]
    b = const if const is not None else ins[1]
    same = tuple(a.shape) == tuple(b.shape) == tuple(out_shape)

    def finish(y: Tensor) -> Tensor:
        return ops.activation(y, act, alpha=alpha, out=after) if act else y
    if kind == "add" and same and _same(o, a):
        op = lambda x, y: ops.add_(x, y)  # noqa: E731
    elif kind == "add" and same and const is None and _same(o, ins[1]):
        op = lambda x, y: ops.add_(y, x)  # noqa: E731  (a + b == b + a exactly)
    elif kind == "add" and same:
        op = lambda x, y: ops.add(x, y, out=o)  # noqa: E731
    else:  # broadcasting, sub, mul, div; o may be a or b itself (in place)
        op = lambda x, y: ops.binary(x, y, kind, out=o)  # noqa: E731
    if const is not None:
        return lambda x: finish(op(x, const))
    return lambda x, y: finish(op(x, y))


def _pool(s: Any, ins: Sequence[Tensor], w: list, outs: list) -> Call:
    a, o = s.attrs, w[0]
    k, st, p, ceil = a["kernel"], a["stride"], a["padding"], bool(a.get("ceil_mode", False))
    if s.kind == "maxpool":
        return lambda v: ops.max_pool2d(v, k, stride=st, padding=p, out=o, with_argmax=False, ceil_mode=ceil)[0]
    count = bool(a.get("count_include_pad", True))
    return lambda v: ops.avg_pool2d(v, k, stride=st, padding=p, out=o, ceil_mode=ceil, count_include_pad=count)


def _reduce_mean(s: Any, ins: Sequence[Tensor], w: list, outs: list) -> Call:
    x, o = ins[0], w[0]
    axes, keep = list(norm_axes(s.attrs["axes"], len(x.shape))), bool(s.attrs.get("keepdims", True))
    return lambda v: ops.reduce_mean(v, axes, keepdims=keep, out=o)


def _global_avgpool(s: Any, ins: Sequence[Tensor], w: list, outs: list) -> Call:
    axes, o = list(range(2, len(ins[0].shape))), w[0]
    return lambda v: ops.reduce_mean(v, axes, keepdims=True, out=o)


def _softmax(s: Any, ins: Sequence[Tensor], w: list, outs: list) -> Call:
    rank = len(ins[0].shape)
    axis = int(s.attrs.get("axis", -1)) % rank
    if axis == rank - 1:
        o = w[0]
        return lambda v: ops.softmax(v, out=o)
    there = [i for i in range(rank) if i != axis] + [axis]  # the axis moved last, and back
    back = [there.index(i) for i in range(rank)]
    t1, t2, o = w  # (memplan.step_writes: two scratch tensors, then the output)
    return lambda v: ops.transpose(ops.softmax(ops.transpose(v, there, out=t1), out=t2), back, out=o)


def _transpose(s: Any, ins: Sequence[Tensor], w: list, outs: list) -> Call:
    perm, o = [int(p) for p in s.attrs["perm"]], w[0]
    return lambda v: ops.transpose(v, perm, out=o)


def _pad(s: Any, ins: Sequence[Tensor], w: list, outs: list) -> Call:
    pads, value, o = tuple(int(p) for p in s.attrs["pads"]), float(s.attrs.get("value", 0.0)), w[0]
    return lambda v: ops.pad2d(v, pads, value=value, out=o)


def _matmul(s: Any, ins: Sequence[Tensor], w: list, outs: list) -> Call:
    a, b = (tuple(x.shape) for x in ins)
    if a[:-2] != b[:-2]:
        raise _needs(s, f"a matmul of shapes {a} and {b} (batch axes that broadcast)")
    m, k, nn = a[-2], a[-1], b[-1]
    o3 = None if w[0] is None else w[0].reshape(-1, m, nn)
    shape = outs[0]
    return lambda x, y: ops.bmm(x.reshape(-1, m, k), y.reshape(-1, k, nn), out=o3).reshape(*shape)


def _split(s: Any, ins: Sequence[Tensor], w: list, outs: list) -> Call:
    axis, sizes = int(s.attrs["axis"]), [int(n) for n in s.attrs["sizes"]]
    if w[0] is None:
        return lambda v: tuple(ops.split(v, axis, sizes))
    return lambda v: tuple(copies.split_into(v, axis, w))  # ops.split takes no out=


def _simple(f: Callable[[Any, Tensor, Tensor | None], Tensor]) -> Callable:
    def make(s: Any, ins: Sequence[Tensor], w: list, outs: list) -> Call:
        o = w[0] if w else None  # (an ALLOCATING kind plans no write)
        return lambda v: f(s, v, o)
    return make


_SIMPLE: dict[str, Callable] = {
    "act": _simple(lambda s, v, o: ops.activation(v, s.attrs["kind"], alpha=float(s.attrs.get("alpha", 0.01)),
                                                  out=o)),
    # eval batch norm reads the running statistics, never writes them
    "batch_norm": _simple(lambda s, v, o: ops.batch_norm(
        v, s.tensors["weight"], s.tensors["bias"], s.tensors["running_mean"], s.tensors["running_var"],
        training=False, eps=s.attrs["eps"], out=o)[0]),
    "embedding": _simple(lambda s, v, o: ops.embedding(s.tensors["weight"], v, out=o)),
    "layer_norm": _simple(lambda s, v, o: ops.layer_norm(v, s.tensors.get("weight"), s.tensors.get("bias"),
                                                         eps=float(s.attrs.get("eps", 1e-5)))[0]),
    "linear": _linear, "maxpool": _pool, "avgpool": _pool, "global_avgpool": _global_avgpool,
    "conv_transpose": _conv_transpose,
    "reduce_mean": _reduce_mean, "softmax": _softmax, "transpose": _transpose, "pad": _pad,
    "matmul": _matmul,
    "concat": lambda s, ins, w, outs: (lambda *vs: ops.concat(list(vs), int(s.attrs["axis"]), out=w[0])),
    "split": _split,
    "attention": lambda s, ins, w, outs: (lambda q, k, v: ops.attention(
        q, k, v, causal=bool(s.attrs.get("causal", False)), scale=s.attrs.get("scale"))[0]),
}
