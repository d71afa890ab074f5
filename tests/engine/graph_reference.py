"""A NumPy float64 interpreter of the engine's plan Graph (steps.py), written from the step
kinds' definitions and independent of the engine's executor: the ONNX tests run the Graph an
import produced through it, which checks the import alone against onnxruntime."""

from __future__ import annotations

import math

import numpy as np

_erf = np.vectorize(math.erf, otypes=[np.float64])


def act(x: np.ndarray, kind: str | None, alpha: float = 0.01) -> np.ndarray:
    if kind in (None, "none"):
        return x
    if kind == "relu":
        return np.maximum(x, 0)
    if kind == "relu6":
        return np.clip(x, 0, 6)
    if kind == "leaky_relu":
        return np.where(x > 0, x, alpha * x)
    if kind == "elu":
        return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))
    if kind == "sigmoid":
        return 1 / (1 + np.exp(-x))
    if kind == "tanh":
        return np.tanh(x)
    if kind == "gelu":
        return 0.5 * x * (1 + _erf(x / math.sqrt(2)))
    if kind == "gelu_tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    if kind == "hardsigmoid":
        return np.clip(x / 6 + 0.5, 0, 1)
    if kind == "hardswish":
        return x * np.clip(x / 6 + 0.5, 0, 1)
    raise ValueError(f"unknown activation {kind!r}")


def conv(x, w, b, stride, padding, dilation, groups):
    n, c, h, wd = x.shape
    k, cg, r, s = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    ho = (h + 2 * padding[0] - dilation[0] * (r - 1) - 1) // stride[0] + 1
    wo = (wd + 2 * padding[1] - dilation[1] * (s - 1) - 1) // stride[1] + 1
    out = np.zeros((n, k, ho, wo))
    kg = k // groups
    for g in range(groups):
        xg, wg = xp[:, g * cg:(g + 1) * cg], w[g * kg:(g + 1) * kg]
        for i in range(r):
            for j in range(s):
                patch = xg[:, :, i * dilation[0]: i * dilation[0] + stride[0] * (ho - 1) + 1: stride[0],
                           j * dilation[1]: j * dilation[1] + stride[1] * (wo - 1) + 1: stride[1]]
                out[:, g * kg:(g + 1) * kg] += np.einsum("nchw,kc->nkhw", patch, wg[:, :, i, j])
    return out if b is None else out + b[None, :, None, None]


def conv_transpose(x, w, b, stride, padding, dilation, groups, output_padding):
    """PyTorch's conv_transpose2d: every input pixel scatters itself times the kernel into a
    full buffer, from which the padding is cropped."""
    n, cin, h, wd = x.shape
    _, cog, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw), (oh, ow) = stride, padding, dilation, output_padding
    ho = (h - 1) * sh - 2 * ph + dh * (kh - 1) + 1 + oh
    wo = (wd - 1) * sw - 2 * pw + dw * (kw - 1) + 1 + ow
    full = np.zeros((n, cog * groups, ho + 2 * ph + sh, wo + 2 * pw + sw))
    cig = cin // groups
    for g in range(groups):
        xs, ws = x[:, g * cig:(g + 1) * cig], w[g * cig:(g + 1) * cig]
        for r in range(kh):
            for c in range(kw):
                full[:, g * cog:(g + 1) * cog, r * dh:r * dh + (h - 1) * sh + 1:sh,
                     c * dw:c * dw + (wd - 1) * sw + 1:sw] += np.einsum("nchw,cd->ndhw", xs, ws[:, :, r, c])
    y = full[:, :, ph:ph + ho, pw:pw + wo]
    return y if b is None else y + b[None, :, None, None]


def _pool_len(size, k, s, p, ceil):
    span = size + 2 * p - k
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= size + p:
        out -= 1
    return out


def pool(x, kind, kernel, stride, padding, ceil_mode=False, count_include_pad=True):
    """PyTorch's max_pool2d / avg_pool2d, window by window."""
    n, c, h, w = x.shape
    ho = _pool_len(h, kernel[0], stride[0], padding[0], ceil_mode)
    wo = _pool_len(w, kernel[1], stride[1], padding[1], ceil_mode)
    out = np.empty((n, c, ho, wo))
    for i in range(ho):
        h0 = i * stride[0] - padding[0]
        h1 = min(h0 + kernel[0], h + padding[0])
        for j in range(wo):
            w0 = j * stride[1] - padding[1]
            w1 = min(w0 + kernel[1], w + padding[1])
            full = (h1 - h0) * (w1 - w0)
            win = x[:, :, max(h0, 0):min(h1, h), max(w0, 0):min(w1, w)]
            if kind == "max":
                out[:, :, i, j] = win.max(axis=(2, 3))
            else:
                count = full if count_include_pad else win.shape[2] * win.shape[3]
                out[:, :, i, j] = win.sum(axis=(2, 3)) / count
    return out


