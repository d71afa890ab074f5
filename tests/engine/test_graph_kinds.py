"""The executor on every step kind of the graph IR: small hand-made graphs against float64 NumPy
(fresh random inputs, odd sizes), planned and unplanned, repeated shapes included."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hipgrad import InferenceEngine
from hipgrad.engine.steps import Graph, Step


def act(name, x, kind, **attrs):
    return Step("act", name, [x], [name], attrs={"kind": kind, **attrs})


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def run_both(graph, x, device="cpu"):
    """The graph's outputs from a planned engine (twice: the second run replays) and an
    unplanned one; all three must agree bit for bit."""
    planned = InferenceEngine(graph.copy(), device=device)
    plain = InferenceEngine(graph.copy(), device=device, plan_memory=False)
    outs = [planned.forward(x), planned.forward(x.copy()), plain.forward(x)]
    outs = [list(o) if isinstance(o, tuple) else [o] for o in outs]
    for runs in zip(*outs):
        np.testing.assert_array_equal(runs[0], runs[1])
        np.testing.assert_array_equal(runs[0], runs[2])
    return outs[0]


def check(got, want, tol=1e-5):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape, (g.shape, w.shape)
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol)


def test_split_concat_and_a_value_read_three_times(rng, device):
    steps = [Step("split", "s", ["input"], ["a", "b"], attrs={"axis": 1, "sizes": [2, 5]}),
             act("t", "b", "tanh"),
             Step("concat", "c", ["t", "a", "b"], attrs={"axis": 1}, outputs=["c"]),
             Step("concat", "d", ["a", "a"], attrs={"axis": -1}, outputs=["d"])]
    g = Graph(steps, ["input"], ["c", "d"])
    for n in (3, 1, 3):
        x = rng.standard_normal((n, 7, 5, 3)).astype(np.float32)
        a, b = x[:, :2].astype(np.float64), x[:, 2:].astype(np.float64)
        check(run_both(g, x, device), [np.concatenate([np.tanh(b), a, b], 1), np.concatenate([a, a], -1)])


def test_split_into_three_graph_outputs(rng, device):
    g = Graph([Step("split", "s", ["input"], ["p", "q", "r"], attrs={"axis": -1, "sizes": [1, 3, 2]})],
              ["input"], ["p", "q", "r"])
    x = rng.standard_normal((4, 5, 6)).astype(np.float32)
    check(run_both(g, x, device), [x[..., :1], x[..., 1:4], x[..., 4:]], tol=0)


@pytest.mark.parametrize("kind", ["add", "sub"])
def test_add_and_sub_of_two_values_with_an_activation(kind, rng, device):
    steps = [act("t", "input", "tanh"), Step(kind, "y", ["t", "input"], ["y"], attrs={"act": "relu"}),
             Step(kind, "z", ["input", "y"], ["z"])]
    g = Graph(steps, ["input"], ["z", "t"])
    op = np.add if kind == "add" else np.subtract
    for n in (5, 2):
        x = rng.standard_normal((n, 3, 7)).astype(np.float32)
        x64 = x.astype(np.float64)
        y = np.maximum(op(np.tanh(x64), x64), 0)
        check(run_both(g, x, device), [op(x64, y), np.tanh(x64)])


def test_means_and_pools_over_the_plane(rng, device):
    steps = [Step("reduce_mean", "m", ["input"], ["m"], attrs={"axes": [-1, 2], "keepdims": False}),
             Step("reduce_mean", "k", ["input"], ["k"], attrs={"axes": [2, 3], "keepdims": True}),
             Step("global_avgpool", "g", ["input"], ["g"]),
             Step("maxpool", "p", ["input"], ["p"], attrs={"kernel": (3, 3), "stride": (2, 2), "padding": (0, 0),
                                                            "ceil_mode": True}),
             Step("avgpool", "v", ["input"], ["v"], attrs={"kernel": (3, 1), "stride": (2, 1), "padding": (0, 0),
                                                            "ceil_mode": True, "count_include_pad": False})]
    g = Graph(steps, ["input"], ["m", "k", "g", "p", "v"])
    x = rng.standard_normal((3, 4, 7, 5)).astype(np.float32)  # ceil_mode changes no size here
    x64 = x.astype(np.float64)
    win = np.stack([x64[:, :, r:r + 5:2, s:s + 3:2] for r in range(3) for s in range(3)])
    avg = np.stack([x64[:, :, r:r + 5:2, :] for r in range(3)]).mean(0)
    check(run_both(g, x, device), [x64.mean((2, 3)), x64.mean((2, 3), keepdims=True), x64.mean((2, 3), keepdims=True),
                           win.max(0), avg])


def test_reshape_flatten_softmax_and_matmul(rng, device):
    steps = [Step("reshape", "r", ["input"], ["r"], attrs={"shape": (0, -1, 3)}),
             Step("softmax", "s", ["r"], ["s"], attrs={"axis": -1}),
             Step("flatten", "f", ["input"], ["f"], attrs={"axis": 2}),
             act("q", "input", "sigmoid"),
             Step("reshape", "x3", ["input"], ["x3"], attrs={"shape": (-1, 3, 3)}),
             Step("reshape", "q3", ["q"], ["q3"], attrs={"shape": (-1, 3, 3)}),
             Step("matmul", "mm", ["x3", "q3"], ["mm"])]
    g = Graph(steps, ["input"], ["s", "f", "mm"])
    for n in (2, 5):
        x = rng.standard_normal((n, 6, 3, 3)).astype(np.float32)
        x64 = x.astype(np.float64)
        r = x64.reshape(n, -1, 3)
        e = np.exp(r - r.max(-1, keepdims=True))
        q = sigmoid(x64).reshape(-1, 3, 3)
        check(run_both(g, x, device), [e / e.sum(-1, keepdims=True), x64.reshape(n * 6, 9), x64.reshape(-1, 3, 3) @ q])


def test_layer_norm_and_attention(rng, device):
    c = 6
    w = rng.uniform(0.5, 1.5, c).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    steps = [Step("layer_norm", "ln", ["input"], ["ln"], arrays={"weight": w, "bias": b}, attrs={"eps": 1e-5}),
             act("k", "input", "tanh"), act("v", "input", "sigmoid"),
             Step("attention", "at", ["ln", "k", "v"], ["at"], attrs={"causal": True, "scale": 0.37})]
    g = Graph(steps, ["input"], ["at", "ln"])
    x = rng.standard_normal((2, 3, 5, c)).astype(np.float32)
    x64 = x.astype(np.float64)
    mu, var = x64.mean(-1, keepdims=True), x64.var(-1, keepdims=True)
    ln = (x64 - mu) / np.sqrt(var + 1e-5) * w + b
    s = 0.37 * ln @ np.tanh(x64).swapaxes(-1, -2)
    s = np.where(np.tril(np.ones((5, 5), bool)), s, -math.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    check(run_both(g, x, device), [(p / p.sum(-1, keepdims=True)) @ sigmoid(x64), ln], tol=1e-4)


def test_a_step_the_ops_cannot_compute_is_named(rng, device):
    steps = [Step("reduce_mean", "m", ["input"], ["m"], attrs={"axes": [1], "keepdims": True}),
             Step("transpose", "t", ["m"], ["t"], attrs={"perm": (0, 1, 3, 2)}),
             Step("matmul", "mm", ["input", "t"], ["mm"])]  # (N, 2, 3, 4) @ (N, 1, 4, 3): broadcast
    engine = InferenceEngine(Graph(steps, ["input"], ["mm"]), device=device)
    with pytest.raises(ValueError, match=r"step 'mm' \(matmul\): a matmul of shapes .* is not supported"):
        engine.forward(rng.standard_normal((2, 2, 3, 4)).astype(np.float32))
