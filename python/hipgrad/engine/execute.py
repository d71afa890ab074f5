"""Running steps: each step bound to the op call that computes it.

With `mem` (an Arena of memplan.py) every op writes into `mem.out(shape, *live)`: a view of a
planned buffer that holds none of the `live` tensors (still to be read); without it, ops
allocate. With `tape`, each step's bound call is also recorded there, so a later run of the
same arena replays the calls without deciding anything again in Python.
"""

from __future__ import annotations

from collections.abc import Callable

from .. import ops
from .._native import _C
from ..ops._conv import _hyper as _conv_hyper
from ..tensor import Tensor
from .memplan import Arena, step_output_shape
from .quantize import observe_input
from .steps import Step


def run(steps: list[Step], x: Tensor, int8: bool, observe: dict | None = None,
        mem: Arena | None = None, tape: list | None = None) -> Tensor:
    """`steps` applied to x in order. `observe` (calibration) collects each quantized step's
    largest |input|."""
    for s in steps:
        x = run_step(s, x, int8, observe, mem, tape)  # the input's last reference goes here
    return x


def run_step(s: Step, x: Tensor, int8: bool, observe: dict | None, mem: Arena | None,
             tape: list | None = None) -> Tensor:
    """One step (a residual block runs its branches; it is never recorded on a tape)."""
    if observe is not None:
        observe_input(observe, s, x)
    if s.kind == "residual":
        return run_residual(s, x, int8, observe, mem)
    call = bind(s, x, int8, mem)
    if tape is not None:
        tape.append(call)
    return call(x)


def bind(s: Step, x: Tensor, int8: bool, mem: Arena | None) -> Callable[[Tensor], Tensor]:
    """The step as a function of its input alone, for an input like `x`: weights,
    attributes and (with `mem`) the output view chosen now for x's shape are bound."""
    t, a = s.tensors, s.attrs
    act, alpha = a.get("act"), float(a.get("alpha", 0.01))
    if s.kind == "flatten":  # a view: no copy, no buffer
        merged = step_output_shape(s, x.shape)
        return lambda v: v.reshape(*merged)
    if s.kind == "linear" and x.ndim != 2:  # on the last axis (nn.Linear, ONNX MatMul): views
        rows, lead = (-1, x.shape[-1]), step_output_shape(s, x.shape)
        inner = bind(s, x.reshape(*rows), int8, mem)
        return lambda v: inner(v.reshape(*rows)).reshape(*lead)
    shape = None if mem is None else step_output_shape(s, x.shape)

    def out(*live: Tensor) -> Tensor | None:
        return None if mem is None else mem.out(shape, *live)

    if int8 and s.kind in ("conv", "linear"):
        q = None if mem is None else mem.quantized(x.shape)
        o = out()  # x is read only by the quantize before the op writes here
        scale, wq, w_scale, bias = s.x_scale, t["wq"], t["w_scale"], t.get("bias")
        if s.kind == "conv":
            return lambda v: ops.qconv2d(ops.quantize(v, scale, out=q), wq, scale, w_scale, bias,
                                         stride=a["stride"], padding=a["padding"],
                                         dilation=a["dilation"], groups=a["groups"],
                                         activation=act, alpha=alpha, out=o)
        return lambda v: ops.qgemm(ops.quantize(v, scale, out=q), wq, scale, w_scale, bias,
                                   activation=act, alpha=alpha, out=o)
    o = out(x)
    if s.kind == "conv":  # the hot steps call the native op directly (all checked there)
        hyper = _conv_hyper("conv2d_bias_act", a["stride"], a["padding"], a["dilation"], a["groups"])
        w, bias, kind = t["weight"], t.get("bias"), act or "none"
        return lambda v: _C.ops.conv2d_bias_act(v, w, bias, None, *hyper, kind, alpha, "auto", o)
    if s.kind == "linear" and "weight_packed" in t:
        w, bias, kind, n = t["weight_packed"], t.get("bias"), act or "none", a["out_features"]
        return lambda v: _C.ops.linear_bias_act_packed(v, w, bias, n, kind, alpha, "auto", o)
    if s.kind == "linear":
        w, bias, kind = t["weight"], t.get("bias"), act or "none"
        return lambda v: _C.ops.linear_bias_act(v, w, bias, kind, alpha, "auto", o)
    if s.kind == "act":
        return lambda v: ops.activation(v, a["kind"], alpha=alpha, out=o)
    if s.kind == "maxpool":
        return lambda v: ops.max_pool2d(v, a["kernel"], stride=a["stride"], padding=a["padding"],
                                        out=o, with_argmax=False)[0]
    if s.kind == "avgpool":
        return lambda v: ops.avg_pool2d(v, a["kernel"], stride=a["stride"], padding=a["padding"], out=o)
    if s.kind == "batch_norm":  # eval batch norm reads the running statistics, never writes them
        return lambda v: ops.batch_norm(v, t["weight"], t["bias"], t["running_mean"], t["running_var"],
                                        training=False, eps=a["eps"], out=o)[0]
    if s.kind == "softmax":
        return lambda v: ops.softmax(v, out=o)
    if s.kind == "embedding":
        return lambda v: ops.embedding(t["weight"], v, out=o)
    raise ValueError(f"plan step {s.name!r} has an unknown kind {s.kind!r}")


def run_residual(s: Step, x: Tensor, int8: bool, observe: dict | None, mem: Arena | None) -> Tensor:
    """act(body(x) + shortcut(x)). With `mem`, x stays pinned in its buffer while the body
    runs, x and the body's output while the shortcut runs (three buffers in all), and the sum
    is formed in the body's buffer."""
    act, alpha = s.attrs.get("act"), s.attrs.get("alpha", 0.01)
    if mem is None:
        body = run(s.body, x, int8, observe)
        short = run(s.shortcut, x, int8, observe) if s.shortcut else x
        del x
        y = ops.add(body, short)
        return ops.activation(y, act, alpha=alpha) if act else y
    with mem.pinned(x):
        body = run(s.body, x, int8, observe, mem)
        with mem.pinned(body):
            short = run(s.shortcut, x, int8, observe, mem) if s.shortcut else x
        with mem.pinned(short):
            if mem.owns(body):
                y = ops.add_(body, short)
            else:  # the body was views of x only
                y = ops.add(body, short, out=mem.out(body.shape, body))
    return ops.activation(y, act, alpha=alpha, out=mem.out(y.shape, y)) if act else y
