"""The rewriting passes over a graph (lowering.optimize runs them in this order):

1. fold_batchnorm: a batch_norm whose input is a conv's output read by nothing else (and no
   graph output) becomes the conv's weight and bias.
2. fuse_activations: an act step whose input is the single-reader output of a conv, linear or
   add / sub / mul / div with no activation yet becomes that step's epilogue (`attrs["act"]`).
3. fuse_residuals: an add of two values (with or without a fused activation), one of them the
   single-reader output of a conv without an activation or residual, becomes that conv's
   residual: y = act(conv(x) + bias + other). Of two such convs the later one takes it, so the
   other value is computed (live) when it runs.

Each pass leaves a step alone where its value has another reader: that reader needs the value
as it is.
"""

from __future__ import annotations

import numpy as np

from .steps import Graph, Step

BINARY = ("add", "sub", "mul", "div")


def _sole_reader(graph: Graph, value: str, readers: dict[str, list[Step]]) -> Step | None:
    """The one step reading `value` (which is no graph output), else None."""
    r = readers.get(value, [])
    return r[0] if len(r) == 1 and value not in graph.outputs else None


def _absorb(graph: Graph, keep: Step, gone: Step) -> None:
    """`keep` now writes what `gone` wrote; `gone` leaves the graph."""
    keep.outputs = list(gone.outputs)
    graph.steps.remove(gone)


def fold_batchnorm(graph: Graph) -> None:
    for bn in [s for s in graph.steps if s.kind == "batch_norm"]:
        prod = graph.producers().get(bn.inputs[0])
        if (prod is None or prod.kind != "conv" or len(prod.inputs) != 1 or prod.attrs.get("act")
                or _sole_reader(graph, bn.inputs[0], graph.readers()) is not bn):
            continue
        _fold(prod, bn)
        _absorb(graph, prod, bn)


def _fold(conv: Step, bn: Step) -> None:
    gamma = bn.arrays["weight"].astype(np.float64)
    beta = bn.arrays["bias"].astype(np.float64)
    mean = bn.arrays["running_mean"].astype(np.float64)
    var = bn.arrays["running_var"].astype(np.float64)
    scale = gamma / np.sqrt(var + bn.attrs["eps"])
    w = conv.arrays["weight"].astype(np.float64)
    b = conv.arrays.get("bias", np.zeros(w.shape[0])).astype(np.float64)
    conv.arrays["weight"] = (w * scale[:, None, None, None]).astype(np.float32)
    conv.arrays["bias"] = ((b - mean) * scale + beta).astype(np.float32)
    conv.attrs["folded_bn"] = bn.name


def fuse_activations(graph: Graph) -> None:
    for act in [s for s in graph.steps if s.kind == "act"]:
        prod = graph.producers().get(act.inputs[0])
        if (prod is None or prod.kind not in ("conv", "linear") + BINARY or prod.attrs.get("act")
                or _sole_reader(graph, act.inputs[0], graph.readers()) is not act):
            continue
        prod.attrs["act"] = act.attrs["kind"]
        prod.attrs["alpha"] = act.attrs.get("alpha", 0.01)
        _absorb(graph, prod, act)


def fuse_residuals(graph: Graph) -> None:
    for add in [s for s in graph.steps if s.kind == "add"]:
        if len(add.inputs) != 2 or add.inputs[0] == add.inputs[1]:
            continue
        producers, readers = graph.producers(), graph.readers()
        order = {id(s): i for i, s in enumerate(graph.steps)}
        best = None
        for j, v in enumerate(add.inputs):
            conv = producers.get(v)
            if (conv is None or conv.kind != "conv" or len(conv.inputs) != 1 or conv.attrs.get("act")
                    or _sole_reader(graph, v, readers) is not add):
                continue
            other = add.inputs[1 - j]
            before = producers.get(other)
            if before is not None and order[id(before)] > order[id(conv)]:
                continue  # the other value is not computed yet when this conv runs
            if best is None or order[id(conv)] > order[id(best[0])]:
                best = (conv, other)
        if best is None:
            continue
        conv, other = best
        conv.inputs.append(other)
        if add.attrs.get("act"):
            conv.attrs["act"] = add.attrs["act"]
            conv.attrs["alpha"] = add.attrs.get("alpha", 0.01)
        conv.attrs["residual"] = add.name
        _absorb(graph, conv, add)
