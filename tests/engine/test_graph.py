"""Graph plans: models with branches (nn.Residual with a downsampling shortcut, nn.Concat
Fire-style blocks, one value read by three steps) lower to a graph whose engine equals the
model's eval forward and a float64 NumPy reference, planned and unplanned, fp32 and INT8; each
fusion pass fires where it may and not where a value has another reader."""

from __future__ import annotations

import numpy as np
import pytest

import hipgrad as hg
from hipgrad import InferenceEngine, nn
from hipgrad.engine.lowering import optimize, plan_from_module
from hipgrad.engine.steps import Graph, Step
from tests.nn import reference as ref


def randomize_bn(model, rng):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(hg.tensor(rng.standard_normal(c).astype(np.float32)))
            m.running_var.copy_(hg.tensor(rng.uniform(0.5, 2.0, c).astype(np.float32)))
            m.weight.data.copy_(hg.tensor(rng.uniform(0.5, 1.5, c).astype(np.float32)))
            m.bias.data.copy_(hg.tensor(rng.standard_normal(c).astype(np.float32)))


def resnet_ish(c=3, classes=7):
    """Stem, an identity block, a downsampling block (1x1 stride-2 conv + BN shortcut), head."""
    def block(cin, cout, stride):
        body = nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                             nn.BatchNorm2d(cout), nn.ReLU(),
                             nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout))
        short = None if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
        return [nn.Residual(body, short), nn.ReLU()]
    return nn.Sequential(nn.Conv2d(c, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
                         *block(6, 6, 1), *block(6, 10, 2), nn.AvgPool2d((6, 5)), nn.Flatten(),
                         nn.Linear(10, classes))


def fire(cin, squeeze, e1, e3):
    """SqueezeNet's Fire module: squeeze 1x1 + ReLU, then expand 1x1 and 3x3 joined."""
    return nn.Sequential(nn.Conv2d(cin, squeeze, 1), nn.ReLU(),
                         nn.Concat(nn.Sequential(nn.Conv2d(squeeze, e1, 1), nn.ReLU()),
                                   nn.Sequential(nn.Conv2d(squeeze, e3, 3, padding=1), nn.ReLU()), dim=1))


def fire_net(classes=7):
    """SqueezeNet-style: conv, max pool in ceil mode, two Fire modules, average pool, linear."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.MaxPool2d(3, stride=2, ceil_mode=True),
                         fire(8, 3, 5, 4), fire(9, 4, 6, 5), nn.AvgPool2d((4, 4)), nn.Flatten(),
                         nn.Linear(11 * 1 * 1, classes))


def three_readers(classes=5):
    """x (after the stem) is read by two convolutions and the concat itself (Identity)."""
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Tanh(),
                         nn.Concat(nn.Sequential(nn.Conv2d(4, 3, 1), nn.LeakyReLU(0.1)),
                                   nn.Residual(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1),
                                                             nn.BatchNorm2d(4))),
                                   nn.Identity(), dim=1),
                         nn.Flatten(), nn.Linear(11 * 5 * 7, classes))


def three_readers_ref(model, x):
    """float64 NumPy forward of three_readers (BatchNorm in eval mode)."""
    p = {k: v.astype(np.float64) for k, v in model.state_dict().items()}

    def sub(prefix):
        return {k[len(prefix):]: v for k, v in p.items() if k.startswith(prefix)}
    h = np.tanh(ref.batch_norm_eval(ref.conv2d(x, sub("0."), padding=(1, 1)), sub("1."), 1e-5))
    a = ref.conv2d(h, sub("3.0.0."))
    a = np.where(a > 0, a, 0.1 * a)
    b = ref.batch_norm_eval(ref.conv2d(h, sub("3.1.body.0."), padding=(1, 1)), sub("3.1.body.1."), 1e-5) + h
    y = np.concatenate([a, b, h], axis=1).reshape(x.shape[0], -1)
    return ref.linear(y, sub("5."))


MODELS = {"resnet_ish": (resnet_ish, (3, 11, 9)), "fire": (fire_net, (3, 19, 17)),
          "three_readers": (three_readers, (3, 5, 7))}


def _model(name, rng):
    hg.manual_seed(int(rng.integers(1 << 30)))
    make, shape = MODELS[name]
    model = make()
    randomize_bn(model, rng)
    return model.eval(), shape


@pytest.mark.parametrize("name", list(MODELS))
def test_branchy_model_equals_its_eval_forward(name, rng, device):
    model, shape = _model(name, rng)
    planned = InferenceEngine.from_model(model, device=device)
    plain = InferenceEngine.from_model(model, device=device, plan_memory=False)
    model = model.to(device)
    for batch in (5, 1, 5, 3):  # fresh inputs; repeated shapes replay the recorded calls
        x = rng.standard_normal((batch,) + shape).astype(np.float32)
        want = model(hg.tensor(x, device=device)).numpy()
        got = planned.forward(x)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=f"{name} batch {batch}")
        np.testing.assert_array_equal(got, plain.forward(x))


def test_three_readers_match_float64_numpy(rng):
    model, shape = _model("three_readers", rng)
    engine = InferenceEngine.from_model(model)
    plan = engine._plan
    stem = plan[0].outputs[0]
    assert sum(stem in s.inputs for s in plan) == 3  # the conv, the residual conv and the concat
    for batch in (4, 1):
        x = rng.standard_normal((batch,) + shape).astype(np.float32)
        np.testing.assert_allclose(engine.forward(x), three_readers_ref(model, x.astype(np.float64)),
                                   rtol=1e-4, atol=1e-4)


def test_resnet_lowering_fuses_residual_and_downsampling_shortcut(rng):
    model, _ = _model("resnet_ish", rng)
    plan = plan_from_module(model)
    kinds = [s.kind for s in plan]
    assert kinds == ["conv"] * 6 + ["avgpool", "flatten", "linear"], kinds
    assert not any(s.kind in ("add", "act", "batch_norm") for s in plan)
    fused = [s for s in plan if len(s.inputs) == 2]
    assert [s.attrs["residual"] for s in fused] == ["3", "5"]
    assert all(s.attrs["act"] == "relu" for s in fused)
    # identity block: the body's second conv adds the block input; downsampling block: the
    # shortcut conv (it runs after the body) adds the body's output
    assert fused[0].name == "3.body.3" and fused[0].inputs[1] == plan[0].outputs[0]
    assert fused[1].name == "5.shortcut.0" and fused[1].inputs[1] == plan[4].outputs[0]


def _conv_step(name, cin, cout, rng, inputs, **attrs):
    w = (rng.standard_normal((cout, cin, 3, 3)) * 0.3).astype(np.float32)
    return Step("conv", name, inputs, [name], arrays={"weight": w, "bias": rng.standard_normal(cout).astype(np.float32)},
                attrs={"stride": (1, 1), "padding": (1, 1), "dilation": (1, 1), "groups": 1, **attrs})


def _bn_step(name, c, rng, inputs):
    return Step("batch_norm", name, inputs, [name], arrays={
        "weight": rng.uniform(0.5, 1.5, c).astype(np.float32), "bias": rng.standard_normal(c).astype(np.float32),
        "running_mean": rng.standard_normal(c).astype(np.float32),
        "running_var": rng.uniform(0.5, 2.0, c).astype(np.float32)}, attrs={"eps": 1e-5})


def _graph_ref(graph, x):
    """float64 NumPy run of a small hand-made graph (conv, batch_norm, act relu, add)."""
    env = {"input": x.astype(np.float64)}
    for s in graph:
        ins = [env[v] for v in s.inputs]
        p = {k: v.astype(np.float64) for k, v in s.arrays.items()}
        if s.kind == "conv":
            y = ref.conv2d(ins[0], p, padding=(1, 1)) + (ins[1] if len(ins) > 1 else 0)
        elif s.kind == "batch_norm":
            y = ref.batch_norm_eval(ins[0], p, 1e-5)
        elif s.kind == "add":
            y = ins[0] + ins[1]
        else:
            y = ins[0]
        if s.kind == "act" or s.attrs.get("act"):
            y = np.maximum(y, 0)
        env[s.outputs[0]] = y
    return [env[v] for v in graph.outputs]


def _engine_outputs(graph, x, **kw):
    out = InferenceEngine(graph.copy(), device="cpu", **kw).forward(x)
    return list(out) if isinstance(out, tuple) else [out]


def test_passes_fire_on_single_readers_only(rng):
    """c1 -> bn1 -> relu -> c2 -> bn2 -> add(., input) -> relu fuses into two convs; the same
    graph where bn1's conv, the relu's input and c2's output each have a second reader (a graph
    output) keeps those steps."""
    def build(extra_outputs):
        steps = [_conv_step("c1", 3, 3, rng, ["input"]), _bn_step("bn1", 3, rng, ["c1"]),
                 Step("act", "r1", ["bn1"], ["r1"], attrs={"kind": "relu"}),
                 _conv_step("c2", 3, 3, rng, ["r1"]), _bn_step("bn2", 3, rng, ["c2"]),
                 Step("add", "sum", ["bn2", "input"], ["sum"]),
                 Step("act", "r2", ["sum"], ["r2"], attrs={"kind": "relu"})]
        return Graph(steps, ["input"], ["r2"] + extra_outputs)

    x = rng.standard_normal((2, 3, 7, 5)).astype(np.float32)
    fused = build([])
    want = _graph_ref(fused, x)
    optimize(fused)
    assert [s.kind for s in fused] == ["conv", "conv"]
    assert fused[0].attrs["folded_bn"] == "bn1" and fused[0].attrs["act"] == "relu"
    assert fused[1].inputs == ["r1", "input"] and fused[1].attrs["act"] == "relu"
    np.testing.assert_allclose(_engine_outputs(fused, x)[0], want[0], rtol=1e-4, atol=1e-4)

    kept = build(["c1", "r1", "c2"])  # each a second reader: no fold, no fusion there
    want = _graph_ref(kept, x)
    optimize(kept)
    assert [s.kind for s in kept] == ["conv", "batch_norm", "act", "conv", "batch_norm", "add"]
    assert "folded_bn" not in kept[0].attrs and not kept[0].attrs.get("act")
    assert kept[5].attrs["act"] == "relu" and kept[5].outputs == ["r2"]  # relu still fuses into the add
    for planned in (True, False):
        got = _engine_outputs(kept, x, plan_memory=planned)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


def test_residual_fusion_skips_a_conv_read_twice(rng):
    """add(conv(x), x) where conv(x) is also read by another step: the add stays."""
    steps = [_conv_step("c", 3, 3, rng, ["input"]), Step("add", "sum", ["c", "input"], ["sum"]),
             Step("act", "r", ["c"], ["r"], attrs={"kind": "relu"}),
             Step("add", "out", ["sum", "r"], ["out"])]
    graph = Graph(steps, ["input"], ["out"])
    x = rng.standard_normal((3, 3, 6, 6)).astype(np.float32)
    want = _graph_ref(graph, x)
    optimize(graph)
    assert [s.kind for s in graph] == ["conv", "add", "act", "add"]
    assert len(graph[0].inputs) == 1 and not graph[0].attrs.get("act")
    np.testing.assert_allclose(_engine_outputs(graph, x)[0], want[0], rtol=1e-4, atol=1e-4)


def test_bad_graphs_are_refused_naming_the_value():
    step = Step("act", "a", ["nowhere"], ["a"], attrs={"kind": "relu"})
    with pytest.raises(ValueError, match="reads 'nowhere'"):
        InferenceEngine(Graph([step], ["input"], ["a"]))
    twice = [Step("act", "a", ["input"], ["v"], attrs={"kind": "relu"}),
             Step("act", "b", ["input"], ["v"], attrs={"kind": "relu"})]
    with pytest.raises(ValueError, match="'v' is written twice"):
        InferenceEngine(Graph(twice, ["input"], ["v"]))
    with pytest.raises(ValueError, match="not written"):
        InferenceEngine(Graph(twice[:1], ["input"], ["w"]))


def test_describe_shows_what_each_step_reads(rng):
    model, _ = _model("fire", rng)
    text = InferenceEngine.from_model(model).describe()
    assert "3.2: concat  <- 3.2.0.1, 3.2.1.1" in text, text
    assert "3.2.0.0: conv + relu\n" in text and "3.2.1.0: conv + relu  <- 3.1\n" in text
    model, _ = _model("resnet_ish", rng)
    text = InferenceEngine.from_model(model).describe()
    assert "3.body.3: conv + residual + relu (BatchNorm folded)  <- 3.body.2, 2" in text, text
