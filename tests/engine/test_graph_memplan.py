"""Graph plans, continued: liveness memory planning on branchy graphs (planned bytes below the
sum of all intermediate values, buffers reused after a value's last reader, nothing allocated
for a repeated shape), INT8 on graphs (top-1 agreement with fp32) and saved graph engines,
version-1 files included. Concurrent predicts on graphs: test_memplan.py's threaded test."""

from __future__ import annotations

import json

import numpy as np
import pytest

import hipgrad as hg
from hipgrad import InferenceEngine, nn
from hipgrad.engine.memplan import make_plan
from tests.engine.test_graph import MODELS, _model


def _allocations():
    return hg.memory_stats("cpu")["allocations"]


def _value_lifetimes(graph):
    """value -> (step writing it, last step reading it) over the graph in run order."""
    span = {}
    for i, s in enumerate(graph):
        for v in s.inputs:
            if v in span:
                span[v] = (span[v][0], i)
        for v in s.outputs:
            span[v] = (i, i)
    for v in graph.outputs:
        span[v] = (span[v][0], len(graph))
    return span


@pytest.mark.parametrize("name", list(MODELS))
def test_planned_bytes_below_the_sum_of_intermediates(name, rng):
    model, shape = _model(name, rng)
    engine = InferenceEngine.from_model(model)
    batch = 6
    plan = engine.memory_plan((batch,) + shape)
    sizes = {v: 4 * int(np.prod(s)) for v, s in plan.step_shapes}
    views = {s.outputs[0] for s in engine._plan if s.kind in ("flatten", "reshape")}
    assert plan.intermediate_bytes == sum(b for v, b in sizes.items() if v not in views)
    assert plan.activation_bytes < plan.intermediate_bytes
    # never below what is live at once: the values alive across a step plus what it writes
    span = _value_lifetimes(engine._plan)
    live = max(sum(sizes[v] for v, (a, b) in span.items() if v not in views and (a < i < b or a == i))
               for i in range(len(engine._plan)))
    assert plan.activation_bytes >= live
    report = engine.memory_report(rng.standard_normal((batch,) + shape).astype(np.float32))
    p = report["plans"][0]
    assert p["intermediate_bytes"] == plan.intermediate_bytes > p["activation_bytes"]
    m = report["measured"]
    assert m["peak_bytes"] <= m["planned_peak_bytes"] + 4096
    line = engine.describe((batch,) + shape).splitlines()[-1]
    assert f"{plan.activation_bytes / 1024:.1f} KiB planned for {plan.intermediate_bytes / 1024:.1f} KiB" in line


@pytest.mark.parametrize("int8", [False, True])
@pytest.mark.parametrize("name", list(MODELS))
def test_no_two_live_values_share_memory(name, int8, rng):
    """Every value's planned address range (buffer, offset, size) overlaps no other value's while
    both are live; two may meet only at the step where one is last read and the other written,
    and then only at the same address (an op writing over its dying input)."""
    model, shape = _model(name, rng)
    graph = InferenceEngine.from_model(model)._plan
    plan = make_plan(graph, (4,) + shape, np.float32, int8, staged_input=False)
    if name == "resnet_ish":
        assert plan.slots <= 3, plan.slot_numels
    span = _value_lifetimes(graph)
    where = {}
    for s, writes in zip(graph, plan.writes):
        for v, (b, off, shp) in zip(s.outputs, writes[len(writes) - len(s.outputs):]):
            where[v] = (b, off, off + int(np.prod(shp)))
            assert off + int(np.prod(shp)) <= plan.slot_numels[b]
    names = sorted(where)
    for i, u in enumerate(names):
        for v in names[i + 1:]:
            (bu, lo_u, hi_u), (bv, lo_v, hi_v) = where[u], where[v]
            if bu != bv or hi_u <= lo_v or hi_v <= lo_u:
                continue  # apart in memory
            (a1, e1), (a2, e2) = span[u], span[v]
            assert e1 <= a2 or e2 <= a1, (u, v, span[u], span[v])
            if e1 == a2 or e2 == a1:
                assert lo_u == lo_v, (u, v)