def _reshape(x, shape):
    target = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return x.reshape(target)


def softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def run_step(s, vals: list[np.ndarray]) -> list[np.ndarray]:
    a, arr = s.attrs, {k: np.asarray(v, np.float64) for k, v in s.arrays.items()}
    x = vals[0]
    k = s.kind
    if k == "conv":
        y = conv(x, arr["weight"], arr.get("bias"), a["stride"], a["padding"], a["dilation"], a["groups"])
        if len(vals) > 1:
            y = y + vals[1]
        return [act(y, a.get("act"), a.get("alpha", 0.01))]
    if k == "conv_transpose":
        return [conv_transpose(x, arr["weight"], arr.get("bias"), a["stride"], a["padding"], a["dilation"],
                               a["groups"], a.get("output_padding", (0, 0)))]
    if k == "linear":
        y = x @ arr["weight"].T + (arr["bias"] if "bias" in arr else 0)
        return [act(y, a.get("act"), a.get("alpha", 0.01))]
    if k == "act":
        return [act(x, a["kind"], a.get("alpha", 0.01))]
    if k in ("maxpool", "avgpool"):
        return [pool(x, k[:3], a["kernel"], a["stride"], a["padding"], a.get("ceil_mode", False),
                     a.get("count_include_pad", True))]
    if k == "global_avgpool":
        return [x.mean(axis=(2, 3), keepdims=True)]
    if k == "batch_norm":
        shape = (1, -1) + (1,) * (x.ndim - 2)
        scale = arr["weight"] / np.sqrt(arr["running_var"] + a["eps"])
        return [(x - arr["running_mean"].reshape(shape)) * scale.reshape(shape) + arr["bias"].reshape(shape)]
    if k == "flatten":
        ax = a.get("axis", 1)
        return [x.reshape(int(np.prod(x.shape[:ax])), -1)]
    if k == "reshape":
        return [_reshape(x, a["shape"])]
    if k == "transpose":
        return [np.transpose(x, a["perm"])]
    if k == "pad":
        t, l, b, r = a["pads"]
        return [np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=a.get("value", 0.0))]
    if k in ("add", "sub", "mul", "div"):
        other = vals[1] if len(vals) > 1 else arr["b"]
        y = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}[k](x, other)
        return [act(y, a.get("act"), a.get("alpha", 0.01))]
    if k == "concat":
        return [np.concatenate(vals, axis=a["axis"])]
    if k == "split":
        return np.split(x, np.cumsum(a["sizes"])[:-1], axis=a["axis"])
    if k == "reduce_mean":
        return [x.mean(axis=tuple(a["axes"]), keepdims=a["keepdims"])]
    if k == "matmul":
        return [x @ vals[1]]
    if k == "softmax":
        return [softmax(x, a.get("axis", -1))]
    if k == "embedding":
        return [arr["weight"][x.astype(np.int64)]]
    if k == "layer_norm":
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return [(x - mu) / np.sqrt(var + a["eps"]) * arr["weight"] + arr["bias"]]
    if k == "attention":
        q, kk, v = vals
        scores = q @ np.swapaxes(kk, -1, -2) * a.get("scale", 1 / math.sqrt(q.shape[-1]))
        if a.get("causal"):
            tq, tk = scores.shape[-2:]
            scores = np.where(np.tril(np.ones((tq, tk), bool), tk - tq), scores, -np.inf)
        return [softmax(scores, -1) @ v]
    raise ValueError(f"reference: unknown step kind {k!r}")


def run_graph(graph, x: np.ndarray) -> list[np.ndarray]:
    """The graph's outputs for input x, in float64."""
    vals = {graph.inputs[0]: x.astype(np.float64) if x.dtype.kind == "f" else x}
    for s in graph.steps:
        outs = run_step(s, [vals[i] for i in s.inputs])
        assert len(outs) == len(s.outputs), (s.name, len(outs), s.outputs)
        for name, v in zip(s.outputs, outs):
            assert name not in vals, f"value {name!r} is written twice"
            vals[name] = v
    return [vals[o] for o in graph.outputs]
