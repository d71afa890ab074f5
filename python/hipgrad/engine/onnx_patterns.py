"""Node patterns the ONNX import rewrites before converting, so that they become one plan step:

- GELU written with Erf (PyTorch's exporters before opset 20):
  x * 0.5 * (1 + erf(x / sqrt(2))), with the divide as a multiply by 1/sqrt(2) and the three
  products in any order or operand order  ->  Gelu(x);
- HardSwish written as x * HardSigmoid(x) (alpha 1/6, beta 1/2)  ->  HardSwish(x).

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
        else:
            continue
        if found is None or any(id(m) in dropped for m in found[1]):
            continue
        x, group, out = found
        dropped.update(id(m) for m in group)
        fused = helper.make_node(op, [x], [out], name=n.name or f"{op}_{len(replace)}", **extra)
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