@pytest.mark.parametrize("name", list(MODELS))
def test_repeated_shape_allocates_nothing(name, rng):
    model, shape = _model(name, rng)
    engine = InferenceEngine.from_model(model)
    x = rng.standard_normal((5,) + shape).astype(np.float32)
    first = engine.forward(x)
    before = _allocations()
    for _ in range(3):
        np.testing.assert_array_equal(engine.forward(x), first)
    assert _allocations() - before == 0, "a repeated batch shape allocated memory"


@pytest.mark.parametrize("name", list(MODELS))
def test_int8_graph_agrees_with_fp32(name, rng):
    model, shape = _model(name, rng)
    fp32 = InferenceEngine.from_model(model)
    int8 = InferenceEngine.from_model(model, precision="int8")
    plain = InferenceEngine.from_model(model, precision="int8", plan_memory=False)
    calib = rng.standard_normal((32,) + shape).astype(np.float32)
    int8.calibrate(calib)
    plain.calibrate(calib)
    x = rng.standard_normal((200,) + shape).astype(np.float32)
    want, got = fp32.forward(x), int8.forward(x)
    np.testing.assert_array_equal(got, plain.forward(x))
    agree = float(np.mean(want.argmax(1) == got.argmax(1)))
    assert agree >= 0.9, f"{name}: int8 top-1 agrees with fp32 on {agree:.1%}"
    np.testing.assert_allclose(got, want, atol=0.1 * np.abs(want).max())
    assert "[int8]" in int8.describe() and "run in float32" in int8.describe()


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_graph_engine_saves_and_loads(precision, rng, tmp_path):
    pytest.importorskip("safetensors", reason="pip install safetensors")
    model, shape = _model("three_readers", rng)
    engine = InferenceEngine.from_model(model, precision=precision)
    if precision == "int8":
        engine.calibrate(rng.standard_normal((16,) + shape).astype(np.float32))
    path = str(tmp_path / "e.safetensors")
    engine.save(path)
    doc = json.loads((tmp_path / "e.json").read_text())
    assert doc["version"] == 2 and doc["graph_inputs"] == ["input"]
    loaded = InferenceEngine.load(path)
    x = rng.standard_normal((3,) + shape).astype(np.float32)
    np.testing.assert_array_equal(loaded.forward(x), engine.forward(x))
    assert [s.inputs for s in loaded._plan] == [s.inputs for s in engine._plan]


def test_version_1_engine_files_are_converted(rng, tmp_path):
    """A version-1 file (residual steps nesting body and shortcut chains) loads as a graph."""
    pytest.importorskip("safetensors", reason="pip install safetensors")
    hg.manual_seed(int(rng.integers(1 << 30)))
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(),
                          nn.Residual(nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.Tanh()),
                                      nn.Sequential(nn.Conv2d(3, 3, 1))),
                          nn.ReLU(), nn.Flatten(), nn.Linear(3 * 5 * 4, 4)).eval()
    path = tmp_path / "old.safetensors"
    engine = InferenceEngine.from_model(model)
    engine.save(str(path))
    doc = json.loads(path.with_suffix(".json").read_text())
    rows = {r["name"]: r for r in doc["plan"]}

    def v1(name, **kw):
        r = rows[name]
        return {"kind": r["kind"], "name": name, "attrs": {**r["attrs"], **kw}, "x_scale": None,
                "key": r["key"], "arrays": r["arrays"], "body": [], "shortcut": []}
    body = v1("2.body.0")
    body["attrs"]["act"] = "tanh"
    short = v1("2.shortcut.0")
    short["attrs"].pop("act", None), short["attrs"].pop("residual", None)
    body["attrs"].pop("residual", None)
    residual = {"kind": "residual", "name": "2", "attrs": {"act": "relu", "alpha": 0.01}, "x_scale": None,
                "key": "r", "arrays": [], "body": [body], "shortcut": [short]}
    old = {k: v for k, v in doc.items() if k not in ("graph_inputs", "graph_outputs")}
    old.update(version=1, plan=[v1("0"), residual, v1("4"), v1("5")])
    path.with_suffix(".json").write_text(json.dumps(old))
    loaded = InferenceEngine.load(str(path))
    x = rng.standard_normal((3, 2, 5, 4)).astype(np.float32)
    np.testing.assert_allclose(loaded.forward(x), model(hg.tensor(x)).numpy(), rtol=1e-4, atol=1e-5)
    assert any(len(s.inputs) == 2 for s in loaded._plan)  # the block's add, fused into a conv
