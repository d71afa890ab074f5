"""Node patterns the ONNX import rewrites before converting, so that they become one plan step:

- GELU written with Erf (PyTorch's exporters before opset 20):
  x * 0.5 * (1 + erf(x / sqrt(2))), with the divide as a multiply by 1/sqrt(2) and the three
  products in any order or operand order  ->  Gelu(x);
- HardSwish written as x * HardSigmoid(x) (alpha 1/6, beta 1/2)  ->  HardSwish(x);
- LayerNorm written out (the legacy exporter before opset 17): d = x - ReduceMean(x),
  d / Sqrt(ReduceMean(Pow(d, 2)) + eps) * w + b over the last axis  ->
  LayerNormalization(x, w, b).

A pattern is taken only where each intermediate value has no other reader; the replacement
computes the same function (to float32 rounding) as the nodes it replaces. `live` drops the
nodes no graph output depends on.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_SQRT2 = float(np.sqrt(2.0))


def _scalar(consts: dict, name: str) -> float | None:
    v = consts.get(name)
    return float(v.reshape(-1)[0]) if v is not None and v.size == 1 else None


def _close(v: float | None, want: float) -> bool:
    return v is not None and abs(v - want) <= 1e-6 * abs(want)


class _Index:
    """Producers and readers of each value over a node list."""

    def __init__(self, nodes: list, outputs: set[str]) -> None:
        self.producer = {o: n for n in nodes for o in n.output if o}
        self.readers: dict[str, list] = {}
        for n in nodes:
            for i in n.input:
                if i:
                    self.readers.setdefault(i, []).append(n)
        self.outputs = outputs

    def only_reader(self, value: str) -> Any:
        """The one node reading `value`, if exactly one does and it is no graph output."""
        r = self.readers.get(value, [])
        return r[0] if len(r) == 1 and value not in self.outputs else None


def _other(node: Any, value: str) -> str | None:
    """The other input of a two-input node that reads `value`."""
    ins = list(node.input)
    if len(ins) != 2 or value not in ins:
        return None
    return ins[1] if ins[0] == value else ins[0]


def _gelu(erf: Any, ix: _Index, consts: dict) -> tuple[str, list, str] | None:
    """(x, the nodes to drop, the output) of an Erf-based GELU around `erf`."""
    scale = ix.producer.get(erf.input[0])
    if scale is None or ix.only_reader(erf.input[0]) is not erf:
        return None
    if scale.op_type == "Div" and _close(_scalar(consts, scale.input[1]), _SQRT2):
        x = scale.input[0]
    elif scale.op_type == "Mul":
        x = next((a for a in scale.input if _close(_scalar(consts, _other(scale, a) or ""), 1 / _SQRT2)), None)
    else:
        return None
    plus = ix.only_reader(erf.output[0])
    if x is None or plus is None or plus.op_type != "Add" or not _close(_scalar(consts, _other(plus, erf.output[0]) or ""), 1.0):
        return None
    s = plus.output[0]
    first = ix.only_reader(s)
    if first is None or first.op_type != "Mul":
        return None
    partner = _other(first, s)
    if partner == x:  # (x * s) * 0.5
        last = ix.only_reader(first.output[0])
        if last is not None and last.op_type == "Mul" and _scalar(consts, _other(last, first.output[0]) or "") == 0.5:
            return x, [scale, erf, plus, first, last], last.output[0]
    elif _scalar(consts, partner or "") == 0.5:  # x * (s * 0.5)
        last = ix.only_reader(first.output[0])
        if last is not None and last.op_type == "Mul" and _other(last, first.output[0]) == x:
            return x, [scale, erf, plus, first, last], last.output[0]
    else:  # (x * 0.5) * s
        half = ix.producer.get(partner or "")
        if (half is not None and half.op_type == "Mul" and ix.only_reader(half.output[0]) is first
                and _other(half, x) is not None and _scalar(consts, _other(half, x)) == 0.5):
            return x, [scale, erf, plus, half, first], first.output[0]
    return None


def _hardswish(hs: Any, ix: _Index) -> tuple[str, list, str] | None:
    attrs = {a.name: a for a in hs.attribute}
    alpha = attrs["alpha"].f if "alpha" in attrs else 0.2
    beta = attrs["beta"].f if "beta" in attrs else 0.5
    if abs(alpha - 1 / 6) > 1e-7 or beta != 0.5:
        return None
    mul = ix.only_reader(hs.output[0])
    if mul is None or mul.op_type != "Mul" or _other(mul, hs.output[0]) != hs.input[0]:
        return None
    return hs.input[0], [hs, mul], mul.output[0]


def _last_axis_mean(n: Any, consts: dict) -> bool:
    """A ReduceMean over the last axis only, keeping dims (axes as attribute or input)."""
    if n is None or n.op_type != "ReduceMean":
        return False
    attrs = {a.name: a for a in n.attribute}
    if "keepdims" in attrs and attrs["keepdims"].i == 0:
        return False
    axes = list(attrs["axes"].ints) if "axes" in attrs else (
        consts[n.input[1]].reshape(-1).tolist() if len(n.input) > 1 and n.input[1] in consts else None)
    return axes == [-1]


def _layer_norm(mean: Any, ix: _Index, consts: dict) -> tuple[list, list, str, float] | None:
    """(inputs x, w, b; the nodes to drop; the output; eps) of a written-out LayerNorm whose
    first ReduceMean is `mean`."""
    x = mean.input[0]
    sub = ix.only_reader(mean.output[0])
    if not _last_axis_mean(mean, consts) or sub is None or sub.op_type != "Sub" or list(sub.input) != [x, mean.output[0]]:
        return None
    d = sub.output[0]
    readers = ix.readers.get(d, [])
    pow_ = next((r for r in readers if r.op_type == "Pow" and list(r.input)[0] == d), None)
    div = next((r for r in readers if r.op_type == "Div" and list(r.input)[0] == d), None)
    if len(readers) != 2 or pow_ is None or div is None or _scalar(consts, pow_.input[1]) != 2.0:
        return None
    var = ix.only_reader(pow_.output[0])
    add = ix.only_reader(var.output[0]) if _last_axis_mean(var, consts) else None
    eps = _scalar(consts, _other(add, var.output[0]) or "") if add is not None and add.op_type == "Add" else None
    sqrt = ix.only_reader(add.output[0]) if eps is not None else None
    if sqrt is None or sqrt.op_type != "Sqrt" or ix.only_reader(sqrt.output[0]) is not div or div.input[1] != sqrt.output[0]:
        return None
    mul = ix.only_reader(div.output[0])
    w = _other(mul, div.output[0]) if mul is not None and mul.op_type == "Mul" else None
    bias = ix.only_reader(mul.output[0]) if w in consts else None
    b = _other(bias, mul.output[0]) if bias is not None and bias.op_type == "Add" else None
    if b not in consts:
        return None
    return [x, w, b], [mean, sub, pow_, var, add, sqrt, div, mul, bias], bias.output[0], eps


def rewrite(nodes: list, consts: dict[str, np.ndarray], outputs: set[str]) -> list:
    """`nodes` with each pattern replaced by its one node (placed where the last replaced node
    was, so the order stays topological)."""
    from onnx import helper

    ix = _Index(nodes, outputs)
    replace: dict[int, Any] = {}
    dropped: set[int] = set()
    for n in nodes:
        if id(n) in dropped:
            continue
        if n.op_type == "Erf":
            found, op, extra = _gelu(n, ix, consts), "Gelu", {"approximate": "none"}
        elif n.op_type == "HardSigmoid":
            found, op, extra = _hardswish(n, ix), "HardSwish", {}
        elif n.op_type == "ReduceMean":
            found, op = _layer_norm(n, ix, consts), "LayerNormalization"
            extra = {"axis": -1, "epsilon": found[3]} if found else {}
        else:
            continue
        if found is None or any(id(m) in dropped for m in found[1]):
            continue
        x, group, out = found[:3]
        dropped.update(id(m) for m in group)
        inputs = x if isinstance(x, list) else [x]
        fused = helper.make_node(op, inputs, [out], name=n.name or f"{op}_{len(replace)}", **extra)
        replace[id(ix.producer[out])] = fused
    return [replace.get(id(n), n) for n in nodes if id(n) not in dropped or id(n) in replace]


def live(nodes: list, outputs: list[str]) -> list:
    """The nodes some graph output depends on, in their order."""
    need = set(outputs)
    keep = []
    for n in reversed(nodes):
        if any(o in need for o in n.output if o):
            keep.append(n)
            need.update(i for i in n.input if i)
    return keep[::-1]
