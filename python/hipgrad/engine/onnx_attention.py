"""Scaled dot-product attention, as PyTorch's exporters write it, becomes one `attention` step
of the imported graph (run by the fused ops.attention: the (T, T) scores are never stored).

The steps matched (each intermediate value read only by the next step):

    kT = transpose(X, p)                      p swaps k's last two axes (maybe with others), or
                                              the dynamo exporter's reshape/transpose/reshape
    s  = matmul(q [* a], kT [* b])            a, b: scalars (SDPA's sqrt(scale) on each side)
    s  = s * c   or   s / c                   optional scalar scale
    s  = s + M                                optional constant M: 0 on and below the diagonal,
                                              -inf (or <= -1e30) above: the causal mask (a Where
                                              was made an add)
    y  = matmul(softmax(s, last axis), v)

->  y = attention(q, k, v, causal=M present, scale=a*b*c) with k = transpose(X, p with its last
two entries swapped), or X itself where that is the identity. q, k, v must be (B, H, T, D)
with as many queries as keys. Anything else stays as the separate steps, which compute it too.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _scalar(step: Any) -> float | None:
    b = step.arrays.get("b")
    return float(b.reshape(-1)[0]) if b is not None and b.size == 1 and len(step.inputs) == 1 else None


def _is_causal(mask: np.ndarray, t: int) -> bool:
    """0 on and below the diagonal of a (T, T) mask (leading dims 1), -inf above, or a finite
    value so negative (<= -1e30, the dynamo exporter's float32 min) that exp underflows to
    exactly 0 after the softmax subtracts the row maximum, as -inf does."""
    if mask.ndim < 2 or mask.shape[-2:] != (t, t) or any(d != 1 for d in mask.shape[:-2]):
        return False
    m = mask.reshape(t, t)
    below = np.tril(np.ones((t, t), bool))
    return bool((m[below] == 0).all() and (m[~below] <= -1e30).all())


class _Graph:
    def __init__(self, steps: list, outputs: list[str]) -> None:
        self.producer = {o: s for s in steps for o in s.outputs}
        self.readers: dict[str, list] = {}
        for s in steps:
            for v in s.inputs:
                self.readers.setdefault(v, []).append(s)
        self.outputs = set(outputs)

    def sole(self, value: str, kind: str | None = None) -> Any:
        """The step writing `value`, when exactly one step reads it (and it is no output)."""
        s = self.producer.get(value)
        if s is None or len(self.readers.get(value, [])) != 1 or value in self.outputs:
            return None
        return s if kind is None or s.kind == kind else None


def _unscale(g: _Graph, value: str) -> tuple[str, float]:
    """The value before a chain of scalar mul/div steps only `value`'s path reads, and the
    product of their scales."""
    scale = 1.0
    while True:
        s = g.sole(value)
        c = _scalar(s) if s is not None and s.kind in ("mul", "div") else None
        if c is None or c == 0:
            return value, scale
        scale *= c if s.kind == "mul" else 1.0 / c
        value = s.inputs[0]


def _match(p: Any, g: _Graph, shapes: dict) -> tuple[dict, list, Any] | None:
    """(attention attrs + q/k/v, steps to drop, the k transpose to edit) for the value matmul p."""
    probs = g.sole(p.inputs[0], "softmax")
    if probs is None or len(shapes.get(probs.inputs[0], ((),))[0]) != 4:
        return None
    if int(probs.attrs.get("axis", -1)) not in (-1, 3):
        return None
    drop = [probs, p]
    scores, causal = probs.inputs[0], False
    masked = g.sole(scores, "add")
    if masked is not None and len(masked.inputs) == 1:
        t = shapes[scores][0][-1]
        if not _is_causal(np.asarray(masked.arrays["b"]), t) or shapes[scores][0][-2] != t:
            return None
        drop.append(masked)
        scores, causal = masked.inputs[0], True
    scores_raw, scale = _unscale(g, scores)
    drop += [g.producer[v] for v in _chain(g, scores, scores_raw)]
    mm = g.sole(scores_raw, "matmul")
    if mm is None:
        return None
    drop.append(mm)
    q, a = _unscale(g, mm.inputs[0])
    kt, b = _unscale(g, mm.inputs[1])
    drop += [g.producer[v] for v in _chain(g, mm.inputs[0], q) + _chain(g, mm.inputs[1], kt)]
    k_side = _transposed(g, kt, shapes)
    if k_side is None:
        return None
    x, perm, k_steps = k_side
    v = p.inputs[1]
    qs, vs = shapes[q][0], shapes[v][0]
    if len(qs) != 4 or len(vs) != 4:
        return None
    attrs = {"causal": causal, "scale": float(np.float32(scale * a * b))}
    return {"attrs": attrs, "q": q, "v": v, "perm": perm, "x": x}, drop + k_steps, k_steps[0]


def _transposed(g: _Graph, kt: str, shapes: dict) -> tuple[str, tuple, list] | None:
    """(X, perm, the steps writing kt from X) where k = transpose(X, perm) has kt's last two
    axes swapped: kt = transpose(X, p), or (the dynamo exporter's) kt = reshape(transpose(
    reshape(X4 to (B*H, T, D)), (0, 2, 1)) back to (B, H, D, T)) with X4 = k itself."""
    tr = g.sole(kt, "transpose")
    if tr is not None:
        perm = list(tr.attrs["perm"])
        perm[-2], perm[-1] = perm[-1], perm[-2]
        return tr.inputs[0], tuple(perm), [tr]
    back = g.sole(kt, "reshape")
    swap = g.sole(back.inputs[0], "transpose") if back is not None else None
    flat = g.sole(swap.inputs[0], "reshape") if swap is not None else None
    if flat is None or tuple(swap.attrs["perm"]) != (0, 2, 1):
        return None
    x4, f3, b4 = shapes[flat.inputs[0]][0], shapes[flat.outputs[0]][0], shapes[kt][0]
    if (len(x4) != 4 or f3 != (x4[0] * x4[1], x4[2], x4[3]) or b4 != (x4[0], x4[1], x4[3], x4[2])
            or shapes[kt][1][:2] != shapes[flat.inputs[0]][1][:2]):
        return None
    return flat.inputs[0], (0, 1, 2, 3), [back, swap, flat]


def _chain(g: _Graph, top: str, bottom: str) -> list[str]:
    """The values from `top` down to (not including) `bottom` along single-input steps."""
    out = []
    while top != bottom:
        out.append(top)
        top = g.producer[top].inputs[0]
    return out


def fuse_attention(steps: list, shapes: dict, outputs: list[str], fresh: Any) -> list:
    """`steps` with each matched attention replaced by one step (see the module docstring).
    `shapes`: value -> its shapes (onnx_context.Context.shapes); `fresh(base)`: a new name."""
    from .steps import Step

    g = _Graph(steps, outputs)
    gone: set[int] = set()
    added: dict[int, list] = {}
    for p in steps:
        if p.kind != "matmul" or id(p) in gone:
            continue
        found = _match(p, g, shapes)
        if found is None or any(id(s) in gone for s in found[1]):
            continue
        m, drop, tr = found  # tr: the first step of k's side, where a new k transpose goes
        k = m["x"]
        if m["perm"] != tuple(range(len(m["perm"]))):
            k = fresh(f"{tr.outputs[0]}:k")
            shapes[k] = tuple(tuple(s[i] for i in m["perm"]) for s in shapes[m["x"]])
            added.setdefault(id(tr), []).append(Step(kind="transpose", name=f"{tr.name}:k", inputs=[m["x"]],
                                                     outputs=[k], attrs={"perm": m["perm"]}))
        if shapes[k][0][:2] != shapes[m["q"]][0][:2] or shapes[k][0][-1] != shapes[m["q"]][0][-1]:
            added.pop(id(tr), None)
            continue
        gone.update(id(s) for s in drop)
        gone.add(id(tr))
        added.setdefault(id(p), []).append(Step(kind="attention", name=f"{p.name}:attention",
                                                inputs=[m["q"], k, m["v"]], outputs=list(p.outputs),
                                                attrs=m["attrs"]))
    out = []
    for s in steps:
        out += added.get(id(s), [])
        if id(s) not in gone:
            out.append(s)
    return out
