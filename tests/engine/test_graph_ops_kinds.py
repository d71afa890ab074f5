"""The executor on the step kinds whose ops came with the graph ops (ops.binary with
broadcasting, transpose, pad2d, reduce_mean, pooling with ceil_mode / count_include_pad, the
relu6 / hardsigmoid / hardswish activations, alone and fused): small graphs against float64
NumPy, planned, replayed and unplanned."""

from __future__ import annotations

import numpy as np
import pytest

from hipgrad.engine.lowering import optimize
from hipgrad.engine.steps import Graph, Step
from tests.engine.test_graph_kinds import act, check, run_both, sigmoid
from tests.nn import reference as ref

ACTS = {"relu6": lambda x: np.clip(x, 0, 6), "hardsigmoid": lambda x: np.clip(x / 6 + 0.5, 0, 1),
        "hardswish": lambda x: x * np.clip(x / 6 + 0.5, 0, 1)}


@pytest.mark.parametrize("kind", ["add", "sub", "mul", "div"])
def test_binary_broadcasting_with_values_and_constants(kind, rng, device):
    op = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}[kind]
    b = rng.uniform(0.5, 2.0, (5, 1, 1)).astype(np.float32)
    steps = [Step("reduce_mean", "m", ["input"], ["m"], attrs={"axes": [2, 3], "keepdims": True}),
             act("g", "m", "sigmoid"),
             Step(kind, "se", ["input", "g"], ["se"]),                 # (N,C,H,W) . (N,C,1,1)
             Step(kind, "c", ["se"], ["c"], arrays={"b": b}, attrs={"act": "sigmoid"}),  # . (C,1,1)
             Step(kind, "r", ["g", "c"], ["r"])]                      # (N,C,1,1) . (N,C,H,W)
    g = Graph(steps, ["input"], ["r", "se"])
    for n in (3, 1):
        x = rng.standard_normal((n, 5, 4, 7)).astype(np.float32)
        x64 = x.astype(np.float64)
        gate = sigmoid(x64.mean((2, 3), keepdims=True))
        se = op(x64, gate)
        c = sigmoid(op(se, b.astype(np.float64)))
        check(run_both(g, x, device), [op(gate, c), se], tol=1e-4)


def test_transpose_pad_and_mean_over_channels(rng, device):
    steps = [Step("transpose", "t", ["input"], ["t"], attrs={"perm": (0, 2, 3, 1)}),
             Step("pad", "p", ["input"], ["p"], attrs={"pads": (1, 0, 2, 3), "value": 0.0}),
             Step("reduce_mean", "m", ["input"], ["m"], attrs={"axes": [1], "keepdims": False})]
    g = Graph(steps, ["input"], ["t", "p", "m"])
    x = rng.standard_normal((2, 3, 5, 4)).astype(np.float32)
    x64 = x.astype(np.float64)
    check(run_both(g, x, device), [x64.transpose(0, 2, 3, 1), np.pad(x64, ((0, 0), (0, 0), (1, 2), (0, 3))),
                           x64.mean(1)])


def test_asymmetric_conv_padding_as_a_pad_step(rng, device):
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    steps = [Step("pad", "p", ["input"], ["p"], attrs={"pads": (0, 1, 1, 0)}),
             Step("conv", "c", ["p"], ["c"], arrays={"weight": w},
                  attrs={"stride": (2, 2), "padding": (0, 0), "dilation": (1, 1), "groups": 1})]
    g = Graph(steps, ["input"], ["c"])
    x = rng.standard_normal((2, 3, 8, 7)).astype(np.float32)
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (0, 1), (1, 0)))
    check(run_both(g, x, device), [ref.conv2d(xp, {"weight": w.astype(np.float64)}, stride=(2, 2))], tol=1e-4)


def test_pools_with_ceil_mode_and_count_include_pad(rng, device):
    steps = [Step("maxpool", "m", ["input"], ["m"], attrs={"kernel": (3, 3), "stride": (2, 2),
                                                            "padding": (0, 0), "ceil_mode": True}),
             Step("avgpool", "a", ["input"], ["a"], attrs={"kernel": (3, 3), "stride": (2, 2), "padding": (1, 1),
                                                            "ceil_mode": True, "count_include_pad": False})]
    g = Graph(steps, ["input"], ["m", "a"])
    x = rng.standard_normal((2, 3, 14, 9)).astype(np.float32)
    x64 = x.astype(np.float64)
    # max: 14 rows -> 7 windows (the last one cut at the edge), 9 columns -> 4
    xm = np.pad(x64, ((0, 0), (0, 0), (0, 1), (0, 0)), constant_values=-np.inf)
    m = np.stack([xm[:, :, r:r + 13:2, s:s + 7:2] for r in range(3) for s in range(3)]).max(0)
    # avg over the real elements of each window; rows: 14 + 2 pad -> 8 windows (the last starts
    # inside the input), columns 9 + 2 -> 5
    ones = np.pad(np.ones_like(x64), ((0, 0), (0, 0), (1, 2), (1, 1)))
    xa = np.pad(x64, ((0, 0), (0, 0), (1, 2), (1, 1)))
    tot = sum(xa[:, :, r:r + 15:2, s:s + 9:2] for r in range(3) for s in range(3))
    cnt = sum(ones[:, :, r:r + 15:2, s:s + 9:2] for r in range(3) for s in range(3))
    check(run_both(g, x, device), [m, tot / cnt])


@pytest.mark.parametrize("kind", list(ACTS))
def test_new_activations_alone_and_fused(kind, rng, device):
    w = (rng.standard_normal((5, 3, 3, 3)) * 2).astype(np.float32)
    lw = (rng.standard_normal((4, 5)) * 2).astype(np.float32)
    steps = [act("a", "input", kind),
             Step("conv", "c", ["input"], ["c"], arrays={"weight": w},
                  attrs={"stride": (1, 1), "padding": (1, 1), "dilation": (1, 1), "groups": 1}),
             act("ca", "c", kind),
             Step("transpose", "t", ["ca"], ["t"], attrs={"perm": (0, 2, 3, 1)}),
             Step("linear", "l", ["t"], ["l"], arrays={"weight": lw}), act("la", "l", kind)]
    g = optimize(Graph(steps, ["input"], ["a", "la"]))
    assert [s.kind for s in g] == ["act", "conv", "transpose", "linear"]
    f = ACTS[kind]
    x = (rng.standard_normal((2, 3, 5, 4)) * 4).astype(np.float32)
    x64 = x.astype(np.float64)
    ca = f(ref.conv2d(x64, {"weight": w.astype(np.float64)}, padding=(1, 1)))
    check(run_both(g, x, device), [f(x64), f(ca.transpose(0, 2, 3, 1) @ lw.T.astype(np.float64))], tol=1e-4)


def test_softmax_over_any_axis(rng, device):
    steps = [Step("softmax", "s1", ["input"], ["s1"], attrs={"axis": 1}),
             Step("softmax", "s0", ["s1"], ["s0"], attrs={"axis": -3}),
             Step("softmax", "s3", ["input"], ["s3"], attrs={"axis": 3})]
    g = Graph(steps, ["input"], ["s0", "s3"])

    def softmax(a, axis):
        e = np.exp(a - a.max(axis, keepdims=True))
        return e / e.sum(axis, keepdims=True)
    for n in (2, 3):
        x = rng.standard_normal((n, 5, 3, 4)).astype(np.float32)
        x64 = x.astype(np.float64)
        check(run_both(g, x, device), [softmax(softmax(x64, 1), 1), softmax(x64, 3)])
